"""``from_pretrained`` and ``download``: find a pretrained folder, verify it, build the model.

A source is a local folder, a Hub repository (``owner/name`` or ``hf://owner/name@revision``) or
a published weights entry. Downloads go through ``huggingface_hub.snapshot_download`` with
``endpoint``, ``cache_dir``, ``revision`` and ``token`` passed explicitly; every file is checked
against the manifest before Keras reads it, and Keras loads it in safe mode.
"""

from __future__ import annotations

import concurrent.futures
import json
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import huggingface_hub
import keras
from huggingface_hub import errors

from mdwarf_zoo._version import __version__
from mdwarf_zoo.hub.catalogue import WeightsEntry, get_pretrained, list_pretrained
from mdwarf_zoo.hub.manifest import (
    COMMIT_SHA_PATTERN,
    MANIFEST_NAME,
    REPO_ID_PATTERN,
    PretrainedError,
    PretrainedInfo,
    PretrainedNotFoundError,
    UnknownArchitectureError,
    check_unlisted,
    read_manifest,
    verify_file,
)

logger = logging.getLogger(__name__)

#: Files larger than this are hashed in a thread while the model is being built.
_DEFER_BYTES = 1 << 20


@dataclass(frozen=True)
class _Source:
    """A parsed ``source``: a local folder, or a Hub repository at a revision."""

    text: str
    folder: Path | None = None
    repo_id: str | None = None
    revision: str | None = None
    entry: WeightsEntry | None = None


def _parse_source(source: str | os.PathLike, revision: str | None) -> _Source:
    if isinstance(source, os.PathLike) or Path(str(source)).is_dir():
        if revision is not None:
            raise ValueError(
                f"from_pretrained: revision={revision!r} makes no sense for the local folder "
                f"{source!s}"
            )
        return _Source(str(source), folder=Path(source))
    if not isinstance(source, str) or not source:
        raise ValueError(f"from_pretrained: source must be a non-empty string, got {source!r}")
    text = source
    if source.startswith("hf://"):
        repo_id, at, pinned = source[len("hf://") :].partition("@")
        if not REPO_ID_PATTERN.match(repo_id) or (at and not pinned):
            raise ValueError(
                f"from_pretrained: {source!r} is not hf://owner/name or hf://owner/name@revision"
            )
        if pinned and revision is not None and pinned != revision:
            raise ValueError(
                f"from_pretrained: {source!r} pins revision {pinned!r} but revision={revision!r}"
            )
        return _Source(text, repo_id=repo_id, revision=pinned or revision)
    if source in list_pretrained():
        entry = get_pretrained(source)
        if revision is not None and revision != entry.revision:
            raise ValueError(
                f"from_pretrained: the published entry {source!r} is pinned to "
                f"{entry.revision or 'a bundled folder'}; to load revision {revision!r} use "
                f"its repository: from_pretrained({entry.repository!r}, revision={revision!r})"
            )
        if entry.bundled is not None:
            return _Source(text, folder=entry.bundled_folder(), entry=entry)
        return _Source(text, repo_id=entry.repository, revision=entry.revision, entry=entry)
    if REPO_ID_PATTERN.match(source):
        return _Source(text, repo_id=source, revision=revision)
    published = list_pretrained()
    raise ValueError(
        f"from_pretrained: {source!r} is not an existing folder, a Hub repository "
        "('owner/name' or 'hf://owner/name[@revision]') nor a published weights entry "
        f"({', '.join(published) if published else 'none installed'})"
    )


def _fetch_hint(parsed: _Source, endpoint: str | None, cache_dir: object) -> str:
    command = f"mdwarf-zoo download {parsed.text}"
    if parsed.revision and parsed.entry is None and "@" not in parsed.text:
        command += f" --revision {parsed.revision}"
    if endpoint:
        command += f" --endpoint {endpoint}"
    if cache_dir:
        command += f" --cache-dir {cache_dir}"
    return command


