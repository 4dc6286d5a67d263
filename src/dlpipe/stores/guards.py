"""The one size guard: sizes read from a user's file are checked before allocating.

A CVAT XML may say ``width="100000"``, a model card ``base_filters: 65536``; allocating
what such a file asks for would exhaust the machine. :func:`check_allocation` compares a
planned allocation with the memory available (``psutil`` when installed, else
``MemAvailable`` of ``/proc/meminfo``) or with the cap ``DLPIPE_MAX_ALLOC_MB`` when set,
and raises a :class:`~dlpipe.errors.UserError` naming the file and field.
"""

from __future__ import annotations

import os
from pathlib import Path

from dlpipe.errors import UserError

__all__ = ["ENV_CAP", "allocation_limit", "check_allocation"]

ENV_CAP = "DLPIPE_MAX_ALLOC_MB"
"""Environment variable: the largest single allocation (MiB) a user's file may ask for."""

_MIB = 1 << 20


def _available_bytes() -> int | None:
    """Memory available to a new allocation, in bytes (None when unknown)."""
    try:
        import psutil  # optional dependency

        return int(psutil.virtual_memory().available)
    except ImportError:
        pass
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def allocation_limit() -> tuple[int | None, str]:
    """The largest allowed allocation in bytes and where that limit comes from.

    ``DLPIPE_MAX_ALLOC_MB`` when set (a positive number), else the memory available now.

    Raises
    ------
    UserError
        ``DLPIPE_MAX_ALLOC_MB`` is not a positive number.
    """
    cap = os.environ.get(ENV_CAP, "").strip()
    if cap:
        try:
            mb = float(cap)
        except ValueError:
            mb = -1.0
        if not mb > 0 or mb == float("inf"):
            raise UserError(f"{ENV_CAP}={cap!r} is not a positive number of MiB")
        return int(mb * _MIB), f"{ENV_CAP}={cap}"
    avail = _available_bytes()
    return avail, "the memory available"


def _human(nbytes: float) -> str:
    for unit, size in (("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", _MIB)):
        if nbytes >= size:
            return f"{nbytes / size:.1f} {unit}"
    return f"{int(nbytes)} bytes"


def check_allocation(
    nbytes: float, what: str, path: str | Path | None = None, field: str | None = None
) -> None:
    """Refuse an allocation of ``nbytes`` that a user's file asks for if it cannot fit.

    Parameters
    ----------
    nbytes : planned size in bytes (may be a float estimate)
    what : what would be allocated (``"a 100000 x 100000 uint8 mask"``)
    path : the file whose content sets the size (named in the error)
    field : the field of that file (``width/height``, ``architecture.base_filters``)

    Raises
    ------
    UserError
        ``nbytes`` exceeds ``DLPIPE_MAX_ALLOC_MB`` or the memory available.
    """
    limit, source = allocation_limit()
    if limit is None or nbytes <= limit:
        return
    where = f"{field} asks for " if field else "needs "
    raise UserError(
        f"{where}{what} of {_human(nbytes)}, more than {source} ({_human(limit)}); "
        f"check the file or raise {ENV_CAP}",
        path=path,
    )
