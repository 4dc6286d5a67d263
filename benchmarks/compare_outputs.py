"""Compare the data outputs of two runs of the demo workflow, file by file (issue 13).

A restructuring must leave every data output unchanged. Given the ``results/`` folders of a run
before and one after the change, this script compares:

- Zarr arrays: by decoded values and by the bytes of every chunk file; the array metadata
  (shape, dtype, chunks, codecs) with them; the attributes of every node separately;
- tables: CSV (cell by cell, as text) and parquet (values and dtypes);
- JSON files (metrics, model cards, split, completion markers);
- images and arrays: TIFF, PNG (decoded pixels, so that matplotlib's metadata does not count),
  ``.npy`` / ``.npz``;
- ``.pt`` files (weights, checkpoints): state dicts by tensor equality;
- any other file by its bytes.

What legitimately differs between two runs is ignored: MLflow's store, logs, Snakemake's
timestamps and benchmark timing files (whole files); timestamps, run ids, git commits, durations
(``seconds``, ``train_s``, ...) and the absolute path of the run folder (inside files).

Attributes of a Zarr node that differ only in NGFF keys (``ome``, ``multiscales``,
``image-label``, ``labels``) are reported as ``ngff-attrs`` and do not count as a difference:
issue 13 adds NGFF metadata to CLEAN.zarr and PRED.zarr.

Usage::

    python benchmarks/compare_outputs.py /work/baseline-run/results results
    python benchmarks/compare_outputs.py BEFORE AFTER --all          # list identical rows too
    python benchmarks/compare_outputs.py BEFORE AFTER --ignore 'summary' --mask-key device

Exit status 0 iff every data output is identical (and none exists on one side only, unless
``--allow-new`` and it exists only in AFTER). The last line reads
``N identical, M different, K only in one``.
"""

from __future__ import annotations

import argparse
import csv
import fnmatch
import functools
import json
import re
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["DEFAULT_IGNORE", "NGFF_KEYS", "VOLATILE_KEYS", "Row", "compare", "main"]

#: Path components (globs) never compared: run bookkeeping, not data.
DEFAULT_IGNORE = (
    "mlflow.db",
    "mlflow.db-*",
    "mlruns",
    "mlartifacts",
    ".snakemake",
    ".snakemake_timestamp",
    "*.log",
    "logs",
    "benchmarks",
    "report.html",
    "__pycache__",
)
#: Keys (of JSON objects, CSV columns, dicts in .pt files) whose values are masked.
VOLATILE_KEYS = frozenset(
    "time timestamp created created_at updated date start_time end_time run_id parent_run_id"
    " mlflow_run_id experiment_id git git_commit commit host hostname seconds duration"
    " duration_s elapsed elapsed_s wall_s train_s runtime".split()
)
#: Top-level attribute keys of the OME-NGFF specification.
NGFF_KEYS = frozenset({"ome", "multiscales", "image-label", "labels"})

_TIME = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:?\d{2})?")
_ZARR_META = ("zarr.json", ".zarray", ".zgroup", ".zattrs", ".zmetadata")
_IMAGE = {".tif", ".tiff", ".png", ".jpg", ".jpeg"}


@dataclass(frozen=True)
class Row:
    """One compared output: ``status`` is identical, different, ngff-attrs, before-only or
    after-only; ``detail`` says what differs."""

    path: str
    kind: str
    status: str
    detail: str = ""


# --------------------------------------------------------------------------- normalising


class _Norm:
    """Masks volatile values: keys in ``keys``, timestamps, the run folders' absolute paths
    (those of both runs, so that a copied folder's paths match too)."""

    def __init__(self, roots: Sequence[Path], keys: frozenset[str]) -> None:
        pairs = {str(r.resolve()): "<RESULTS>" for r in roots}
        pairs.update({str(r.resolve().parent): "<ROOT>" for r in roots})
        self.prefixes = sorted(pairs.items(), key=lambda kv: -len(kv[0]))
        self.keys = keys

    def text(self, s: str) -> str:
        for prefix, name in self.prefixes:
            s = s.replace(prefix, name)
        return _TIME.sub("<time>", s)

    def volatile(self, key: Any) -> bool:
        k = str(key).lower()
        return k in self.keys or k.endswith("_seconds")

    def value(self, v: Any) -> Any:
        if isinstance(v, dict):
            return {k: "<masked>" if self.volatile(k) else self.value(x) for k, x in v.items()}
        if isinstance(v, list | tuple):
            return [self.value(x) for x in v]
        return self.text(v) if isinstance(v, str) else v


