"""Shared pieces of the model families: argument checks, special layers, the autoencoder base."""

from __future__ import annotations

import functools
import inspect
import numbers
from collections.abc import Callable, Sequence
from typing import Any

import keras
from keras import ops

from mdwarf_zoo import hub
from mdwarf_zoo.optimizers import FusedAdam

# Activations whose derivative the contractive penalty knows in closed form.
ACTIVATIONS = ("relu", "sigmoid", "tanh", "linear", "softplus", "elu")
#: Forms of the contractive penalty: the derivative of the layer's own activation
#: (``"activation"``, the Jacobian of Rifai et al. 2011), or MB24's script as written
#: (``"mb24"``).
CONTRACTIVE_FORMS = ("activation", "mb24")


def check_positive_int(owner: str, name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value <= 0:
        raise ValueError(f"{owner}: {name} must be a positive integer, got {value!r}")
    return int(value)


def check_nonnegative_float(owner: str, name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not value >= 0:
        raise ValueError(f"{owner}: {name} must be a number >= 0, got {value!r}")
    if value == float("inf"):
        raise ValueError(f"{owner}: {name} must be finite, got {value!r}")
    return float(value)


def check_positive_float(owner: str, name: str, value: Any) -> float:
    value = check_nonnegative_float(owner, name, value)
    if value == 0:
        raise ValueError(f"{owner}: {name} must be > 0, got {value!r}")
    return value


def check_widths(owner: str, name: str, value: Any, *, allow_empty: bool = False) -> list[int]:
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise ValueError(f"{owner}: {name} must be a list of positive integers, got {value!r}")
    if not value and not allow_empty:
        raise ValueError(f"{owner}: {name} must hold at least one width, got {value!r}")
    return [check_positive_int(owner, f"{name}[{i}]", width) for i, width in enumerate(value)]


def check_choice(owner: str, name: str, value: Any, allowed: Sequence[str]) -> str:
    if value not in allowed:
        raise ValueError(f"{owner}: {name} must be one of {list(allowed)}, got {value!r}")
    return value


def check_seed(owner: str, name: str, value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
        raise ValueError(f"{owner}: {name} must be None or an integer >= 0, got {value!r}")
    return int(value)


#: How each constructor argument of the zoo is checked, by its name: one rule per name, so an
#: argument means the same, and fails with the same message, in every family.
ARGUMENT_CHECKS: dict[str, Callable[[str, str, Any], Any]] = {
    **dict.fromkeys(
        ("input_length", "latent_dim", "n_outputs", "kernel_size", "strides", "pool_size"),
        check_positive_int,
    ),
    **dict.fromkeys(("nf1", "nf2", "nu", "filters_1", "filters_2"), check_positive_int),
    **dict.fromkeys(("widths", "filters", "hidden"), check_widths),
    **dict.fromkeys(("l1", "contractive", "kl_weight"), check_nonnegative_float),
    "learning_rate": check_positive_float,
    "activation": functools.partial(check_choice, allowed=ACTIVATIONS),
    "contractive_form": functools.partial(check_choice, allowed=CONTRACTIVE_FORMS),
    "seed": check_seed,
}


def initializer(seed: int | None, offset: int) -> keras.initializers.Initializer:
    """Glorot-uniform kernels, seeded per layer when the model has a seed."""
    return keras.initializers.GlorotUniform(seed=None if seed is None else seed + offset)


def activation_derivative(activation: str, pre_activation, output):
    """d activation / d pre-activation, for the activations in ``ACTIVATIONS``."""
    if activation == "relu":
        return ops.cast(ops.greater(output, 0.0), output.dtype)
    if activation == "sigmoid":
        return output * (1.0 - output)
    if activation == "tanh":
        return 1.0 - ops.square(output)
    if activation == "linear":
        return ops.ones_like(output)
    if activation == "softplus":
        return ops.sigmoid(pre_activation)
    if activation == "elu":
        return ops.where(ops.greater(pre_activation, 0.0), 1.0, output + 1.0)
    raise ValueError(f"activation must be one of {list(ACTIVATIONS)}, got {activation!r}")


@keras.saving.register_keras_serializable(package="mdwarf_zoo")
class ActivityL1(keras.regularizers.Regularizer):
    """L1 activity regularisation, ``l1 * sum(|activations|)``, summed in float32.

    The same penalty as ``keras.regularizers.L1``; the float32 sum keeps it addable to the
    float32 loss under a mixed-precision policy (Keras' own returns the compute dtype).
    """

    def __init__(self, l1: float):
        self.l1 = check_nonnegative_float("ActivityL1", "l1", l1)

    def __call__(self, x):
        return self.l1 * ops.sum(ops.abs(ops.cast(x, "float32")))

    def get_config(self) -> dict:
        return {"l1": self.l1}


@keras.saving.register_keras_serializable(package="mdwarf_zoo")
class ContractiveDense(keras.layers.Dense):
    """A ``Dense`` layer that adds the contractive penalty of Rifai et al. (2011) to the loss.

    The penalty is ``contractive`` times the batch mean of the squared Frobenius norm of the
    Jacobian of this layer's activations with respect to its input,
    ``sum_j f'(z_j)^2 ||W_j||^2``. For ReLU that is ``sum_j 1[h_j > 0] ||W_j||^2`` (MB24's
    script used the sigmoid form ``h(1-h)`` on a ReLU bottleneck; this layer uses the
    derivative of the activation it actually has).

    ``form="mb24"`` reproduces MB24's training script as they wrote it: the sigmoid derivative
    ``h (1 - h)`` of the layer's output whatever its activation, times the squared column norms
    of a kernel that takes no gradient (their ``K.variable`` copy of the bottleneck kernel is a
    constant snapshot taken when the loss was built; here the current kernel, with its
    gradient stopped: the same at the first step). On a ReLU bottleneck it pushes activations
    towards 0 or 1 rather than bounding the Jacobian.

    Args:
        units: output size.
        contractive: the penalty weight lambda (MB24: 1e-4); 0 switches it off.
        activation: one of ``ACTIVATIONS``.
        form: one of ``CONTRACTIVE_FORMS``: ``"activation"`` (default) or ``"mb24"``.
        **kwargs: the arguments of ``keras.layers.Dense``.
    """

    def __init__(
        self,
        units: int,
        contractive: float = 1e-4,
        activation: str = "relu",
        form: str = "activation",
        **kwargs,
    ):
        check_choice("ContractiveDense", "activation", activation, ACTIVATIONS)
        super().__init__(units, activation=activation, **kwargs)
        self.contractive = check_nonnegative_float("ContractiveDense", "contractive", contractive)
        self.activation_name = activation
        self.form = check_choice("ContractiveDense", "form", form, CONTRACTIVE_FORMS)

    def penalty(self, pre_activation, output):
        """Per-sample squared Frobenius norm of the Jacobian (before the weight lambda).

        Computed in float32 whatever the layer's compute dtype, so that mixed-precision
        training adds the same penalty to the float32 loss.
        """
        kernel = ops.cast(self.kernel, "float32")
        if self.form == "mb24":
            h = ops.cast(output, "float32")
            derivative = h * (1.0 - h)
            kernel = ops.stop_gradient(kernel)
        else:
            derivative = activation_derivative(
                self.activation_name,
                ops.cast(pre_activation, "float32"),
                ops.cast(output, "float32"),
            )
        column_norms = ops.sum(ops.square(kernel), axis=0)
        return ops.sum(ops.square(derivative) * column_norms, axis=-1)

    def call(self, inputs, training=None):
        pre_activation = ops.matmul(inputs, self.kernel)
        if self.use_bias:
            pre_activation = ops.add(pre_activation, self.bias)
        output = self.activation(pre_activation)
        if self.contractive > 0:
            self.add_loss(self.contractive * ops.mean(self.penalty(pre_activation, output)))
        return output

    def get_config(self) -> dict:
        config = super().get_config()
        config["contractive"] = self.contractive
        if self.form != "activation":
            config["form"] = self.form
        return config


@keras.saving.register_keras_serializable(package="mdwarf_zoo")
class GaussianSampling(keras.layers.Layer):
    """Draws ``z = mean + exp(log_var / 2) * eps`` while training; the mean otherwise.

    Adds ``kl_weight`` times the batch mean of KL(q(z|x) || N(0, 1)) to the loss.

    Args:
        kl_weight: the weight of the KL term (beta).
        seed: seed of the noise, for reproducible training.
    """

    def __init__(self, kl_weight: float = 1e-5, seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.kl_weight = check_nonnegative_float("GaussianSampling", "kl_weight", kl_weight)
        self.seed = check_seed("GaussianSampling", "seed", seed)
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, inputs, training=None):
        mean, log_var = inputs
        if self.kl_weight > 0:
            mean32, log_var32 = ops.cast(mean, "float32"), ops.cast(log_var, "float32")
            kl = -0.5 * ops.sum(1.0 + log_var32 - ops.square(mean32) - ops.exp(log_var32), axis=-1)
            self.add_loss(self.kl_weight * ops.mean(kl))
        if not training:
            return mean
        noise = keras.random.normal(ops.shape(mean), dtype=mean.dtype, seed=self.seed_generator)
        return mean + ops.exp(0.5 * log_var) * noise

    def compute_output_shape(self, input_shape):
        return input_shape[0]

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(kl_weight=self.kl_weight, seed=self.seed)
        return config


def zoo_constructor(init: Callable[..., None]) -> Callable[..., None]:
    """Decorate a zoo architecture's ``__init__`` with the steps every architecture shares.

    Before ``init`` runs, each argument of its signature is checked by its name
    (``ARGUMENT_CHECKS``; the message names the class, the argument and its value) and passed
    on checked (``int``, ``float``, widths as a ``list``). ``init`` builds the layers and calls
    ``super().__init__(inputs=..., outputs=..., **kwargs)``. After it, every argument is kept
    as an attribute and for ``get_config()`` (except those in the class's
    ``config_omits_defaults`` while at their default), and the model is compiled with
    ``compile_default``.

    Raises:
        TypeError: when ``init`` has an argument without a rule in ``ARGUMENT_CHECKS``.
    """
    signature = inspect.signature(init)
    parameters = list(signature.parameters.values())[1:]
    names = [p.name for p in parameters if p.kind is p.POSITIONAL_OR_KEYWORD]
    extra = next((p.name for p in parameters if p.kind is p.VAR_KEYWORD), None)
    unchecked = [name for name in names if name not in ARGUMENT_CHECKS]
    if unchecked:
        raise TypeError(f"zoo_constructor: {init.__qualname__} has unchecked arguments {unchecked}")

    @functools.wraps(init)
    def checked_init(self, *args, **kwargs) -> None:
        bound = signature.bind(self, *args, **kwargs)
        bound.apply_defaults()
        owner = type(self).__name__
        config = {name: ARGUMENT_CHECKS[name](owner, name, bound.arguments[name]) for name in names}
        init(self, **config, **bound.arguments.get(extra, {}))
        for name, value in config.items():
            setattr(self, name, value)
        self._zoo_config = {
            name: list(value) if isinstance(value, list) else value
            for name, value in config.items()
            if name not in self.config_omits_defaults or value != signature.parameters[name].default
        }
        self.compile_default()

    # Keras reads the constructor's arguments with ``inspect.getfullargspec``, which does not
    # follow ``__wrapped__``: give it the signature of ``init``.
    checked_init.__signature__ = signature
    return checked_init


class ZooModel(keras.Model):
    """Behaviour shared by every zoo architecture (a functional ``keras.Model`` subclass).

    Subclasses decorate ``__init__`` with :func:`zoo_constructor`, which checks the arguments,
    keeps each under its own name for ``get_config()`` and compiles the model; ``__init__``
    itself builds the graph and calls ``super().__init__(inputs=..., outputs=...)``.
    """

    #: ``"autoencoder"`` or ``"regressor"``.
    kind: str = ""
    #: Constructor arguments ``get_config()`` leaves out at their default value: options added
    #: after models were saved without them, whose configs stay as they were.
    config_omits_defaults: tuple[str, ...] = ()

    def compile_default(self) -> None:
        """Compile with Adam at ``self.learning_rate`` and MSE (extra terms are model losses).

        The optimizer is :class:`mdwarf_zoo.optimizers.FusedAdam`: Keras' Adam update rule in
        one fused kernel (1.3x faster training of ``dense_ae_1024`` on CPU).
        """
        self.compile(optimizer=FusedAdam(self.learning_rate), loss="mse")

    def get_config(self) -> dict:
        config = {"name": self.name, "trainable": self.trainable}
        config.update(self._zoo_config)
        return config

    @classmethod
    def from_config(cls, config: dict, custom_objects=None):
        return cls(**config)

    @classmethod
    def from_pretrained(cls, source, **kwargs) -> ZooModel:
        """Load pretrained weights of this architecture (see ``mdwarf_zoo.from_pretrained``).

        Args:
            source: a local folder, ``"owner/name"``, ``"hf://owner/name[@revision]"`` or a
                published weights entry name.
            **kwargs: ``revision``, ``cache_dir``, ``local_files_only``, ``endpoint``,
                ``token``.

        Returns:
            The model, with ``model.zoo_metadata``.

        Raises:
            TypeError: when the checkpoint holds another architecture (the message names it).
            ValueError, FileNotFoundError: as ``mdwarf_zoo.from_pretrained``.

        Examples:
            >>> from mdwarf_zoo.models.dense_ae import DenseAutoencoder
            >>> source = "hf://acme/dense_ae_1024_mb24"
            >>> model = DenseAutoencoder.from_pretrained(source)  # doctest: +SKIP
        """
        model = hub.from_pretrained(source, **kwargs)
        if not isinstance(model, cls):
            raise TypeError(
                f"{cls.__name__}.from_pretrained({source!r}): the checkpoint holds a "
                f"{type(model).__name__}, not a {cls.__name__}; use "
                f"mdwarf_zoo.from_pretrained({source!r}) or {type(model).__name__}.from_pretrained"
            )
        return model


class Autoencoder(ZooModel):
    """An autoencoder with a flat layer list: ``layers[0]`` is the ``InputLayer``, then the
    encoder, the bottleneck at ``bottleneck_index``, then the decoder from ``decoder_start``.

    ``model.encoder`` maps spectra to the latent vector (the latent mean for a VAE) and
    ``model.decoder`` maps latent vectors to spectra; both share the model's layers.
    """

    kind = "autoencoder"
    #: The name of the bottleneck layer (what ``model.encoder`` returns).
    bottleneck_name: str = "bottleneck"
    #: The name of the last layer before the decoder.
    encoder_end_name: str = "bottleneck"

    @property
    def bottleneck_index(self) -> int:
        return self._layer_index(self.bottleneck_name)

    @property
    def decoder_start(self) -> int:
        return self._layer_index(self.encoder_end_name) + 1

    def _layer_index(self, name: str) -> int:
        return [layer.name for layer in self.layers].index(name)

    @property
    def default_freeze(self) -> int:
        """MB24's transfer rule for this architecture: freeze ``layers[:default_freeze]``.

        That keeps the deepest weighted encoder layer, the bottleneck and the decoder trainable
        (for the MB24 dense autoencoder: 5, i.e. the input and the first four encoder layers).
        """
        weighted = [
            index for index in range(1, self.bottleneck_index) if self.layers[index].weights
        ]
        return weighted[-1] if weighted else 1

    @property
    def encoder(self) -> keras.Model:
        return keras.Model(
            self.input, self.layers[self.bottleneck_index].output, name=f"{self.name}_encoder"
        )

    @property
    def decoder(self) -> keras.Model:
        latent = keras.Input((self.latent_dim,), name="latent")
        x = latent
        for layer in self.layers[self.decoder_start :]:
            x = layer(x)
        return keras.Model(latent, x, name=f"{self.name}_decoder")