def _snapshot(
    parsed: _Source,
    *,
    cache_dir: str | os.PathLike | None,
    local_files_only: bool,
    endpoint: str | None,
    token: str | bool | None,
) -> Path:
    where = f"{parsed.repo_id}@{parsed.revision or 'main'}"
    server = endpoint or huggingface_hub.constants.ENDPOINT
    try:
        folder = huggingface_hub.snapshot_download(
            parsed.repo_id,
            revision=parsed.revision,
            cache_dir=cache_dir,
            local_files_only=local_files_only,
            endpoint=endpoint,
            token=token,
            library_name="mdwarf_zoo",
            library_version=__version__,
        )
    except errors.RevisionNotFoundError as error:
        raise PretrainedNotFoundError(
            f"revision {parsed.revision!r} of {parsed.repo_id!r} does not exist on {server}; "
            "check the branch, tag or commit sha"
        ) from error
    except errors.RepositoryNotFoundError as error:
        raise PretrainedNotFoundError(
            f"repository {parsed.repo_id!r} (revision {parsed.revision or 'main'!r}) was not "
            f"found on {server}: check the name and revision, and pass token= for a private "
            "repository"
        ) from error
    except errors.LocalEntryNotFoundError as error:
        offline = local_files_only or huggingface_hub.constants.is_offline_mode()
        reason = (
            "downloads are switched off (local_files_only=True or HF_HUB_OFFLINE=1)"
            if offline
            else f"{server} could not be reached"
        )
        raise PretrainedNotFoundError(
            f"{parsed.text!r} ({where}) is not in the local cache "
            f"({cache_dir or huggingface_hub.constants.HF_HUB_CACHE}) and {reason}. Fetch it "
            f"once while online: `{_fetch_hint(parsed, endpoint, cache_dir)}`"
        ) from error
    except errors.EntryNotFoundError as error:
        raise PretrainedNotFoundError(
            f"a file of {where} could not be downloaded from {server}: {error}"
        ) from error
    return Path(folder)


def _fetch(
    source: str | os.PathLike,
    *,
    revision: str | None,
    cache_dir: str | os.PathLike | None,
    local_files_only: bool,
    endpoint: str | None,
    token: str | bool | None,
    defer_large: bool = False,
) -> tuple[PretrainedInfo, str, list[str]]:
    """Locate (download) a pretrained folder and verify it.

    Returns ``(info, origin, deferred)``: with ``defer_large``, files above
    ``_DEFER_BYTES`` are not verified yet and are named in ``deferred`` for the caller to check
    (in parallel with building the model) before it reads them.
    """
    parsed = _parse_source(source, revision)
    if parsed.folder is not None:
        folder = parsed.folder
        if not folder.is_dir():
            raise PretrainedNotFoundError(f"pretrained folder {folder} does not exist")
        commit = None
        origin = str(folder)
    else:
        folder = _snapshot(
            parsed,
            cache_dir=cache_dir,
            local_files_only=local_files_only,
            endpoint=endpoint,
            token=token,
        )
        commit = folder.name if COMMIT_SHA_PATTERN.match(folder.name) else parsed.revision
        origin = f"{parsed.repo_id}@{commit}"
    manifest = read_manifest(folder)
    deferred = []
    for name, expected in manifest["files"].items():
        if defer_large and expected.get("size", 0) > _DEFER_BYTES:
            deferred.append(name)
        else:
            verify_file(folder, name, expected, origin)
    check_unlisted(folder, manifest, origin)
    entry = parsed.entry
    if entry is not None:
        entry.check_manifest(manifest, folder / MANIFEST_NAME)
    info = PretrainedInfo.from_manifest(
        manifest,
        source=parsed.text,
        folder=folder,
        repo_id=parsed.repo_id,
        revision=commit,
        entry=entry.name if entry is not None else None,
    )
    return info, origin, deferred


def download(
    source: str | os.PathLike,
    *,
    revision: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    local_files_only: bool = False,
    endpoint: str | None = None,
    token: str | bool | None = None,
) -> PretrainedInfo:
    """Fetch a pretrained folder into the cache (or find it locally) and verify its files.

    Takes the arguments of :func:`from_pretrained` and returns where the verified folder is,
    without building the model.

    Returns:
        A :class:`PretrainedInfo`; ``info.folder`` is the verified folder and ``info.revision``
        the commit sha for Hub sources.

    Raises:
        See :func:`from_pretrained`.
    """
    info, _, _ = _fetch(
        source,
        revision=revision,
        cache_dir=cache_dir,
        local_files_only=local_files_only,
        endpoint=endpoint,
        token=token,
    )
    return info


