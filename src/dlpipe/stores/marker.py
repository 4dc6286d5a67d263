"""The completion marker: a file written last into every store dlpipe hands on.

A store (a folder: ``VOL.zarr``, ``PRED.zarr``, a dataset Zarr, ...) is complete, and may be
read by the next stage, only when its marker file exists. Writers create it as their last
step, so a killed run leaves a store without it.
"""

from __future__ import annotations

from pathlib import Path

from dlpipe.errors import UserError
from dlpipe.stores import atomic as _atomic  # module: atomic imports this one too

__all__ = ["MARKER", "is_complete", "mark_complete", "require_complete"]

MARKER = ".dlpipe_complete"
"""Name of the completion marker file inside a store."""


def is_complete(path: str | Path) -> bool:
    """Whether the store ``path`` has its completion marker.

    Parameters
    ----------
    path : path
        The store (a folder).

    Returns
    -------
    bool
        True when ``path/MARKER`` is a file.
    """
    return (Path(path) / MARKER).is_file()


def mark_complete(path: str | Path, text: str = "complete\n") -> Path:
    """Write the completion marker of ``path`` (atomically); call it last.

    Parameters
    ----------
    path : path
        The store (an existing folder).
    text : str
        The marker's contents. Writers keep their own: ``"complete\\n"`` (default), or a
        JSON line with a summary of the run.

    Returns
    -------
    Path
        The marker file.
    """
    marker = Path(path) / MARKER
    _atomic.write_text_atomic(marker, text, overwrite=True)
    return marker


def require_complete(path: str | Path, what: str = "store", hint: str = "") -> None:
    """Raise unless the store ``path`` has its completion marker.

    Parameters
    ----------
    path : path
        The store.
    what : str
        What the store is, for the message (``"volume"``, ``"dataset"``, ...).
    hint : str
        Appended to the message (e.g. ``": re-run `dlpipe tile` to finish it"``).

    Raises
    ------
    UserError
        ``"incomplete <what> (no <MARKER> marker)<hint>"``, naming ``path``.
    """
    if not is_complete(path):
        raise UserError(f"incomplete {what} (no {MARKER} marker){hint}", path=path)
