"""A small real disk that fills up: a tmpfs mounted for one test or fault row (root only),
and a file that takes every free byte of it."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path


class CannotMount(RuntimeError):
    """This machine does not let us mount a tmpfs (not root)."""


@contextmanager
def small_disk(folder: Path, size: str) -> Iterator[Path]:
    """A tmpfs of `size` mounted at folder (made here) until the block ends; CannotMount
    when mounting is refused."""
    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs",
                              str(folder)], capture_output=True)  # fmt: skip
    if mounted.returncode != 0:
        raise CannotMount(f"cannot mount a tmpfs (root only): {mounted.stderr.decode().strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def fill(disk: Path) -> Path:
    """Take every free byte of the disk with a file; the file."""
    filler = disk / "filler"
    # Unbuffered, and the close inside suppress too: a buffered file's close flushes what
    # the failed write left, and raised ENOSPC past the suppress (CI, a fresh clone).
    with suppress(OSError), filler.open("wb", buffering=0) as f:
        while True:
            f.write(b"\0" * 65536)
    return filler
