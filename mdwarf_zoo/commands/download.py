"""``mdwarf-zoo download NAME_OR_REPO``: fetch pretrained weights into the cache and verify them."""

from __future__ import annotations

import argparse

from mdwarf_zoo.commands._common import add_command, add_hub_arguments, call_hub, hub_options


def add_parser(subparsers) -> None:
    parser = add_command(
        subparsers,
        "download",
        run,
        help="fetch pretrained weights into the local cache (for offline use)",
        description="Download a published weights entry or a Hub repository into the Hugging "
        "Face cache and check every file against its manifest. Afterwards "
        "mdwarf_zoo.from_pretrained(NAME_OR_REPO) works offline.",
    )
    parser.add_argument(
        "source", metavar="NAME_OR_REPO", help="entry name, owner/name or hf://owner/name[@rev]"
    )
    add_hub_arguments(
        parser,
        revision_help="branch, tag or commit sha",
        token_help="Hub token for private repositories",
        cache_dir=True,
    )


def run(args: argparse.Namespace) -> int:
    from mdwarf_zoo.hub import download

    info = call_hub("download", download, args.source, **hub_options(args))
    if info is None:
        return 1
    where = f"{info.repo_id}@{info.revision}" if info.repo_id else "local folder"
    print(f"{args.source}: {info.architecture.get('class')} from {where}, all files verified")
    print(info.folder)
    return 0
