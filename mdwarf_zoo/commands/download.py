"""``mdwarf-zoo download NAME_OR_REPO``: fetch pretrained weights into the cache and verify them."""

from __future__ import annotations

import argparse
import sys


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "download",
        help="fetch pretrained weights into the local cache (for offline use)",
        description="Download a published weights entry or a Hub repository into the Hugging "
        "Face cache and check every file against its manifest. Afterwards "
        "mdwarf_zoo.from_pretrained(NAME_OR_REPO) works offline.",
    )
    parser.add_argument(
        "source", metavar="NAME_OR_REPO", help="entry name, owner/name or hf://owner/name[@rev]"
    )
    parser.add_argument("--revision", default=None, help="branch, tag or commit sha")
    parser.add_argument("--cache-dir", default=None, help="Hugging Face cache folder")
    parser.add_argument("--endpoint", default=None, help="Hub URL (default: HF_ENDPOINT)")
    parser.add_argument("--token", default=None, help="Hub token for private repositories")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from huggingface_hub.errors import HfHubHTTPError

    from mdwarf_zoo.hub import download

    try:
        info = download(
            args.source,
            revision=args.revision,
            cache_dir=args.cache_dir,
            endpoint=args.endpoint,
            token=args.token,
        )
    except HfHubHTTPError as error:
        print(f"mdwarf-zoo download: error: {error}", file=sys.stderr)
        return 1
    where = f"{info.repo_id}@{info.revision}" if info.repo_id else "local folder"
    print(f"{args.source}: {info.architecture.get('class')} from {where}, all files verified")
    print(info.folder)
    return 0
