"""Parsing: recipe text to a validated :class:`Recipe`, every section read and checked, then the
architectures checked against the registry (and built once) before anything trains."""

from __future__ import annotations

import copy
import difflib
import sys
from pathlib import Path
from typing import Any

from mdwarf_zoo.recipes import sections
from mdwarf_zoo.recipes.checker import Checker, open_section, show
from mdwarf_zoo.recipes.schema import Recipe, RecipeError, recipe_sha256

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on python 3.10 only
    import tomli as tomllib

_TOP = (
    "recipe",
    "data",
    "preprocessing",
    "autoencoders",
    "transfer",
    "regressors",
    "ensemble",
    "calibration",
    "outputs",
    "compare",
)


def parse_recipe(
    text: str, *, source: Path | None = None, check_files: bool = True, check_models: bool = True
) -> Recipe:
    """Validate recipe text; see :func:`load_recipe` (relative paths resolve against the
    folder of ``source``, or the working directory when it is ``None``)."""
    origin = repr(str(source)) if source is not None else "<text>"
    document = _read_document(text, origin)
    base = source.parent if source is not None else Path.cwd()

    def section(name: str, required: bool = False) -> Checker:
        return open_section(document, name, origin, base, check_files, required=required)

    # The sections are read in this order, so that a recipe with several errors always
    # reports the same first one.
    name, description, seed, strategy = sections.read_head(section("recipe", required=True))
    sections.check_data_tables(section("data", required=True))
    synthetic = sections.read_synthetic(section("data.synthetic", required=True))
    observed = sections.read_observed(section("data.observed", required=True), synthetic)
    preprocessing = sections.read_preprocessing(section("preprocessing"))
    autoencoders = sections.read_autoencoders(section("autoencoders", required=True))
    transfer = sections.read_transfer(section("transfer"), strategy)
    regressors = sections.read_regressors(section("regressors", required=True), strategy)
    recipe = Recipe(
        name=name,
        description=description,
        seed=seed,
        strategy=strategy,
        synthetic=synthetic,
        observed=observed,
        preprocessing=preprocessing,
        autoencoders=autoencoders,
        transfer=transfer,
        regressors=regressors,
        ensemble=sections.read_ensemble(section("ensemble"), autoencoders, regressors, synthetic),
        calibration=sections.read_calibration(section("calibration")),
        outputs=sections.read_outputs(section("outputs")),
        compare=sections.read_compare(section("compare")),
        text=text,
        sha256=recipe_sha256(text),
        source=source,
    )
    _check_architectures(recipe, origin, check_models)
    return recipe


def _read_document(text: str, origin: str) -> dict[str, Any]:
    """The TOML document, its top-level tables checked against :data:`_TOP`."""
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise RecipeError(f"recipe {origin} is not valid TOML: {error}") from None
    for key in document:
        if key not in _TOP:
            close = difflib.get_close_matches(key, _TOP, n=1, cutoff=0.5)
            hint = f"; did you mean [{close[0]}]?" if close else ""
            raise RecipeError(
                f"recipe {origin}: unknown table [{key}]{hint} Allowed tables: "
                f"{', '.join(f'[{t}]' for t in _TOP)}"
            )
    return document


def _check_architectures(recipe: Recipe, origin: str, build: bool) -> None:
    """Architecture names against the registry; optionally build each configuration once."""
    from mdwarf_zoo.registry import get_entry

    def entry(name: Any, where: str, kind: str):
        try:
            found = get_entry(name)
        except ValueError as error:
            raise RecipeError(
                f"recipe {origin}: [{where}] architecture = {show(name)}: {error}"
            ) from None
        if found.kind != kind:
            raise RecipeError(
                f"recipe {origin}: [{where}] architecture = {name!r} is a "
                f"{found.kind}; expected a {kind} (see `mdwarf-zoo models --kind "
                f"{kind}`)"
            )
        return found

    for name in recipe.autoencoders.grid["architecture"]:
        entry(name, "autoencoders.grid", "autoencoder")
    for parameter, settings in recipe.regressors.settings.items():
        entry(settings.architecture, f"regressors.{parameter}", "regressor")
    if not build:
        return
    # Imported here, not at the top: the CLI imports this package for --help, which must not
    # load TensorFlow/Keras (tests/test_cli_quiet.py).
    import keras

    pixels = recipe.preprocessing.pixels
    latent_dims = set()
    seen = set()
    for member in recipe.members():
        key = (member.architecture, repr(sorted(member.overrides.items())))
        if key in seen:
            continue
        seen.add(key)
        try:
            model = get_entry(member.architecture).builder(
                **{**copy.deepcopy(member.overrides), "input_length": pixels}
            )
        except (TypeError, ValueError) as error:
            raise RecipeError(
                f"recipe {origin}: [autoencoders.grid] point {member.grid_point} "
                f"({member.architecture}, {member.overrides}) cannot be built: {error}"
            ) from None
        latent_dims.add(int(model.latent_dim))
        del model
        keras.backend.clear_session()
    _check_alignment_sample(recipe, origin, max(latent_dims))
    for parameter, settings in recipe.regressors.settings.items():
        for latent_dim in sorted(latent_dims):
            try:
                get_entry(settings.architecture).builder(
                    **{
                        **settings.overrides,
                        "latent_dim": latent_dim,
                        "learning_rate": settings.learning_rate,
                    }
                )
            except (TypeError, ValueError) as error:
                raise RecipeError(
                    f"recipe {origin}: [regressors.{parameter}] {settings.architecture} with "
                    f"overrides {settings.overrides} cannot be built: {error}"
                ) from None
    keras.backend.clear_session()


def _check_alignment_sample(recipe: Recipe, origin: str, latent_dim: int) -> None:
    """Latent alignment estimates the covariance of the observed latents: refuse, before any
    training, an observed sample of known size that is too small for it."""
    alignment = recipe.ensemble.latent_alignment
    observed = recipe.observed
    if alignment is None:
        return
    if observed.source == "simulator":
        n_observed, where = observed.n, "n"
    elif observed.source == "files" and observed.files:
        n_observed, where = len(observed.files), "files"
    else:
        return  # an HDF5 set: its size is known once it is read (align_latents checks it)
    if n_observed < 2 * latent_dim:
        raise RecipeError(
            f"recipe {origin}: [ensemble] latent_alignment = {alignment!r} needs at least "
            f"{2 * latent_dim} observed spectra (2 x the {latent_dim}-d latent space, to estimate "
            f"their covariance); [data.observed] {where} gives {n_observed}. Use more observed "
            'spectra or latent_alignment = "none"'
        )