def _first_diff(a: Any, b: Any, where: str = "") -> str:
    """Where two normalised JSON-like values first differ ('' when equal)."""
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b), key=str):
            if k not in a or k not in b:
                return f"{where}/{k}: only in {'after' if k not in a else 'before'}"
            d = _first_diff(a[k], b[k], f"{where}/{k}")
            if d:
                return d
        return ""
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            if d := _first_diff(x, y, f"{where}[{i}]"):
                return d
        return ""
    if isinstance(a, float) and isinstance(b, float) and a != a and b != b:
        return ""  # NaN in both
    if type(a) is not type(b) or a != b:
        return f"{where or '/'}: {str(a)[:60]!r} != {str(b)[:60]!r}"
    return ""


# --------------------------------------------------------------------------- file comparers


def _cmp_json(a: Path, b: Path, norm: _Norm) -> str:
    try:
        va, vb = json.loads(a.read_text()), json.loads(b.read_text())
    except (ValueError, UnicodeDecodeError):
        return _cmp_bytes(a, b, norm)
    return _first_diff(norm.value(va), norm.value(vb))


def _cmp_csv(a: Path, b: Path, norm: _Norm) -> str:
    def rows(p: Path) -> list[list[str]]:
        table = list(csv.reader(p.read_text().splitlines()))
        if not table:
            return table
        keep = [i for i, h in enumerate(table[0]) if not norm.volatile(h)]
        return [[norm.text(r[i]) if i < len(r) else "" for i in keep] for r in table]

    ra, rb = rows(a), rows(b)
    if len(ra) != len(rb):
        return f"{len(ra)} != {len(rb)} lines"
    for i, (x, y) in enumerate(zip(ra, rb, strict=True)):
        if x != y:
            return f"line {i + 1}: {','.join(x)[:60]!r} != {','.join(y)[:60]!r}"
    return ""


def _cmp_parquet(a: Path, b: Path, norm: _Norm) -> str:
    import pandas as pd  # heavy optional import, only for parquet files

    da, db = pd.read_parquet(a), pd.read_parquet(b)
    da = da[[c for c in da.columns if not norm.volatile(c)]]
    db = db[[c for c in db.columns if not norm.volatile(c)]]
    try:
        pd.testing.assert_frame_equal(da, db, check_exact=True)
    except AssertionError as exc:
        return " ".join(str(exc).split())[:120]
    return ""


def _cmp_arrays(x: np.ndarray, y: np.ndarray) -> str:
    if x.shape != y.shape or x.dtype != y.dtype:
        return f"{x.dtype}{list(x.shape)} != {y.dtype}{list(y.shape)}"
    if not np.array_equal(x, y, equal_nan=x.dtype.kind in "fc"):
        return f"{int(np.count_nonzero(x != y))} values differ"
    return ""


def _cmp_image(a: Path, b: Path, norm: _Norm) -> str:
    if a.suffix.lower() in {".tif", ".tiff"}:
        import tifffile  # heavy optional import, only for TIFF files

        return _cmp_arrays(tifffile.imread(a), tifffile.imread(b))
    from PIL import Image  # heavy optional import, only for PNG / JPEG files

    with Image.open(a) as ia, Image.open(b) as ib:
        if ia.mode != ib.mode:
            return f"mode {ia.mode} != {ib.mode}"
        return _cmp_arrays(np.asarray(ia), np.asarray(ib))