def _check_architecture(folder: Path, manifest: Mapping[str, Any]) -> None:
    """Refuse, before Keras sees it, a config that is not a known zoo architecture."""
    architecture = manifest["architecture"]
    wanted = architecture.get("registered_name") or f"mdwarf_zoo>{architecture.get('class')}"
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    registered = config.get("registered_name") if isinstance(config, dict) else None
    if registered != wanted or not str(registered).startswith("mdwarf_zoo>"):
        raise PretrainedError(
            f"{folder / 'config.json'} describes {registered or config.get('class_name')!r}, "
            f"not the mdwarf_zoo architecture {wanted!r} named in {MANIFEST_NAME}; refusing to "
            "load arbitrary Keras objects"
        )
    if keras.saving.get_registered_object(wanted) is None:
        needed = manifest.get("zoo_version")
        raise UnknownArchitectureError(
            f"{folder} needs the architecture {architecture.get('class')!r}, which mdwarf_zoo "
            f"{__version__} does not have; it was saved with mdwarf_zoo {needed}: "
            f"pip install -U 'mdwarf-zoo>={needed}'"
        )


def _attach(model: keras.Model, info: PretrainedInfo) -> None:
    # Bypass Keras' attribute tracking: the info is plain data, not a layer, variable or
    # container Keras should serialise or walk for weights.
    object.__setattr__(model, "zoo_metadata", info)


def from_pretrained(
    source: str | os.PathLike,
    *,
    revision: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    local_files_only: bool = False,
    endpoint: str | None = None,
    token: str | bool | None = None,
) -> keras.Model:
    """Load a pretrained zoo model, verified, with its metadata in ``model.zoo_metadata``.

    Args:
        source: a local pretrained folder, ``"owner/name"``, ``"hf://owner/name[@revision]"``
            or the name of a published weights entry (:func:`mdwarf_zoo.list_pretrained`).
        revision: branch, tag or 40-hex commit sha of a Hub repository (default ``main``).
            A cached commit sha loads without any network request.
        cache_dir: the Hugging Face cache folder (default: ``HF_HUB_CACHE``).
        local_files_only: never touch the network; use the cache only.
        endpoint: the Hub URL (default: ``HF_ENDPOINT`` or https://huggingface.co).
        token: a Hub token for private repositories (default: the stored login).

    Returns:
        The model (an instance of its zoo class), with ``model.zoo_metadata``, a
        :class:`PretrainedInfo` (wavelength grid, ``Preprocessor``, labels, recipe,
        provenance, where it came from).

    Raises:
        PretrainedNotFoundError: for a missing folder, repository, revision or file, or a
            model not in the cache while offline (the message says how to fetch it).
        ChecksumMismatchError: when a file differs from the manifest (the message names it).
        UnknownArchitectureError: for an architecture the installed zoo does not know.
        PretrainedError: for a malformed manifest or a config that is not a zoo architecture
            or needs code Keras' safe mode refuses (e.g. a ``Lambda`` layer).
        ValueError: for a malformed ``source``.

    Examples:
        >>> import mdwarf_zoo
        >>> source = "hf://acme/dense_ae_1024_mb24@0123abc..."
        >>> model = mdwarf_zoo.from_pretrained(source)  # doctest: +SKIP
        >>> model.zoo_metadata.grid  # doctest: +SKIP
        WavelengthGrid(start=8800.0, stop=8835.0, step=0.01)
    """
    info, origin, deferred = _fetch(
        source,
        revision=revision,
        cache_dir=cache_dir,
        local_files_only=local_files_only,
        endpoint=endpoint,
        token=token,
        defer_large=True,
    )
    folder = info.folder
    # Hash the weights while Keras builds the graph from the (verified) config; the weights
    # are read only once their checksum has passed.
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        checks = [
            pool.submit(verify_file, folder, name, info.manifest["files"][name], origin)
            for name in deferred
        ]
        try:
            _check_architecture(folder, info.manifest)
            config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
            try:
                model = keras.saving.deserialize_keras_object(config, safe_mode=True)
            except (TypeError, ValueError) as error:
                raise PretrainedError(
                    f"Keras (safe mode) refused to build the model in {folder}: {error}"
                ) from error
        finally:
            for check in checks:
                check.result()
    try:
        model.load_weights(folder / "model.weights.h5")
    except ValueError as error:
        raise PretrainedError(
            f"{folder / 'model.weights.h5'} does not fit the {type(model).__name__} described "
            f"by config.json: {error}"
        ) from error
    _attach(model, info)
    logger.debug("loaded %s from %s", type(model).__name__, info)
    return model
