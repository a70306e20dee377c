"""``push_to_hub``: publish a model or a verified pretrained folder to a Hub repository."""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path

import keras
from huggingface_hub import HfApi

from mdwarf_zoo._version import __version__
from mdwarf_zoo.hub.manifest import MANIFEST_NAME, REPO_ID_PATTERN, verify_folder
from mdwarf_zoo.hub.save import save_pretrained

logger = logging.getLogger(__name__)


def push_to_hub(
    model_or_directory: keras.Model | str | os.PathLike,
    repo_id: str,
    *,
    revision: str | None = None,
    commit_message: str | None = None,
    private: bool = False,
    token: str | bool | None = None,
    endpoint: str | None = None,
) -> str:
    """Publish a model or a pretrained folder to a Hub repository.

    A model is first written with :func:`save_pretrained` (its metadata carried over); a folder
    is verified against its manifest before anything is sent. The repository is created when
    missing, and so is the branch ``revision``.

    Args:
        model_or_directory: a zoo model or a folder written by :func:`save_pretrained`.
        repo_id: ``"owner/name"``.
        revision: the branch to commit to (default ``main``).
        commit_message: the commit summary.
        private: create the repository as private (an existing one keeps its visibility).
        token: a Hub token with write access (default: the stored login).
        endpoint: the Hub URL (default: ``HF_ENDPOINT`` or https://huggingface.co).

    Returns:
        The 40-hex sha of the commit, to pin in ``from_pretrained(..., revision=sha)``.

    Raises:
        ValueError: for a malformed ``repo_id`` or a folder that fails verification.
        huggingface_hub.errors.HfHubHTTPError: when the Hub refuses (authentication ...).

    Examples:
        >>> folder = "dense_ae_1024_mb24"  # written by save_pretrained
        >>> sha = mdwarf_zoo.push_to_hub(folder, "acme/dense_ae_1024_mb24")  # doctest: +SKIP
    """
    if not isinstance(repo_id, str) or not REPO_ID_PATTERN.match(repo_id):
        raise ValueError(f"push_to_hub: repo_id must look like 'owner/name', got {repo_id!r}")
    with tempfile.TemporaryDirectory(prefix="mdwarf_zoo-push-") as scratch:
        if isinstance(model_or_directory, keras.Model):
            folder = save_pretrained(model_or_directory, Path(scratch) / "model", repo_id=repo_id)
        else:
            folder = Path(model_or_directory)
            if not folder.is_dir():
                raise FileNotFoundError(f"push_to_hub: {folder} is not a folder")
        manifest = verify_folder(folder)
        files = [MANIFEST_NAME, *manifest["files"]]
        api = HfApi(
            endpoint=endpoint,
            token=token,
            library_name="mdwarf_zoo",
            library_version=__version__,
        )
        api.create_repo(repo_id, private=private, exist_ok=True)
        if revision is not None and revision != "main":
            api.create_branch(repo_id, branch=revision, exist_ok=True)
        architecture = manifest["architecture"]
        info = api.upload_folder(
            folder_path=folder,
            repo_id=repo_id,
            revision=revision,
            allow_patterns=files,
            commit_message=commit_message
            or f"Upload {architecture.get('registry_name') or architecture['class']} "
            f"(mdwarf_zoo {manifest['zoo_version']})",
        )
    logger.info("pushed %s to %s: commit %s", folder, repo_id, info.oid)
    return info.oid