def _cmp_npy(a: Path, b: Path, norm: _Norm) -> str:
    if a.suffix == ".npy":
        return _cmp_arrays(np.load(a, allow_pickle=False), np.load(b, allow_pickle=False))
    with np.load(a, allow_pickle=False) as za, np.load(b, allow_pickle=False) as zb:
        if sorted(za.files) != sorted(zb.files):
            return f"members {sorted(za.files)} != {sorted(zb.files)}"
        return next((f"{k}: {d}" for k in za.files if (d := _cmp_arrays(za[k], zb[k]))), "")


def _cmp_torch(a: Path, b: Path, norm: _Norm) -> str:
    import torch  # heavy optional import, only for .pt files

    def diff(x: Any, y: Any, where: str) -> str:
        if isinstance(x, torch.Tensor) and isinstance(y, torch.Tensor):
            if x.dtype != y.dtype or x.shape != y.shape:
                return f"{where}: {x.dtype}{list(x.shape)} != {y.dtype}{list(y.shape)}"
            return "" if torch.equal(x, y) else f"{where}: tensors differ"
        if isinstance(x, dict) and isinstance(y, dict):
            if list(x) != list(y):
                return f"{where}: keys differ"
            return next(
                (d for k in x if not norm.volatile(k) and (d := diff(x[k], y[k], f"{where}/{k}"))),
                "",
            )
        if isinstance(x, list | tuple) and isinstance(y, list | tuple) and len(x) == len(y):
            for i, (p, q) in enumerate(zip(x, y, strict=True)):
                if d := diff(p, q, f"{where}[{i}]"):
                    return d
            return ""
        if isinstance(x, str) and isinstance(y, str):  # JSON kept as text (training history)
            x, y = _maybe_json(x), _maybe_json(y)
        return _first_diff(norm.value(x), norm.value(y), where)

    load = {"map_location": "cpu", "weights_only": True}
    return diff(torch.load(a, **load), torch.load(b, **load), "")


def _maybe_json(text: str) -> Any:
    """``text`` parsed when it is a JSON list or object (volatile keys inside get masked)."""
    if text[:1] in "[{":
        try:
            return json.loads(text)
        except ValueError:
            pass
    return text


def _cmp_bytes(a: Path, b: Path, norm: _Norm) -> str:
    x, y = a.read_bytes(), b.read_bytes()
    if x == y:
        return ""
    try:
        if norm.text(x.decode()) == norm.text(y.decode()):
            return ""
    except UnicodeDecodeError:
        pass
    return f"bytes differ ({len(x)} vs {len(y)} bytes)"


def _comparer(path: Path) -> tuple[str, Callable[[Path, Path, _Norm], str]]:
    suffix = path.suffix.lower()
    if suffix == ".json" or path.name == ".dlpipe_complete":
        return "json", _cmp_json
    if suffix == ".csv":
        return "csv", _cmp_csv
    if suffix == ".parquet":
        return "parquet", _cmp_parquet
    if suffix in _IMAGE:
        return "image", _cmp_image
    if suffix in {".npy", ".npz"}:
        return "npy", _cmp_npy
    if suffix in {".pt", ".pth"}:
        return "torch", _cmp_torch
    return "bytes", _cmp_bytes


# --------------------------------------------------------------------------- Zarr stores


def _zarr_nodes(store: Path) -> dict[str, tuple[str, dict[str, Any], dict[str, Any]]]:
    """{node path: ('array' | 'group', metadata without attributes, attributes)}."""
    nodes = {}
    for meta in sorted(store.rglob("*")):
        if meta.name not in {"zarr.json", ".zarray", ".zgroup"}:
            continue
        node = meta.parent.relative_to(store).as_posix()
        doc = json.loads(meta.read_text())
        if meta.name == "zarr.json":
            kind, attrs = doc.get("node_type", "group"), doc.pop("attributes", {})
        else:
            kind = "array" if meta.name == ".zarray" else "group"
            za = meta.parent / ".zattrs"
            attrs = json.loads(za.read_text()) if za.is_file() else {}
        nodes["" if node == "." else node] = (kind, doc, attrs)
    return nodes


