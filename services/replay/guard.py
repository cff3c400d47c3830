"""What a replay must never replace: the files a server works on.

A replay builds its file beside `out` and renames it over `out`, removing `out`'s -wal and
-shm first (rebuild.py). Pointed at the read models of a running server, that pulled the
file and its WAL from under the server. So a replay refuses an `out` that is the log or
the live read-model file (however it is named: a symlink, a hard link, another path to
it), and an `out` that any process holds open (the file, its -wal or -shm, or the
`<out>.building` of another replay still running).

Open files are found through psutil (on Linux, /proc/<pid>/fd): processes of other users
are looked at only when we may (as root). A server that starts between the check and the
rename is not seen; the check is for the mistake, not the race.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path

import psutil

SIDECARS = ("", "-wal", "-shm", ".building")  # out and the files a replay replaces with it


class OutInUse(ValueError):
    """out must not be replaced; the message says which file it is and what to do."""


def refuse_a_protected_file(out: Path, protected: Mapping[str, Path]) -> None:
    """Raise OutInUse if out is one of protected ({what it is: path}), the same path
    once resolved or the same file on disk."""
    for what, path in protected.items():
        if out.resolve() == path.resolve() or _same_file(out, path):
            raise OutInUse(f"--out {out} is {what}: a replay would replace it and remove its "
                           "-wal and -shm; give another path")


def refuse_an_open_file(out: Path) -> None:
    """Raise OutInUse if a process holds out (or a file a replay replaces with it) open."""
    found = holders(Path(f"{out}{suffix}") for suffix in SIDECARS)
    if found:
        pid, path = found[0]
        which = f"--out {out}" if path == out else f"--out {out}: {path}"
        raise OutInUse(f"{which} is open in process {pid} ({_command(pid)}); a replay would "
                       "replace it under that process: stop it, or give another path")


def holders(paths: Iterable[Path]) -> list[tuple[int, Path]]:
    """(pid, path) for each process that holds one of paths open, the first such path;
    the same file counts however it was opened (a symlink, a hard link)."""
    wanted = {}
    for path in paths:
        try:
            wanted[_identity(path)] = path
        except OSError:
            continue  # not there: nobody holds it
    if not wanted:
        return []
    found = []
    for process in psutil.process_iter():
        try:
            files = process.open_files()
        except psutil.Error:
            continue  # gone meanwhile, or not ours to look at
        for file in files:
            try:
                held = wanted.get(_identity(Path(file.path)))
            except OSError:
                continue
            if held is not None:
                found.append((process.pid, held))
                break
    return found


def _identity(path: Path) -> tuple[int, int]:
    status = os.stat(path)
    return status.st_dev, status.st_ino


def _same_file(a: Path, b: Path) -> bool:
    try:
        return _identity(a) == _identity(b)
    except OSError:
        return False  # one is missing: not the same file


def _command(pid: int) -> str:
    """The process's command line, shortened, for a message."""
    try:
        command = " ".join(psutil.Process(pid).cmdline()) or psutil.Process(pid).name()
    except psutil.Error:
        return "gone since"
    return command if len(command) <= 80 else command[:79] + "…"
