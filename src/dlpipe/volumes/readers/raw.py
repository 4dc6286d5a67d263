"""Raw binary volumes (layout from arguments or a sidecar) and ``.npy`` files."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from dlpipe.errors import UserError
from dlpipe.volumes.readers.base import SUPPORTED_DTYPES, MemmapSource, Source

__all__ = ["open_npy", "open_raw", "read_raw_sidecar"]


def open_npy(p: Path) -> Source:
    """The ``.npy`` file ``p``, memory-mapped."""
    try:
        mm = np.load(p, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise UserError(f"cannot read .npy file: {exc}", path=p) from None
    if not isinstance(mm, np.memmap):  # pragma: no cover - np.load always maps a plain .npy
        raise UserError("cannot memory-map .npy file", path=p)
    return MemmapSource(p, mm, "npy")


def read_raw_sidecar(p: Path) -> dict[str, Any]:
    """Shape, dtype and byte order of a raw file from ``.raw.info`` or YAML beside it.

    ``FILE.raw.info`` holds ``key = value`` or ``key: value`` lines; ``FILE.yaml`` /
    ``FILE.raw.yaml`` is a YAML mapping. Keys: ``shape`` (z, y, x) or ``nz``/``ny``/``nx``,
    ``dtype``, ``byte_order`` (``little``/``big``), ``offset``.
    """
    for cand in (
        p.with_name(p.name + ".info"),
        p.with_name(p.name + ".yaml"),
        p.with_name(p.name + ".yml"),
        p.with_suffix(".yaml"),
        p.with_suffix(".yml"),
    ):
        if cand.is_file():
            text = cand.read_text()
            try:
                data = (
                    yaml.safe_load(text.replace("=", ":"))
                    if cand.suffix == ".info"
                    else yaml.safe_load(text)
                )
            except yaml.YAMLError:
                raise UserError("cannot parse raw sidecar", path=cand) from None
            if not isinstance(data, dict):
                raise UserError("raw sidecar must be a mapping of keys to values", path=cand)
            data = {str(k).strip().lower(): v for k, v in data.items()}
            if "shape" not in data and all(k in data for k in ("nz", "ny", "nx")):
                data["shape"] = [data["nz"], data["ny"], data["nx"]]
            if isinstance(data.get("shape"), str):
                data["shape"] = [int(v) for v in re.split(r"[\s,x×]+", data["shape"]) if v]
            data["_sidecar"] = str(cand)
            return data
    return {}


def open_raw(p: Path, shape: Any, dtype: Any, byte_order: Any, offset: int) -> Source:
    """Raw binary ``p``, memory-mapped; layout from the arguments, else its sidecar."""
    side = read_raw_sidecar(p)
    shape = shape or side.get("shape")
    dtype = dtype or side.get("dtype")
    byte_order = byte_order or side.get("byte_order") or side.get("endian") or "little"
    offset = offset or int(side.get("offset", 0))
    if not shape or not dtype:
        raise UserError(
            "raw input needs --raw-shape Z Y X and --raw-dtype (or a "
            f"{p.name}.info / {p.stem}.yaml sidecar)",
            path=p,
        )
    shape = tuple(int(s) for s in shape)
    if len(shape) != 3 or min(shape) <= 0:
        raise UserError(f"raw shape must be 3 positive sizes (z, y, x), got {shape}", path=p)
    try:
        dt = np.dtype(str(dtype))
    except TypeError:
        raise UserError(
            f"unsupported dtype {dtype} (supported: {', '.join(SUPPORTED_DTYPES)})", path=p
        ) from None
    if dt.name not in SUPPORTED_DTYPES:
        raise UserError(
            f"unsupported dtype {dt.name} (supported: {', '.join(SUPPORTED_DTYPES)})", path=p
        )
    if str(byte_order).lower() not in ("little", "big", "<", ">"):
        raise UserError(f"byte order must be 'little' or 'big', got {byte_order!r}", path=p)
    dt = dt.newbyteorder("<" if str(byte_order).lower() in ("little", "<") else ">")
    expected = int(np.prod(shape)) * dt.itemsize
    size = p.stat().st_size - offset
    if size != expected:
        raise UserError(
            f"raw file holds {size} bytes but shape {'x'.join(map(str, shape))} "
            f"{dt.name} needs {expected} bytes",
            path=p,
        )
    mm = np.memmap(p, dtype=dt, mode="r", offset=offset, shape=shape)
    return MemmapSource(p, mm, "raw")
