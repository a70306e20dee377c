"""Sub-commands of the ``mdwarf-zoo`` command line, one module each.

Each module defines ``add_parser(subparsers)``, which adds its sub-parser and sets
``func`` (called with the parsed arguments, returning an exit code), both through
``_common.add_command``; ``_common`` also holds the options several commands share. Heavy
imports stay inside ``func`` so that ``mdwarf-zoo --help`` is quick.
"""