def _chunk_files(store: Path, node: str) -> dict[str, bytes]:
    base = store / node
    return {
        p.relative_to(base).as_posix(): p.read_bytes()
        for p in base.rglob("*")
        if p.is_file() and p.name not in _ZARR_META
    }


def _cmp_zarr_values(sa: Path, sb: Path, node: str) -> str:
    import zarr  # heavy optional import, only for Zarr stores

    xa = zarr.open_array(str(sa), path=node, mode="r")
    xb = zarr.open_array(str(sb), path=node, mode="r")
    if xa.shape != xb.shape or xa.dtype != xb.dtype:
        return f"{xa.dtype}{list(xa.shape)} != {xb.dtype}{list(xb.shape)}"
    if not xa.shape:
        return _cmp_arrays(np.asarray(xa[...]), np.asarray(xb[...]))
    step = max(1, xa.chunks[0])
    for z in range(0, xa.shape[0], step):
        d = _cmp_arrays(np.asarray(xa[z : z + step]), np.asarray(xb[z : z + step]))
        if d:
            return f"values at [{z}:{z + step}]: {d}"
    return ""


def _compare_store(rel: str, sa: Path, sb: Path, norm: _Norm) -> list[Row]:
    rows = []
    a, b = _zarr_nodes(sa), _zarr_nodes(sb)
    for node in sorted(set(a) | set(b)):
        name = f"{rel}/{node}" if node else rel
        if node not in a or node not in b:
            kind, _, attrs = a.get(node) or b[node]
            side = "after-only" if node not in a else "before-only"
            if kind == "group" and set(attrs) <= NGFF_KEYS:
                rows.append(Row(name, "zarr-attrs", "ngff-attrs", f"NGFF group {side}"))
            else:
                rows.append(Row(name, f"zarr-{kind}", side))
            continue
        (ka, ma, aa), (kb, mb, ab) = a[node], b[node]
        if ka != kb:
            rows.append(Row(name, "zarr-array", "different", f"{ka} != {kb}"))
        elif ka == "array":
            meta = _first_diff(ma, mb)
            meta = f"metadata {meta}" if meta else ""
            ca, cb = _chunk_files(sa, node), _chunk_files(sb, node)
            bad = sorted(k for k in set(ca) | set(cb) if ca.get(k) != cb.get(k))
            chunks = f"{len(bad)} of {len(set(ca) | set(cb))} chunks differ" if bad else ""
            try:
                values = _cmp_zarr_values(sa, sb, node)
            except Exception as exc:  # an undecodable chunk is a difference, not a crash
                values = f"cannot decode: {type(exc).__name__}: {exc}"[:120]
            detail = "; ".join(d for d in (values, chunks, meta) if d)
            rows.append(Row(name, "zarr-array", "different" if detail else "identical", detail))
        va, vb = norm.value(aa), norm.value(ab)
        if _first_diff(va, vb):
            keys = {k for k in set(va) | set(vb) if _first_diff(va.get(k), vb.get(k))}
            status = "ngff-attrs" if keys <= NGFF_KEYS else "different"
            rows.append(Row(f"{name} (attrs)", "zarr-attrs", status, _first_diff(va, vb)))
    return rows


def _is_store(path: Path) -> bool:
    return path.is_dir() and any((path / m).is_file() for m in ("zarr.json", ".zgroup", ".zarray"))


# --------------------------------------------------------------------------- walking


def _walk(root: Path, ignore: Sequence[str]) -> tuple[dict[str, str], int]:
    """{relative path: 'file' | 'zarr'} under ``root`` (Zarr stores as one entry, the files
    in them that are not Zarr nodes as files), and the number of ignored paths."""
    found: dict[str, str] = {}
    ignored = 0

    def visit(folder: Path, in_store: Path | None) -> None:
        nonlocal ignored
        for p in sorted(folder.iterdir()):
            rel = p.relative_to(root).as_posix()
            if any(fnmatch.fnmatch(p.name, g) for g in ignore):
                ignored += 1
            elif p.is_dir():
                store = in_store
                if store is None and _is_store(p):
                    found[rel], store = "zarr", p
                visit(p, store)
            elif in_store is None or (p.name not in _ZARR_META and not _in_array(p, in_store)):
                found[rel] = "file"

    visit(root, None)
    return found, ignored


