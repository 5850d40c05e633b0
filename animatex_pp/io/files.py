"""Atomic writes: every file or directory the library produces appears whole or not at all.

Written by hand because neither the standard library nor our dependencies offer it: a temporary sibling is written
first and renamed into place on success (`os.replace` is atomic on one filesystem), so a crash or an error leaves
any earlier file untouched and no half-written output behind. The result gets the permissions an ordinary new file
or directory would get under the user's umask (`tempfile` creates them private, and so does safetensors for the
files it writes).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def _current_umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


def give_umask_permissions(directory: str | os.PathLike) -> None:
    """Give `directory` and everything under it the permissions new files and folders get under the user's umask.

    safetensors (0.8) writes its files 0o600 whatever the umask, so saved models would otherwise be private.
    """
    umask = _current_umask()
    os.chmod(directory, 0o777 & ~umask)
    for root, folders, files in os.walk(directory):
        for name in folders:
            os.chmod(os.path.join(root, name), 0o777 & ~umask)
        for name in files:
            os.chmod(os.path.join(root, name), 0o666 & ~umask)


@contextmanager
def atomic_output(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path` (same suffix) to write to; on success it replaces `path`."""
    path = Path(path)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=path.suffix, dir=path.parent)
    os.close(handle)
    temporary = Path(temporary)
    try:
        yield temporary
        os.chmod(temporary, 0o666 & ~_current_umask())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


@contextmanager
def atomic_directory(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary directory beside `path` to fill; on success it replaces `path`.

    A directory cannot be renamed over a non-empty one, so an existing `path` is first moved aside and deleted only
    once the new directory is in place.
    """
    path = Path(path)
    temporary = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        yield temporary
        give_umask_permissions(temporary)
        previous = None
        if path.exists():
            previous = Path(tempfile.mkdtemp(prefix=f".{path.name}.old.", dir=path.parent))
            os.replace(path, previous / path.name)
        os.replace(temporary, path)
        if previous is not None:
            shutil.rmtree(previous)
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise
