"""``mdwarf-zoo`` with a record of every file-system write, for tests/test_distributed_runner.py.

    python tests/audited_cli.py LOG train RECIPE --out DIR ...

Runs ``mdwarf_zoo.cli.main`` with a Python audit hook (``sys.addaudithook``) that appends one
line ``EVENT<TAB>PATH`` to ``LOG`` for each file opened for writing, created, renamed, removed
or made a directory, and for each HDF5 file ``h5py`` opens in a writing mode (HDF5 writes from
C, past the audit hooks). Each line is written at once with ``os.write``, so a killed process
leaves its record up to the kill. The test then checks which worker wrote into the run folder.
"""

from __future__ import annotations

import os
import sys

_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND


def main() -> int:
    log = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

    def record(event: str, path) -> None:
        if isinstance(path, int) or path is None:
            return  # a file descriptor: its opening was recorded
        line = f"{event}\t{os.path.abspath(os.fsdecode(path))}\n"
        os.write(log, line.encode("utf-8", "backslashreplace"))

    def hook(event: str, args: tuple) -> None:
        if event == "open":
            path, mode, flags = args
            writing = (mode is not None and any(c in mode for c in "wax+")) or (
                mode is None and isinstance(flags, int) and flags & _WRITE_FLAGS
            )
            if writing:
                record(event, path)
        elif event in ("os.mkdir", "os.remove", "os.rmdir", "shutil.rmtree", "os.truncate"):
            record(event, args[0])
        elif event in ("os.rename", "shutil.copyfile", "shutil.move", "os.link", "os.symlink"):
            record(event, args[0])
            record(event, args[1])

    import h5py

    original_init = h5py.File.__init__

    def audited_init(self, name, mode="r", *args, **kwargs):
        if mode not in ("r", None) and isinstance(name, (str, bytes, os.PathLike)):
            record(f"h5py.File({mode})", name)
        original_init(self, name, mode, *args, **kwargs)

    h5py.File.__init__ = audited_init
    sys.addaudithook(hook)

    from mdwarf_zoo.cli import main as cli_main

    return cli_main(sys.argv[2:])


if __name__ == "__main__":
    sys.exit(main())
