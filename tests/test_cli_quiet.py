"""The command line starts fast and quiet: --help never loads TensorFlow, and TensorFlow's own
chatter stays hidden unless -v; importing the package stays light yet registers every family
with Keras as soon as Keras loads."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

from mdwarf_zoo.cli import COMMANDS


def _python(code: str, *, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **(env or {})},
    )


def test_help_of_every_command_never_imports_tensorflow():
    commands = [name.replace("_", "-") for name in COMMANDS]
    result = _python(
        f"""
        import contextlib, io, sys
        from mdwarf_zoo.cli import main
        for argv in [["--help"]] + [[name, "--help"] for name in {commands!r}]:
            with contextlib.redirect_stdout(io.StringIO()) as out:
                try:
                    main(argv)
                except SystemExit as stop:
                    assert stop.code == 0, (argv, stop.code)
            assert "usage: mdwarf-zoo" in out.getvalue(), argv
        heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "keras"))
        assert not heavy, heavy[:5]
        print("ok", len({commands!r}))
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["ok", str(len(COMMANDS))]


def test_import_is_light_and_registers_families_when_keras_loads(tmp_path):
    """``import mdwarf_zoo`` then ``import tensorflow`` (which loads Keras part-way through its
    own import): the families are registered and ``keras.saving.load_model`` reads a zoo folder
    written by another process."""
    import numpy as np

    import mdwarf_zoo

    folder = tmp_path / "tiny"
    model = mdwarf_zoo.create_model("dense_ae_tiny", seed=3)
    mdwarf_zoo.save_pretrained(model, folder)
    x = np.linspace(0.2, 0.9, 3501, dtype="float32")[None]
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", model.predict(x, verbose=0))
    result = _python(
        f"""
        import sys, numpy as np
        import mdwarf_zoo
        assert "tensorflow" not in sys.modules and "keras" not in sys.modules
        import tensorflow
        assert "mdwarf_zoo.models" in sys.modules
        import keras
        model = keras.saving.load_model({str(folder)!r})
        y = model.predict(np.load({str(tmp_path / "x.npy")!r}), verbose=0)
        assert type(model).__name__ == "DenseAutoencoder", type(model)
        np.testing.assert_array_equal(y, np.load({str(tmp_path / "y.npy")!r}))
        print("ok")
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_command_line_hides_tensorflow_noise():
    """From the real command line (``main()`` reads ``sys.argv``), a command that starts
    TensorFlow writes its table and nothing of TensorFlow's C++ or Python log, even with
    TensorFlow's own log level at INFO (``-v`` shows it)."""
    quiet = _python(
        """
        import sys
        from mdwarf_zoo.cli import main
        sys.argv = ["mdwarf-zoo", "models", "dense_ae_tiny"]
        sys.exit(main())
        """,
        env={"TF_CPP_MIN_LOG_LEVEL": "0"},
    )
    assert quiet.returncode == 0, quiet.stderr
    assert "dense_ae_tiny" in quiet.stdout and "462,597" in quiet.stdout
    assert quiet.stderr == ""


def test_python_dash_m_runs_the_cli_and_submodules_never_hide_public_functions():
    """``python -m mdwarf_zoo.cli`` goes through the package's import hook (runpy asks the loader
    for the module's code), and importing the module ``mdwarf_zoo.transfer`` leaves
    ``mdwarf_zoo.transfer`` the function."""
    run = subprocess.run(
        [sys.executable, "-m", "mdwarf_zoo.cli", "--help"],
        capture_output=True, text=True, timeout=120,
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("usage: mdwarf-zoo")
    result = _python(
        """
        import mdwarf_zoo
        import mdwarf_zoo.training.transfer
        from mdwarf_zoo.training.transfer import transfer
        assert mdwarf_zoo.transfer is transfer, mdwarf_zoo.transfer
        import mdwarf_zoo.hub
        assert callable(mdwarf_zoo.from_pretrained)
        print("ok")
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["ok"]
