"""``mdwarf-zoo push DIR REPO_ID``: publish a pretrained folder to a Hub repository."""

from __future__ import annotations

import argparse

from mdwarf_zoo.commands._common import add_command, add_hub_arguments, call_hub, hub_options


def add_parser(subparsers) -> None:
    parser = add_command(
        subparsers,
        "push",
        run,
        help="publish a pretrained folder to the Hugging Face Hub",
        description="Verify a folder written by mdwarf_zoo.save_pretrained and upload it to a "
        "Hub repository (created when missing). Prints the commit sha to pin.",
    )
    parser.add_argument("directory", metavar="DIR", help="the pretrained folder")
    parser.add_argument("repo_id", metavar="REPO_ID", help="owner/name")
    add_hub_arguments(
        parser,
        revision_help="branch to commit to (default main)",
        token_help="Hub token with write access",
        cache_dir=False,
    )
    parser.add_argument("--private", action="store_true", help="create the repository private")
    parser.add_argument("--message", default=None, help="commit message")


def run(args: argparse.Namespace) -> int:
    from mdwarf_zoo.hub import push_to_hub

    sha = call_hub(
        "push",
        push_to_hub,
        args.directory,
        args.repo_id,
        commit_message=args.message,
        private=args.private,
        **hub_options(args),
    )
    if sha is None:
        return 1
    print(f"pushed {args.directory} to {args.repo_id}; pin it with revision {sha}")
    print(sha)
    return 0
