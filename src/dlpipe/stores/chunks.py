"""Reading Zarr chunks with errors that name the chunk: damaged and missing chunks.

A chunk that cannot be decoded is reported as one :class:`~dlpipe.errors.UserError`
naming the array and the chunk key (:func:`read_checked`, :class:`CheckedArray`, used
by predict, train and tile). A chunk whose key is absent reads as the fill value, which
Zarr cannot tell from a chunk deleted by accident; :func:`check_missing_chunks` lists
the absent keys once when an input is opened. An array written with every chunk
(:data:`ALL_CHUNKS`, set by ``dlpipe tile``) has no legitimately absent chunk, so a
missing one is an error; elsewhere it is a warning, or an error under ``strict``.
"""

from __future__ import annotations

import itertools
import logging
import math
from pathlib import Path
from typing import Any

import numpy as np

from dlpipe.errors import UserError

__all__ = [
    "ALL_CHUNKS",
    "ALL_CHUNKS_CONFIG",
    "CheckedArray",
    "check_missing_chunks",
    "chunk_key",
    "missing_chunks",
    "read_checked",
]

log = logging.getLogger(__name__)

ALL_CHUNKS = "dlpipe_all_chunks"
"""Array attribute: true when every chunk was written (empty ones too)."""
ALL_CHUNKS_CONFIG = {"write_empty_chunks": True}
"""Zarr array config that stores every chunk (``Array.with_config``)."""


def chunk_key(arr: Any, coords: tuple[int, ...]) -> str:
    """The store key of the chunk (or shard) at grid position ``coords``, e.g. ``c/0/1/2``."""
    try:
        return str(arr.metadata.encode_chunk_key(coords))
    except AttributeError:  # pragma: no cover - zarr v2 library arrays
        return ".".join(str(c) for c in coords)


def _name(arr: Any) -> str:
    path = getattr(arr, "path", "")
    return f"{path}/" if path else ""


def _grid(arr: Any) -> tuple[int, ...]:
    return tuple(getattr(arr, "shards", None) or arr.chunks)


def read_checked(arr: Any, sel: Any, where: str | Path) -> np.ndarray:
    """``arr[sel]`` as a NumPy array; a chunk that cannot be decoded becomes a UserError.

    Raises
    ------
    UserError
        ``corrupt input chunk ARRAY/KEY: reason``, naming the first chunk of ``sel`` that fails
        (or the region when no single chunk does).
    """
    try:
        return np.asarray(arr[sel])
    except Exception as exc:
        raise _locate(arr, sel, where, exc) from None


def _locate(arr: Any, sel: Any, where: str | Path, exc: Exception) -> UserError:
    """The error naming the chunk of ``sel`` that cannot be read."""
    grid = _grid(arr)
    sel = sel if isinstance(sel, tuple) else (sel,)
    ranges = []
    for ax, (size, c) in enumerate(zip(arr.shape, grid, strict=True)):
        s = sel[ax] if ax < len(sel) else slice(None)
        if isinstance(s, (int, np.integer)):
            s = slice(int(s) % size, int(s) % size + 1)
        if not isinstance(s, slice):
            s = slice(None)
        start, stop, _ = s.indices(size)
        ranges.append(range(start // c, max(start // c + 1, -(-stop // c))))
    for coords in itertools.product(*ranges):
        cell = tuple(slice(i * c, (i + 1) * c) for i, c in zip(coords, grid, strict=True))
        try:
            arr[cell]
        except Exception as cexc:
            return UserError(
                f"corrupt input chunk {_name(arr)}{chunk_key(arr, coords)}: {_reason(cexc)}",
                path=where,
            )
    return UserError(
        f"cannot read {_name(arr) or 'array '}region {sel}: {_reason(exc)}", path=where
    )


def _reason(exc: Exception) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class CheckedArray:
    """A read-only Zarr array whose reads raise a UserError naming a damaged chunk.

    Indexing (``a[sel]``) goes through :func:`read_checked`; every other attribute
    (``shape``, ``dtype``, ``chunks``, ``attrs`` ...) is the wrapped array's.
    """

    def __init__(self, arr: Any, where: str | Path) -> None:
        self.array = arr
        self.where = where

    def __getitem__(self, sel: Any) -> np.ndarray:
        return read_checked(self.array, sel, self.where)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.array, name)

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        data = read_checked(self.array, (), self.where) if self.array.ndim == 0 else self[...]
        return data.astype(dtype) if dtype is not None else data


def _present_keys(arr: Any) -> set[str] | None:
    """The chunk keys stored for ``arr`` (None when the store cannot list them)."""
    from zarr.core.sync import sync  # zarr's own event loop for its async store API

    prefix = f"{arr.path}/" if getattr(arr, "path", "") else ""

    async def _list() -> list[str]:
        return [k async for k in arr.store.list_prefix(prefix)]

    try:
        keys = sync(_list())
    except Exception:  # a store that cannot list (e.g. some remote stores)
        return None
    return {k[len(prefix) :] for k in keys}


def missing_chunks(arr: Any) -> list[str] | None:
    """Keys of the chunks (or shards) of ``arr`` absent from its store, in grid order.

    None when the store cannot list its keys.
    """
    present = _present_keys(arr)
    if present is None:
        return None
    counts = [math.ceil(s / c) for s, c in zip(arr.shape, _grid(arr), strict=True)]
    return [
        key
        for coords in itertools.product(*(range(n) for n in counts))
        if (key := chunk_key(arr, coords)) not in present
    ]


def check_missing_chunks(arr: Any, where: str | Path, *, strict: bool = False) -> list[str]:
    """Warn about (or refuse) chunks of an input array absent from its store.

    An absent chunk reads as the fill value. For an array written with every chunk
    (attribute :data:`ALL_CHUNKS`) it must have been lost, and is an error; otherwise it
    may be an all-fill chunk that Zarr did not store: a warning naming the first key,
    an error with ``strict``.

    Returns
    -------
    list of str
        The missing keys (empty when none, or when the store cannot list them).

    Raises
    ------
    UserError
        Missing chunks in an array written with every chunk, or any with ``strict``.
    """
    missing = missing_chunks(arr) or []
    if not missing:
        return []
    first = f"{_name(arr)}{missing[0]}"
    more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
    complete = bool(dict(arr.attrs).get(ALL_CHUNKS, False))
    if complete or strict:
        why = "was written with every chunk" if complete else "--strict"
        raise UserError(
            f"missing chunk {first}{more} (the array {why}; a lost chunk would read as "
            f"{arr.fill_value})",
            path=where,
        )
    log.warning(
        "%s: chunk %s%s is absent and reads as the fill value %s (all-fill, or lost? "
        "--strict refuses it)",
        where,
        first,
        more,
        arr.fill_value,
    )
    return missing
