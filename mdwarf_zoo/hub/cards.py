"""Model cards (Hugging Face ``README.md`` with YAML front matter) for pretrained folders.

A card is built from the manifest that :func:`mdwarf_zoo.save_pretrained` writes
(``mdwarf_zoo.json``), so what the card says and what the loader checks never disagree.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from huggingface_hub import EvalResult, ModelCard, ModelCardData

#: Tags every zoo card carries (the Hub's search facets).
BASE_TAGS = ("mdwarf_zoo", "astronomy", "stellar-spectra", "m-dwarfs", "keras")

MB24_CITATION = (
    "Mas-Buitrago, P., et al. 2024, A&A 687, A205: Using autoencoders and deep transfer "
    "learning to determine the stellar parameters of 286 M dwarfs (arXiv:2405.08703)."
)

_DEFAULT_INTENDED_USE = (
    "Stellar parameters (Teff, log g, [M/H], v sin i) of M dwarfs from high-resolution spectra "
    "prepared exactly as described under *Input* (same wavelength grid, preprocessing and "
    "scaling). Autoencoders are meant to be fine-tuned on a user's observed spectra with "
    "`mdwarf_zoo.transfer` before their latents feed the regressors."
)
_DEFAULT_LIMITATIONS = (
    "Trained on synthetic PHOENIX-ACES spectra: predictions outside the label ranges of the "
    "training set, for other spectral types, or for spectra on another wavelength grid or "
    "preprocessing are not supported. Observed spectra differ systematically from synthetic "
    "ones (the synthetic gap); use transfer learning and check the diagnostics."
)


def _task_type(kind: str) -> str:
    return "feature-extraction" if kind == "autoencoder" else "tabular-regression"


def _format_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def card_data(manifest: Mapping[str, Any]) -> ModelCardData:
    """The YAML front matter of the card for ``manifest`` (``library_name: keras``).

    Args:
        manifest: the content of ``mdwarf_zoo.json`` (its ``files`` entry may be absent).

    Returns:
        A ``huggingface_hub.ModelCardData`` with licence, tags, base model and, when the
        manifest has metrics, a ``model-index`` with one result per metric.
    """
    architecture = manifest["architecture"]
    card = manifest.get("card") or {}
    name = card.get("model_name") or architecture.get("registry_name") or architecture["class"]
    tags = list(dict.fromkeys([*BASE_TAGS, architecture.get("kind", ""), *card.get("tags", [])]))
    tags = [tag for tag in tags if tag]
    metrics = manifest.get("metrics") or {}
    dataset = (manifest.get("provenance") or {}).get("dataset", "synthetic spectra")
    eval_results = [
        EvalResult(
            task_type=_task_type(architecture.get("kind", "")),
            dataset_type=str(dataset),
            dataset_name=str(dataset),
            metric_type=metric,
            metric_value=value,
        )
        for metric, value in metrics.items()
    ]
    return ModelCardData(
        library_name="keras",
        license=card.get("license"),
        tags=tags,
        base_model=card.get("base_model"),
        model_name=name if eval_results else None,
        eval_results=eval_results or None,
        pipeline_tag=_task_type(architecture.get("kind", "")),
    )


def build_card(manifest: Mapping[str, Any], *, repo_id: str | None = None) -> ModelCard:
    """A model card for a pretrained folder.

    Args:
        manifest: the content of ``mdwarf_zoo.json``.
        repo_id: the Hub repository the folder goes to, used in the loading example.

    Returns:
        A ``huggingface_hub.ModelCard``; ``str(card)`` is the ``README.md`` text.

    Examples:
        >>> from mdwarf_zoo.hub import build_card
        >>> card = build_card(manifest)  # doctest: +SKIP
        >>> card.data.library_name
        'keras'
    """
    data = card_data(manifest)
    architecture = manifest["architecture"]
    card = manifest.get("card") or {}
    title = card.get("model_name") or architecture.get("registry_name") or architecture["class"]
    source = repo_id or "OWNER/NAME"
    lines = [f"# {title}", ""]
    lines += [card.get("description") or f"A `{architecture['class']}` from mdwarf_zoo.", ""]
    lines += [
        "## How to use",
        "",
        "```python",
        "import mdwarf_zoo",
        f'model = mdwarf_zoo.from_pretrained("hf://{source}")',
        "info = model.zoo_metadata          # wavelength grid, preprocessor, labels",
        "flux = info.preprocessor.apply(spectra) if info.preprocessor else spectra",
        "```",
        "",
        "## Intended use",
        "",
        card.get("intended_use") or _DEFAULT_INTENDED_USE,
        "",
        "## Limitations",
        "",
        card.get("limitations") or _DEFAULT_LIMITATIONS,
        "",
        "## Architecture",
        "",
        f"- class: `{architecture['class']}` (registry name: "
        f"`{architecture.get('registry_name') or '-'}`), kind: {architecture.get('kind')}",
        f"- parameters: {architecture.get('parameters', 0):,}",
        f"- needs mdwarf_zoo >= {manifest.get('zoo_version')}",
        "",
        "```json",
        json.dumps(architecture.get("config", {}), indent=2, sort_keys=True),
        "```",
        "",
        "## Input",
        "",
    ]
    grid = manifest.get("wavelength_grid")
    if grid:
        lines.append(
            f"- wavelength grid: {grid['start']:g}-{grid['stop']:g} Angstrom (vacuum) in steps of "
            f"{grid['step']:g} Angstrom"
        )
    else:
        lines.append("- wavelength grid: not recorded")
    preprocessing = manifest.get("preprocessing")
    lines.append(
        "- preprocessing: "
        + (f"`{json.dumps(preprocessing, sort_keys=True)}`" if preprocessing else "not recorded")
    )
    labels = manifest.get("labels") or []
    if labels:
        lines += ["", "## Outputs", "", "| label | unit | scaling |", "|---|---|---|"]
        for label in labels:
            scaling = json.dumps(label.get("scaling")) if label.get("scaling") else "-"
            lines.append(f"| {label['name']} | {label.get('unit') or '-'} | {scaling} |")
    lines += ["", "## How it was trained", ""]
    if card.get("training"):
        lines += [card["training"], ""]
    recipe = manifest.get("recipe")
    lines.append(
        f"- recipe: `{recipe['name']}` (sha256 `{recipe['sha256']}`)" if recipe else "- recipe: -"
    )
    for key, value in sorted((manifest.get("provenance") or {}).items()):
        lines.append(f"- {key}: {_format_value(value)}")
    metrics = manifest.get("metrics") or {}
    if metrics:
        lines += ["", "## Metrics", "", "| metric | value |", "|---|---|"]
        lines += [f"| {name} | {_format_value(value)} |" for name, value in metrics.items()]
    lines += [
        "",
        "## Licence",
        "",
        card.get("license") or "Not stated by the author.",
        "",
        "## Citation",
        "",
        MB24_CITATION,
        "",
    ]
    return ModelCard(f"---\n{data.to_yaml()}\n---\n\n" + "\n".join(lines))


def read_card(path: str | Path) -> ModelCard:
    """Read a ``README.md`` model card.

    Raises:
        FileNotFoundError: when ``path`` does not exist.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"model card {path} does not exist")
    return ModelCard(path.read_text(encoding="utf-8"))
