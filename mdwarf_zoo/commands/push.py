"""``mdwarf-zoo push DIR REPO_ID``: publish a pretrained folder to a Hub repository."""

from __future__ import annotations

import argparse
import sys


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "push",
        help="publish a pretrained folder to the Hugging Face Hub",
        description="Verify a folder written by mdwarf_zoo.save_pretrained and upload it to a "
        "Hub repository (created when missing). Prints the commit sha to pin.",
    )
    parser.add_argument("directory", metavar="DIR", help="the pretrained folder")
    parser.add_argument("repo_id", metavar="REPO_ID", help="owner/name")
    parser.add_argument("--revision", default=None, help="branch to commit to (default main)")
    parser.add_argument("--endpoint", default=None, help="Hub URL (default: HF_ENDPOINT)")
    parser.add_argument("--token", default=None, help="Hub token with write access")
    parser.add_argument("--private", action="store_true", help="create the repository private")
    parser.add_argument("--message", default=None, help="commit message")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from huggingface_hub.errors import HfHubHTTPError

    from mdwarf_zoo.hub import push_to_hub

    try:
        sha = push_to_hub(
            args.directory,
            args.repo_id,
            revision=args.revision,
            commit_message=args.message,
            private=args.private,
            token=args.token,
            endpoint=args.endpoint,
        )
    except HfHubHTTPError as error:
        print(f"mdwarf-zoo push: error: {error}", file=sys.stderr)
        return 1
    print(f"pushed {args.directory} to {args.repo_id}; pin it with revision {sha}")
    print(sha)
    return 0
