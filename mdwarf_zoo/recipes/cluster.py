"""Runs across processes and machines: joining a ``TF_CONFIG`` cluster, waiting for the chief,
the member locks of concurrent jobs, and the plan of jobs for a batch system."""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import keras

from mdwarf_zoo.recipes import (
    Recipe,
    RecipeError,
)
from mdwarf_zoo.registry import create_model
from mdwarf_zoo.training.distribute import get_strategy, is_chief

if TYPE_CHECKING:
    from mdwarf_zoo.recipes.run import Run

logger = logging.getLogger(__name__)


def join_cluster(recipe: Recipe) -> bool:
    """Join the ``TF_CONFIG`` cluster if the recipe's strategy is ``"multi_worker"``; return
    whether this process writes the run folder (the chief:
    ``mdwarf_zoo.training.distribute.is_chief``).

    TensorFlow configures its collective ops once, before its first op, so this must run
    before anything builds a model: ``mdwarf-zoo train`` reads the recipe without building
    its models (``load_recipe(..., check_models=False)``), calls this, then validates fully;
    :class:`Run` calls it too (the same strategy is returned again). Without ``TF_CONFIG``
    (reading a run folder, e.g. ``mdwarf-zoo plan``) the process is a lone chief and
    :meth:`Run.run` stops with ``TF_CONFIG``'s error before any work.

    Raises:
        ValueError: for a malformed ``TF_CONFIG``, or when TensorFlow already ran an op.
    """
    if recipe.strategy != "multi_worker" or not os.environ.get("TF_CONFIG", "").strip():
        return True

    try:
        strategy = get_strategy("multi_worker")
    except RuntimeError as error:  # "Collective ops must be configured at program startup"
        raise ValueError(
            f"strategy 'multi_worker' must join its cluster before TensorFlow runs its first op "
            f"({error}); create the Run (or call mdwarf_zoo.recipes.cluster.join_cluster) before "
            "building any model, e.g. load the recipe with load_recipe(..., check_models=False) "
            "first"
        ) from None
    return is_chief(strategy)


def wait_for(paths: list[Path], what: str, poll_s: float = 0.5) -> None:
    """Wait until every path exists (a multi-worker job's other workers waiting for the chief),
    saying so every minute. There is no time limit: the chief may build a large set for hours;
    the batch system's job time limit ends a job whose chief died."""
    started = last = time.monotonic()
    while not all(path.exists() for path in paths):
        now = time.monotonic()
        if now - last >= 60:
            missing = [str(path) for path in paths if not path.exists()]
            logger.info("waiting %.0f s for %s (%s)", now - started, what, ", ".join(missing))
            last = now
        time.sleep(poll_s)


class MemberLock:
    """A lock file that keeps two processes off the same member or stage (``--member`` jobs).

    Args:
        path: the lock file.
        wait: wait for a live holder to finish instead of refusing.
    """

    def __init__(self, path: Path, *, wait: bool = False):
        self.path = path
        self.wait = wait

    def __enter__(self) -> MemberLock:
        host = socket.gethostname()
        while True:
            try:
                handle = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                owner = self.path.read_text(encoding="utf-8").split()
                if len(owner) == 2 and owner[0] == host and not _alive(int(owner[1])):
                    with contextlib.suppress(FileNotFoundError):
                        self.path.unlink()
                    continue
                if self.wait:
                    time.sleep(2.0)
                    continue
                raise FileExistsError(
                    f"{self.path.parent} is being trained by process {' '.join(owner)}; if "
                    f"that process is gone, delete {self.path}"
                ) from None
            with os.fdopen(handle, "w") as stream:
                stream.write(f"{host} {os.getpid()}")
            return self

    def __exit__(self, *exc: object) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def plan(recipe: Recipe, folder: Path | None = None) -> list[dict[str, Any]]:
    """One row per member: architecture, overrides, seed, parameters, epochs and the work it
    needs (spectra x epochs), plus what a run folder already holds."""
    state = None
    if folder is not None and (folder / "run.json").is_file():
        state = Run(recipe, folder, progress=False).status()["members"]
    rows = []
    n_synthetic = recipe.synthetic.n
    n_observed = recipe.observed.n
    counts: dict[str, int] = {}
    for member in recipe.members():
        key = f"{member.architecture} {sorted(member.overrides.items())}"
        if key not in counts:
            try:
                model = create_model(
                    member.architecture,
                    input_length=recipe.preprocessing.pixels,
                    **member.overrides,
                )
            except (TypeError, ValueError) as error:
                raise RecipeError(
                    f"recipe {recipe.name!r}: [autoencoders.grid] point {member.grid_point} "
                    f"({member.architecture}, {member.overrides}) cannot be built: {error}"
                ) from None
            counts[key] = int(model.count_params())
            del model
            keras.backend.clear_session()
        rows.append(
            {
                "member": member.index,
                "architecture": member.architecture,
                "overrides": member.overrides,
                "seed": member.seed,
                "parameters": counts[key],
                "pretrain": f"{recipe.autoencoders.epochs} epochs x "
                f"{n_synthetic if n_synthetic else '?'} synthetic spectra",
                "transfer": f"{recipe.transfer.epochs} epochs x "
                f"{n_observed if n_observed else '?'} observed spectra"
                if recipe.transfer.enabled
                else "off",
                "regressors": f"{len(recipe.regressors.parameters)} parameters x "
                f"{recipe.regressors.seeds} seeds",
                "done": ", ".join(state[member.name]) if state else "",
            }
        )
    return rows
