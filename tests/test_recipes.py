"""Recipe loading and validation: every error names the key, the value and what is allowed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from recipe_builder import tiny_recipe

from mdwarf_zoo.recipes import RecipeError, list_recipes, load_recipe, parse_recipe

# The tiny recipe cut to what parsing needs: a two-by-two grid, defaults elsewhere.
PARSED = {
    "recipe": {"seed": 3},
    "data.synthetic": {"n": 40},
    "data.synthetic.label_ranges": None,
    "data.observed": {"n": 10},
    "preprocessing": {"window": None, "normalisation": "none"},
    "autoencoders": {"members": None, "epochs": 1, "batch_size": None, "learning_rate": None},
    "autoencoders.grid": {
        "architecture": ["dense_ae_tiny", "conv_ae_tiny"],
        "widths": None,
        "activation": None,
        "l1": [1e-7, 2e-7],
    },
    "transfer": None,
    "regressors": {"parameters": ["teff"], "epochs": 1, "learning_rate": None, "batch_size": None},
    "regressors.overrides": None,
    "ensemble": None,
    "outputs": None,
}
TINY = tiny_recipe(PARSED)
# Observed spectra from files instead of the simulator.
FILES = {
    "data.observed": {"source": "files", "n": None, "files": ["spectra/*.fits"], "no_rv": True}
}
# CORAL needs at least 2 x 8 observed spectra (the latent size of both architectures).
SIXTEEN = {"data.observed": {"n": 16}}


def parse(text: str, **kwargs):
    return parse_recipe(text, check_models=kwargs.pop("check_models", False), **kwargs)


def parse_tiny(*changes, check_models=False):
    return parse(tiny_recipe(PARSED, *changes), check_models=check_models)


def test_shipped_recipes_are_found_by_name():
    names = list_recipes()
    for name in ("quickstart", "mb24_reference", "compare_quick", "compare_full"):
        assert name in names
    quick = load_recipe("quickstart")
    assert quick.name == "quickstart" and len(quick.sha256) == 64


def test_reference_recipe_is_mb24():
    recipe = load_recipe("mb24_reference", check_files=False, check_models=False)
    members = recipe.members()
    assert len(members) == 26
    assert {m.architecture for m in members} == {f"dense_ae_{n}" for n in range(1024, 2049, 256)}
    # 25 grid points, then the first point again with the next seed.
    assert members[25].grid_point == 0 and members[25].overrides == members[0].overrides
    assert members[25].seed == members[24].seed + 1
    assert recipe.autoencoders.epochs == 120 and recipe.autoencoders.batch_size == 128
    assert recipe.autoencoders.learning_rate == 1e-4 and recipe.autoencoders.contractive == 1e-4
    assert recipe.autoencoders.validation_split == pytest.approx(0.3)
    assert recipe.autoencoders.precision == "float32"
    assert recipe.transfer.freeze == 5 and recipe.transfer.epochs == 60
    assert recipe.transfer.validation_split == pytest.approx(0.2)
    teff = recipe.regressors.settings["teff"]
    assert (teff.overrides["nf1"], teff.overrides["nf2"], teff.overrides["nu"]) == (64, 32, 64)
    assert teff.learning_rate == 0.01 and teff.epochs == 200 and recipe.regressors.seeds == 5
    assert recipe.ensemble.best == 80
    assert recipe.ensemble.error_model == "spread"  # MB24's errors, named in the recipe
    l1 = sorted({m.overrides["l1"] for m in members})
    assert l1[0] == pytest.approx(8e-8) and l1[-1] == pytest.approx(1.2e-7) and len(l1) == 5


def test_reference_recipe_names_missing_data_paths():
    with pytest.raises(RecipeError, match=r"\[data.synthetic\] grid = .*no such folder"):
        load_recipe("mb24_reference", check_models=False)


def test_grid_is_a_cartesian_product_cycled_with_new_seeds():
    recipe = parse_tiny({"autoencoders": {"members": 5}})
    members = recipe.members()
    assert [(m.architecture, m.overrides["l1"]) for m in members[:4]] == [
        ("dense_ae_tiny", 1e-7),
        ("dense_ae_tiny", 2e-7),
        ("conv_ae_tiny", 1e-7),
        ("conv_ae_tiny", 2e-7),
    ]
    assert members[4].grid_point == 0 and [m.seed for m in members] == [3, 4, 5, 6, 7]


@pytest.mark.parametrize(
    ("change", "pattern"),
    [
        (
            ("epochs = 1\n\n[autoencoders.grid]", "epocs = 1\n\n[autoencoders.grid]"),
            r"\[autoencoders\] has an unknown key 'epocs'; did you mean 'epochs'\?",
        ),
        (
            ("[autoencoders]\nepochs = 1", '[autoencoders]\nepochs = "10"'),
            r"\[autoencoders\] epochs = '10': expected an integer >= 1",
        ),
        (
            ('"conv_ae_tiny"]', '"conv_ae_tinny"]'),
            r"architecture = 'conv_ae_tinny': unknown model .*Did you mean conv_ae_tiny",
        ),
        (
            ("[regressors]\n", '[regressors]\narchitecture = "dense_ae_tiny"\n'),
            r"\[regressors.teff\] architecture = 'dense_ae_tiny' is a autoencoder; expected a "
            r"regressor",
        ),
        (
            ("seed = 3", 'seed = 3\nstrategy = "mirorred"'),
            r"strategy = 'mirorred': expected one of .* \(did you mean 'mirrored'\?\)",
        ),
        (
            ('[data.observed]\nsource = "simulator"', '[data.observed]\nsource = "fits"'),
            r"\[data.observed\] source = 'fits': expected one of \['simulator', 'files', 'set'\]",
        ),
        (
            ('parameters = ["teff"]', 'parameters = ["teff", "feh"]'),
            r"\[regressors\] parameters = \['teff', 'feh'\]: expected a non-empty list",
        ),
        (("[regressors]", "[regresors]\n[regressors]"), r"unknown table \[regresors\]"),
        (
            ("n = 40", "n = 40\n[data.synthetic.label_ranges]\nteff = [2000, 3000]"),
            r"\[data.synthetic.label_ranges\] teff = \[2000, 3000\]: expected \[low, high\] with "
            r"2300 <= low",
        ),
        (
            ("n = 10", "n = 10\n[data.observed.gap]\ndamping = 2.0"),
            r"\[data.observed.gap\] has an unknown key 'damping'; did you mean 'damping_scale'",
        ),
        (
            ("seeds = 2\nepochs = 1\n", "seeds = 2\nepochs = 1\n[ensemble]\nbest = 9\n"),
            r"\[ensemble\] best = 9: expected at most 8",
        ),
        (
            ("[autoencoders]\nepochs = 1", '[autoencoders]\nepochs = 1\nprecision = "bf16"'),
            r"\[autoencoders\] precision = 'bf16': expected one of 'float32', 'mixed_bfloat16'",
        ),
        (
            ("[preprocessing]", "[preprocessing]\nwindow = [8835, 8800, 0.01]"),
            r"\[preprocessing\] window = \[8835, 8800, 0.01\]: expected \[start, stop, step\]",
        ),
        (
            ("seeds = 2\n", 'seeds = 2\nstandardize_latents = "yes"\n'),
            r"\[regressors\] standardize_latents = 'yes': expected true or false",
        ),
        (
            ("seeds = 2\n", "seeds = 2\n[regressors.teff]\nstandardize_latents = true\n"),
            r"\[regressors.teff\] has an unknown key 'standardize_latents'",
        ),
        (
            ("seeds = 2\nepochs = 1\n", 'seeds = 2\nepochs = 1\n[ensemble]\nerror_model = "rms"\n'),
            r"\[ensemble\] error_model = 'rms': expected one of \['spread', 'spread\+validation', "
            r"'spread\+validation\+gap'\]",
        ),
        (
            (
                "seeds = 2\nepochs = 1\n",
                'seeds = 2\nepochs = 1\n[ensemble]\nlatent_alignment = "coral_neighbors"\n',
            ),
            r"\[ensemble\] latent_alignment = 'coral_neighbors': expected one of \['none', "
            r"'coral', 'coral_neighbours'\] \(did you mean 'coral_neighbours'\?\)",
        ),
        (
            (
                "seeds = 2\nepochs = 1\n",
                'seeds = 2\nepochs = 1\n[ensemble]\nlatent_alignment = "coral_neighbours"\n'
                "alignment_neighbours = 0\n",
            ),
            r"\[ensemble\] alignment_neighbours = 0: expected an integer >= 1",
        ),
        (
            (
                "seeds = 2\nepochs = 1\n",
                'seeds = 2\nepochs = 1\n[ensemble]\nlatent_alignment = "coral"\n'
                "alignment_neighbours = 10\n",
            ),
            r"\[ensemble\] alignment_neighbours = 10: expected the key only with "
            r"latent_alignment = \"coral_neighbours\" .* latent_alignment is 'coral'",
        ),
        (
            (
                "seeds = 2\nepochs = 1\n",
                "seeds = 2\nepochs = 1\n[ensemble]\nalignment_resamples = 5\n",
            ),
            r"\[ensemble\] alignment_resamples = 5: expected the key only with a latent_alignment",
        ),
        (
            (
                "seeds = 2\nepochs = 1\n",
                'seeds = 2\nepochs = 1\n[ensemble]\nlatent_alignment = "coral"\n'
                "alignment_resamples = 1\n",
            ),
            r"\[ensemble\] alignment_resamples = 1: expected 0 \(no bootstrap\) or at least 2",
        ),
        (
            (
                "seeds = 2\nepochs = 1\n",
                'seeds = 2\nepochs = 1\n[ensemble]\nlatent_alignment = "coral"\n'
                "alignment_resamples = -3\n",
            ),
            r"\[ensemble\] alignment_resamples = -3: expected an integer >= 0",
        ),
    ],
)
def test_validation_errors_name_key_value_and_allowed(change, pattern):
    old, new = change
    assert old in TINY
    with pytest.raises(RecipeError, match=pattern):
        parse(TINY.replace(old, new, 1))


def test_missing_files_are_refused_before_training(tmp_path: Path):
    path = tmp_path / "r.toml"
    path.write_text(tiny_recipe(PARSED, FILES))
    with pytest.raises(RecipeError, match=r"files: 'spectra/\*.fits' matches no file"):
        load_recipe(path, check_models=False)
    (tmp_path / "spectra").mkdir()
    (tmp_path / "spectra" / "a.fits").write_bytes(b"")
    recipe = load_recipe(path, check_models=False)
    assert recipe.observed.files == (tmp_path / "spectra" / "a.fits",)


def test_bad_constructor_argument_fails_when_models_are_checked():
    with pytest.raises(RecipeError, match=r"cannot be built: .*l1 must be a number >= 0"):
        parse_tiny({"autoencoders.grid": {"l1": [1e-7, -1.0]}}, check_models=True)
    with pytest.raises(RecipeError, match=r"\[regressors.teff\] latent_cnn .*nf1 must be"):
        parse_tiny({"regressors.overrides": {"nf1": 0}}, check_models=True)


def test_unknown_recipe_name_suggests_close_names():
    with pytest.raises(FileNotFoundError, match=r"Did you mean 'quickstart'"):
        load_recipe("quikstart")


def test_non_mb24_ensemble_and_regressor_keys():
    defaults = parse_tiny()
    assert defaults.regressors.standardize_latents is False
    assert defaults.ensemble.error_model == "spread+validation+gap"
    assert defaults.ensemble.gap == "simulator"  # a simulated synthetic set: measured
    assert defaults.ensemble.latent_alignment is None
    changes = {
        "regressors": {"standardize_latents": True},
        "ensemble": {
            "error_model": "spread+validation",
            "latent_alignment": "coral_neighbours",
            "alignment_neighbours": 7,
        },
    }
    recipe = parse_tiny(SIXTEEN, changes, check_models=True)
    assert recipe.regressors.standardize_latents is True
    assert recipe.ensemble.error_model == "spread+validation"
    assert recipe.ensemble.latent_alignment == "coral_neighbours"
    assert recipe.ensemble.alignment_neighbours == 7
    assert recipe.ensemble.alignment_resamples == 30  # the default
    off = {"ensemble": {"alignment_neighbours": None, "alignment_resamples": 0}}
    assert parse_tiny(SIXTEEN, changes, off).ensemble.alignment_resamples == 0
    none = {"ensemble": {"latent_alignment": "none"}}
    assert parse_tiny(none).ensemble.latent_alignment is None


def test_ensemble_gap_key():
    recipe = parse_tiny({"ensemble": {"gap": {"teff": 80, "mh": 0.15}}})
    assert recipe.ensemble.error_model == "spread+validation+gap"
    assert recipe.ensemble.gap == {"teff": 80.0, "mh": 0.15}
    bad = [
        ({"teff": -3}, r"gap\['teff'\] = -3; expected a finite number >= 0"),
        ({"Teff": 50}, r"gap names unknown parameter 'Teff'"),
        ({"mh": "0.2"}, r"gap\['mh'\] = '0.2'; expected a finite number >= 0"),
        ({"mh": float("nan")}, r"gap\['mh'\] = nan; expected a finite number >= 0"),
        (60, r"gap must be a dict parameter -> scale, got int"),
    ]
    for gap, message in bad:
        with pytest.raises(RecipeError, match=r"\[ensemble\] gap = .*: expected a table parameter "
                           r"-> finite scale >= 0 .*" + message):
            parse_tiny({"ensemble": {"gap": gap}})
    assert parse_tiny({"ensemble": {"gap": "prior"}}).ensemble.gap == "prior"
    with pytest.raises(RecipeError, match=r"\[ensemble\] gap = 'measured': expected \"prior\", "
                       r"\"simulator\" or a table"):
        parse_tiny({"ensemble": {"gap": "measured"}})
    from_set = {"data.synthetic": {"source": "set", "path": "train.h5", "n": None},
                "data.synthetic.label_ranges": None}
    assert parse(tiny_recipe(from_set), check_files=False).ensemble.gap == "prior"
    with pytest.raises(RecipeError, match=r"\[ensemble\] gap = 'simulator': .*needs "
                       r"\[data.synthetic\] source = \"simulator\" \(got 'set'\)"):
        parse(tiny_recipe(from_set, {"ensemble": {"gap": "simulator"}}), check_files=False)
    with pytest.raises(RecipeError, match=r"\[ensemble\] gap = .*: expected the key only with "
                       r'error_model = "spread\+validation\+gap", got error_model = \'spread\''):
        parse_tiny({"ensemble": {"gap": {"teff": 80}, "error_model": "spread"}})


def test_ensemble_error_scale_bins_key():
    assert parse_tiny({}).ensemble.gap == "simulator"
    assert parse_tiny({}).ensemble.error_scale_bins == 5
    assert parse_tiny({"ensemble": {"error_scale_bins": 1}}).ensemble.error_scale_bins == 1
    with pytest.raises(RecipeError, match=r"\[ensemble\] error_scale_bins = 0: expected"):
        parse_tiny({"ensemble": {"error_scale_bins": 0}})
    with pytest.raises(RecipeError, match=r"\[ensemble\] error_scale_bins = 3: expected the key "
                       r"only with gap = \"simulator\" .*; gap is 'prior'"):
        parse_tiny({"ensemble": {"gap": "prior", "error_scale_bins": 3}})


def test_alignment_refuses_too_few_observed_spectra_before_training():
    # dense_ae_tiny and conv_ae_tiny have 8-d latents: CORAL needs 16 observed spectra.
    coral = {"ensemble": {"latent_alignment": "coral"}}
    with pytest.raises(
        RecipeError,
        match=r"latent_alignment = 'coral' needs at least 16 observed spectra .*\[data.observed\] "
        r"n gives 10.* latent_alignment = \"none\"",
    ):
        parse_tiny(coral, check_models=True)
    assert parse_tiny(coral, SIXTEEN, check_models=True).observed.n == 16


@pytest.mark.parametrize(
    "velocity, word",
    [({"no_rv": None}, "neither"), ({"template": "t.fits"}, "both")],
)
def test_observed_files_need_a_template_or_no_rv(tmp_path: Path, velocity: dict, word: str):
    """Observed files are never used without a word on their radial velocity."""
    (tmp_path / "a.fits").write_bytes(b"")
    (tmp_path / "t.fits").write_bytes(b"")
    path = tmp_path / "r.toml"
    path.write_text(
        tiny_recipe(PARSED, FILES, {"data.observed": {"files": ["a.fits"], **velocity}})
    )
    with pytest.raises(RecipeError, match=rf"template .* or no_rv = true .*not {word}"):
        load_recipe(path, check_models=False)


def test_regressors_fused_key():
    """On by default where it can run (strategy "default"), off by default elsewhere, and
    refused when asked for with another strategy."""
    fused = {"regressors": {"fused": True}}
    mirrored = {"recipe": {"strategy": "mirrored"}}
    assert parse_tiny().regressors.fused is True
    assert parse_tiny({"regressors": {"fused": False}}).regressors.fused is False
    assert parse_tiny(mirrored).regressors.fused is False
    with pytest.raises(RecipeError, match=r'fused = true .* strategy = "default"'):
        parse_tiny(fused, mirrored)


def test_the_hpf_first_contact_recipe_parses():
    """The recipe of benchmarks/hpf_first_contact.py: HPF's R, VB 10's Teff, gap measured."""
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "hpf_first_contact.toml"
    recipe = load_recipe(path, check_models=True)
    assert recipe.preprocessing.resolving_power == 55000
    assert recipe.synthetic.label_ranges["teff"] == (2300.0, 4300.0)
    assert recipe.transfer.mode == "decoder_only"
    assert recipe.ensemble.gap == "simulator"


def test_gap_twins_follow_the_synthetic_label_ranges(tmp_path):
    """The held-out stars of [ensemble] gap = "simulator": the recipe's label ranges, or the
    range of a simulated set's labels table when the set was simulated from one."""
    from mdwarf_zoo.recipes.run import Run
    from mdwarf_zoo.recipes.sets import GAP_TWINS, twin_labels

    ranged = Run(parse_tiny(), tmp_path / "a", progress=False)
    low, high = ranged.recipe.synthetic.label_ranges["teff"]
    labels = twin_labels(ranged, np.zeros((3, 4)))
    assert labels.shape == (GAP_TWINS, 4)
    assert labels[:, 0].min() >= low and labels[:, 0].max() <= high
    assert labels[:, 0].max() - labels[:, 0].min() > 0.9 * (high - low)
    table = tmp_path / "labels.csv"
    rows = [[3000.0, 4.9, -0.1, 2.0], [3400.0, 5.1, 0.2, 4.0], [3200.0, 5.0, 0.0, 3.0]]
    table.write_text("teff,logg,mh,vsini\n" + "\n".join(",".join(map(str, r)) for r in rows))
    from_table = {"data.synthetic": {"n": None, "labels": str(table)}}
    tabled = Run(parse_tiny(from_table), tmp_path / "b", progress=False)
    labels = twin_labels(tabled, np.array(rows))
    assert labels[:, 0].min() >= 3000.0 and labels[:, 0].max() <= 3400.0
    assert labels[:, 2].min() >= -0.1 and labels[:, 2].max() <= 0.2