@functools.cache
def _is_array_dir(folder: Path) -> bool:
    if (folder / ".zarray").is_file():
        return True
    meta = folder / "zarr.json"
    return meta.is_file() and json.loads(meta.read_text()).get("node_type") == "array"


def _in_array(path: Path, store: Path) -> bool:
    """Whether ``path`` is a chunk file of an array of ``store``."""
    for parent in path.parents:
        if _is_array_dir(parent):
            return True
        if parent == store:
            return False
    return False


def compare(
    before: Path,
    after: Path,
    ignore: Iterable[str] = DEFAULT_IGNORE,
    mask_keys: Iterable[str] = (),
) -> tuple[list[Row], int]:
    """Compare every output under ``before`` with the one under ``after``.

    Parameters
    ----------
    before, after : the two results folders
    ignore : globs of path components never compared
    mask_keys : keys masked in JSON, CSV and .pt files on top of :data:`VOLATILE_KEYS`

    Returns
    -------
    The rows, sorted by path, and the number of ignored paths (both sides).
    """
    keys = VOLATILE_KEYS | {k.lower() for k in mask_keys}
    norm = _Norm([before, after], keys)
    ignore = tuple(ignore)
    ea, ia = _walk(before, ignore)
    eb, ib = _walk(after, ignore)
    rows: list[Row] = []
    for rel in sorted(set(ea) | set(eb)):
        if rel not in ea or rel not in eb:
            side = "after-only" if rel not in ea else "before-only"
            rows.append(Row(rel, ea.get(rel) or eb[rel], side))
        elif ea[rel] != eb[rel]:
            rows.append(Row(rel, ea[rel], "different", f"{ea[rel]} != {eb[rel]}"))
        elif ea[rel] == "zarr":
            rows.extend(_compare_store(rel, before / rel, after / rel, norm))
        else:
            kind, fn = _comparer(before / rel)
            try:
                detail = fn(before / rel, after / rel, norm)
            except Exception as exc:  # an unreadable file is a difference, not a crash
                detail = f"cannot compare: {type(exc).__name__}: {exc}"[:120]
            rows.append(Row(rel, kind, "different" if detail else "identical", detail))
    return sorted(rows, key=lambda r: r.path), ia + ib


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: print the table and the counts; return the exit status."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("before", type=Path, help="results folder of the run before the change")
    ap.add_argument("after", type=Path, help="results folder of the run after the change")
    ap.add_argument("--ignore", action="append", default=[], help="extra path glob to skip")
    ap.add_argument("--mask-key", action="append", default=[], help="extra volatile key")
    ap.add_argument("--allow-new", action="store_true", help="outputs only in AFTER pass")
    ap.add_argument("--all", action="store_true", help="list identical outputs too")
    args = ap.parse_args(argv)
    for folder in (args.before, args.after):
        if not folder.is_dir():
            ap.error(f"not a folder: {folder}")
    rows, ignored = compare(args.before, args.after, (*DEFAULT_IGNORE, *args.ignore), args.mask_key)
    shown = [r for r in rows if args.all or r.status != "identical"]
    width = max([len(r.path) for r in shown] + [6])
    print(f"{'status':<12} {'kind':<10} {'output':<{width}}  detail")
    for r in shown:
        print(f"{r.status:<12} {r.kind:<10} {r.path:<{width}}  {r.detail}")
    same = sum(r.status == "identical" for r in rows)
    diff = sum(r.status == "different" for r in rows)
    only = sum(r.status in {"before-only", "after-only"} for r in rows)
    ngff = sum(r.status == "ngff-attrs" for r in rows)
    print(f"({ngff} NGFF-only attribute differences, not failures; {ignored} paths ignored)")
    print(f"{same} identical, {diff} different, {only} only in one")
    fail_only = sum(
        r.status == "before-only" or (r.status == "after-only" and not args.allow_new) for r in rows
    )
    return 0 if diff == 0 and fail_only == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
