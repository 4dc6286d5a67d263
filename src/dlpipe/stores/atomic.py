"""Atomic writes: nothing half-written is ever visible under the final name.

Every file or folder that dlpipe hands to a later stage is written under a temporary
sibling name and renamed into place when complete (one ``os.replace``).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from dlpipe.errors import UserError

__all__ = ["atomic_path", "json_safe", "staged_dir", "write_json_atomic", "write_text_atomic"]


@contextlib.contextmanager
def atomic_path(final: str | Path, *, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary sibling path; rename it to ``final`` only if the block succeeds.

    Works for files and directories. The temporary path lives in the same folder so
    the rename is atomic on POSIX file systems. On error the temporary path is removed
    and ``final`` is left as it was.
    """
    final = Path(final)
    if final.exists() and not overwrite:
        raise UserError("output exists (use --overwrite to replace it)", path=final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent))
    tmp.rmdir()  # the caller decides whether it becomes a file or a directory
    try:
        yield tmp
        if final.exists():
            _remove(final)
        os.replace(tmp, final)
    finally:
        if tmp.exists():
            _remove(tmp)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` via a temporary file and rename."""
    with atomic_path(path, overwrite=True) as tmp:
        tmp.write_text(text)


def json_safe(obj: Any) -> Any:
    """``obj`` as strict JSON: NaN and infinite floats become None, NumPy scalars Python ones."""
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [json_safe(v) for v in obj]
    if isinstance(obj, float | np.floating):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, np.integer):
        return int(obj)
    return obj


def write_json_atomic(path: str | Path, obj: Any) -> None:
    """Write ``obj`` as indented strict JSON (see :func:`json_safe`), atomically."""
    write_text_atomic(path, json.dumps(json_safe(obj), indent=2) + "\n")


@contextlib.contextmanager
def staged_dir(final: str | Path, *, overwrite: bool = False) -> Iterator[Path]:
    """Yield an empty staging folder; on success move each of its entries into ``final``.

    Every entry appears under ``final`` only when complete (one rename each); other
    entries already in ``final`` are left alone. Without ``overwrite`` an entry that
    already exists in ``final`` is an error raised before anything is moved.
    A staging folder left by a killed run is removed first.
    """
    final = Path(final)
    stage = final.parent / f".{final.name}.partial"
    if stage.exists():
        shutil.rmtree(stage)
    stage.mkdir(parents=True)
    try:
        yield stage
        final.mkdir(parents=True, exist_ok=True)
        entries = sorted(stage.iterdir())
        clashes = [final / e.name for e in entries if (final / e.name).exists()]
        if clashes and not overwrite:
            raise UserError("output exists (use --overwrite to replace it)", path=clashes[0])
        for entry in entries:
            target = final / entry.name
            if target.exists():
                _remove(target)
            os.replace(entry, target)
    finally:
        if stage.exists():
            shutil.rmtree(stage)
