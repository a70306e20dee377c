"""The ceiling of any stage-3 speed-up built from TensorFlow's CPU kernels (issue 18).

A fused trainer removes per-step machinery (``Model.fit``'s data adapter, callbacks, Python
between steps); it cannot make the kernels of one regressor's step faster. This script
measures those kernels at the MB24 regressor shape (``latent_cnn`` nf1 64 / nf2 32 / nu 64 on
32-d latents) and so bounds what fusing can give on this machine:

- ``kernels``: each layer's forward and backward kernels alone (Conv1D through oneDNN,
  MatMul, bias, ReLU, the weight and input gradients the training step needs), each in its
  own traced loop of many repetitions, and the Adam update of the branch's 0.31 M parameters
  (``ResourceApplyAdam``, as ``FusedAdam``); their sum is the cost of one regressor step with
  no overhead at all between kernels.
- ``step``: one regressor's whole training step (``GradientTape`` + ``FusedAdam``) repeated
  inside one traced ``tf.range`` loop: the same kernels with TensorFlow's executor in between,
  no Keras loop.
- ``peak``: the fp32 matmul peak (4096^3, best of 4) and the throughput of the step's
  largest matmul (``Dense(256)`` on the flattened 1,024 features) at the step's batch, so the
  percentages can be read against what this CPU gives for these shapes.

The same in ``mixed_bfloat16`` (bfloat16 compute, float32 weights and Adam) with ``--bf16``.

Reading: the per-model loop's step (``bench_fused_regressors.py``) divided by the ``kernels``
sum is the largest speed-up *any* trainer made of these kernels can reach at that batch,
fused or not; ``step`` shows what the executor adds.

Run: ``python benchmarks/bench_stage3_ceiling.py [--batch-sizes 32 128] [--bf16]``.
"""

from __future__ import annotations

import argparse
import json
import time

LATENT_DIM, NF1, NF2, NU = 32, 64, 32, 64
REPEATS = 200


def _timed(function, repeats: int = REPEATS) -> float:
    """Seconds per repetition of a traced ``function(n)`` that loops ``n`` times itself."""
    function(2)  # trace and warm up
    start = time.perf_counter()
    function(repeats)
    return (time.perf_counter() - start) / repeats


def _macs() -> int:
    return (LATENT_DIM * 2 * NF1 + LATENT_DIM * 2 * NF1 * NF2 + LATENT_DIM * NF2 * 256
            + 256 * 128 + 128 * NU + NU)


def _layer_loop(tf, forward, inputs, weights, need_input_gradient: bool):
    """A traced loop of ``forward``'s forward pass and its backward kernels (weight gradients,
    and the input gradient when a layer below needs it)."""

    @tf.function
    def loop(n):
        total = tf.constant(0.0)
        for _ in tf.range(n):
            with tf.GradientTape() as tape:
                if need_input_gradient:
                    tape.watch(inputs)
                out = forward(inputs, *weights)
                loss = tf.reduce_sum(tf.cast(out, tf.float32))
            sources = [*weights, inputs] if need_input_gradient else list(weights)
            grads = tape.gradient(loss, sources)
            total += tf.add_n([tf.reduce_sum(tf.cast(g[..., :1], tf.float32)) for g in grads])
        return total

    return lambda n: float(loop(tf.constant(n)))


def part_kernels(batch: int, dtype_name: str) -> dict:
    import numpy as np
    import tensorflow as tf

    dtype = tf.bfloat16 if dtype_name == "bfloat16" else tf.float32
    rng = np.random.default_rng(0)

    def tensor(*shape):
        return tf.constant(rng.normal(size=shape) * 0.1, dtype=dtype)

    def conv(x, kernel, bias):
        return tf.nn.relu(tf.nn.bias_add(tf.nn.conv1d(x, kernel, 1, "SAME"), bias))

    def dense(x, kernel, bias):
        return tf.nn.relu(tf.nn.bias_add(tf.matmul(x, kernel), bias))

    layers = {
        "conv_1 (1 -> 64, k 2)": (conv, tensor(batch, LATENT_DIM, 1),
                                  (tensor(2, 1, NF1), tensor(NF1)), False),
        "conv_2 (64 -> 32, k 2)": (conv, tensor(batch, LATENT_DIM, NF1),
                                   (tensor(2, NF1, NF2), tensor(NF2)), True),
        "dense_1 (1024 -> 256)": (dense, tensor(batch, LATENT_DIM * NF2),
                                  (tensor(LATENT_DIM * NF2, 256), tensor(256)), True),
        "dense_2 (256 -> 128)": (dense, tensor(batch, 256), (tensor(256, 128), tensor(128)),
                                 True),
        "dense_3 (128 -> 64)": (dense, tensor(batch, 128), (tensor(128, NU), tensor(NU)), True),
        "output (64 -> 1)": (dense, tensor(batch, NU), (tensor(NU, 1), tensor(1)), True),
    }
    result = {}
    for name, (forward, inputs, weights, input_gradient) in layers.items():
        loop = _layer_loop(tf, forward, inputs, [tf.Variable(w) for w in weights],
                           input_gradient)
        result[name] = 1e3 * _timed(loop)
    result["adam (0.31 M parameters, float32)"] = 1e3 * _adam_ms(tf, np)
    return {"ms": result, "sum_ms": sum(result.values())}


def _adam_ms(tf, np) -> float:
    """Seconds per ``ResourceApplyAdam`` pass over one regressor's 10 variables."""
    shapes = [(2, 1, NF1), (NF1,), (2, NF1, NF2), (NF2,), (LATENT_DIM * NF2, 256), (256,),
              (256, 128), (128,), (128, NU), (NU,), (NU, 1), (1,)]
    variables = [tf.Variable(tf.zeros(s)) for s in shapes]
    moments = [(tf.Variable(tf.zeros(s)), tf.Variable(tf.zeros(s))) for s in shapes]
    grads = [tf.constant(np.full(s, 1e-3, np.float32)) for s in shapes]

    @tf.function
    def loop(n):
        for _ in tf.range(n):
            for v, (m, s), g in zip(variables, moments, grads, strict=True):
                tf.raw_ops.ResourceApplyAdam(
                    var=v.handle, m=m.handle, v=s.handle, beta1_power=0.9, beta2_power=0.999,
                    lr=0.01, beta1=0.9, beta2=0.999, epsilon=1e-7, grad=g)
        return tf.constant(0.0)

    return _timed(lambda n: float(loop(tf.constant(n))))


def part_step(batch: int, dtype_name: str) -> dict:
    import keras
    import numpy as np
    import tensorflow as tf

    import mdwarf_zoo as mz

    precision = "mixed_bfloat16" if dtype_name == "bfloat16" else "float32"
    model = mz.create_model("latent_cnn", latent_dim=LATENT_DIM, nf1=NF1, nf2=NF2, nu=NU,
                            learning_rate=0.01, seed=0, precision=precision)
    variables = list(model.trainable_variables)
    model.optimizer.build(variables)
    rng = np.random.default_rng(0)
    x = tf.constant(rng.normal(size=(batch, LATENT_DIM)), tf.float32)
    y = tf.constant(rng.normal(size=(batch,)), tf.float32)

    @tf.function
    def loop(n):
        total = tf.constant(0.0)
        for _ in tf.range(n):
            with tf.GradientTape() as tape:
                predicted = tf.cast(model(x, training=True)[:, 0], tf.float32)
                loss = tf.reduce_mean(tf.square(y - predicted))
            gradients = tape.gradient(loss, [v.value for v in variables])
            model.optimizer.apply(gradients, variables)
            total += loss
        return total

    keras.utils.set_random_seed(0)
    return {"step_ms": 1e3 * _timed(lambda n: float(loop(tf.constant(n))))}


def part_peak(batch: int, dtype_name: str) -> dict:
    import tensorflow as tf
    from bench_fused_regressors import part_matmul  # the same peak, measured the same way

    best = part_matmul()["gflops"]
    dtype = tf.bfloat16 if dtype_name == "bfloat16" else tf.float32
    x = tf.cast(tf.random.normal([batch, LATENT_DIM * NF2]), dtype)
    w = tf.cast(tf.random.normal([LATENT_DIM * NF2, 256]), dtype)

    @tf.function
    def loop(n):
        total = tf.constant(0.0)
        for _ in tf.range(n):
            total += tf.cast(tf.matmul(x, w)[0, 0], tf.float32)
        return total

    seconds = _timed(lambda n: float(loop(tf.constant(n))), 2000)
    return {"peak_gflops": best,
            "dense_1_forward_gflops": 2 * batch * LATENT_DIM * NF2 * 256 / seconds / 1e9}


def main() -> None:
    import subprocess
    import sys

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[128, 32])
    parser.add_argument("--bf16", action="store_true", help="also in mixed_bfloat16")
    parser.add_argument("--part", choices=["kernels", "step", "peak"])
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    args = parser.parse_args()
    parts = {"kernels": part_kernels, "step": part_step, "peak": part_peak}
    if args.part:
        print(json.dumps(parts[args.part](args.batch_sizes[0], args.dtype)))
        return

    def child(part: str, batch: int, dtype: str) -> dict:
        command = [sys.executable, __file__, "--part", part, "--batch-sizes", str(batch),
                   "--dtype", dtype]
        output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
        return json.loads(output.strip().splitlines()[-1])

    for dtype in ["float32", "bfloat16"] if args.bf16 else ["float32"]:
        for batch in args.batch_sizes:
            peak = child("peak", batch, dtype)
            kernels = child("kernels", batch, dtype)
            step = child("step", batch, dtype)
            flops = 3 * 2 * _macs() * batch
            print(f"\n{dtype}, batch {batch} ({flops / 1e9:.3f} GFLOP per step); fp32 peak "
                  f"{peak['peak_gflops']:.0f} GFLOP/s, dense_1 forward alone "
                  f"{peak['dense_1_forward_gflops']:.0f} GFLOP/s")
            for name, ms in kernels["ms"].items():
                print(f"  {name}: {ms:.3f} ms")
            for label, ms in (("sum of the kernels", kernels["sum_ms"]),
                              ("one traced step", step["step_ms"])):
                rate = flops / (ms / 1e3) / 1e9
                print(f"  {label}: {ms:.2f} ms, {rate:.0f} GFLOP/s "
                      f"({100 * rate / peak['peak_gflops']:.0f} % of the fp32 peak)")
            print("RESULT " + json.dumps({"dtype": dtype, "batch": batch, **peak, **kernels,
                                          **step}))


if __name__ == "__main__":
    main()
