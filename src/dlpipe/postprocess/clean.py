"""Rule-based clean-up of a label volume: blob rules, ring artefacts, holes, opening/closing."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage
from tqdm.auto import tqdm

from dlpipe.config import schema
from dlpipe.errors import UserError
from dlpipe.postprocess.blobs import blob_table, write_csv
from dlpipe.postprocess.components import Components, blocks, label_chunked
from dlpipe.results import StageResult
from dlpipe.stores.atomic import check_outputs
from dlpipe.stores.volume import chunk_shape, dlpipe_attrs, open_labels, write_labels

log = logging.getLogger(__name__)

_RING = schema()["properties"]["postprocess"]["properties"]["rules"]["items"]["properties"]["ring"]
RING_DEFAULTS = {k: v["default"] for k, v in _RING["properties"].items()}
"""A ring rule's defaults, from the config schema (rules are list items, not filled in)."""
IN_MEMORY_LIMIT = 2**30  # bytes of uint32 ids kept in RAM; larger volumes use a Zarr scratch


def present_phases(source: Any, chunks: Sequence[int]) -> list[int]:
    """The distinct values of a label volume, read block by block."""
    seen = np.zeros(2**16, bool)
    for sl in blocks(source.shape, chunks):
        block = np.asarray(source[sl])
        if block.dtype.kind not in "ui" or (block.size and block.max() >= 2**16):
            raise UserError(f"labels must be unsigned integers below 65536, got {block.dtype}")
        seen[np.unique(block)] = True
    return [int(v) for v in np.flatnonzero(seen)]


def contacts(
    source: Any, ids: Any, comp: Components, chunks: Sequence[int], n_phase: int
) -> np.ndarray:
    """Face contacts of each component with each phase: (count + 1, n_phase) int64.

    Entry [i, p] counts voxel faces between component i and a voxel of phase p that is not in i.
    """
    shape = source.shape
    ndim = len(shape)
    counts = np.zeros((comp.count + 1) * n_phase, np.int64)
    for sl in blocks(shape, chunks):
        ext = tuple(slice(s.start, min(s.stop + 1, n)) for s, n in zip(sl, shape, strict=True))
        d = np.asarray(source[ext]).astype(np.int64)
        i = np.asarray(ids[ext]).astype(np.int64)
        own = tuple(slice(0, s.stop - s.start) for s in sl)
        for a in range(ndim):
            lo = list(own)
            hi = list(own)
            stop = own[a].stop
            if ext[a].stop == sl[a].stop:  # no halo on this side: last plane has no neighbour
                stop -= 1
            lo[a] = slice(0, stop)
            hi[a] = slice(1, stop + 1)
            ia, ib = i[tuple(lo)].ravel(), i[tuple(hi)].ravel()
            pa, pb = d[tuple(lo)].ravel(), d[tuple(hi)].ravel()
            diff = ia != ib
            counts += np.bincount(ia[diff] * n_phase + pb[diff], minlength=counts.size)
            counts += np.bincount(ib[diff] * n_phase + pa[diff], minlength=counts.size)
    counts = counts.reshape(comp.count + 1, n_phase)
    counts[0] = 0
    return counts


def _ball(radius: int, ndim: int) -> np.ndarray:
    grid = np.indices((2 * radius + 1,) * ndim) - radius
    return (grid**2).sum(0) <= radius * radius


def decide(
    table: Mapping[str, np.ndarray],
    touch: np.ndarray,
    rules: Sequence[Mapping[str, Any]],
    shape: Sequence[int],
) -> tuple[np.ndarray, list[str]]:
    """New phase of each blob (index 0 unused; -1 = unchanged) and the reason per blob.

    ``touch`` is the contact matrix from :func:`contacts`.
    """
    n = len(table["id"])
    new = np.full(n + 1, -1, np.int64)
    reason = [""] * (n + 1)
    phase = np.concatenate([[-1], table["phase"]])
    col = {k: np.concatenate([[0], v]) for k, v in table.items()}
    other = touch.astype(np.float64).copy()
    other[np.arange(n + 1), np.clip(phase, 0, touch.shape[1] - 1)] = -1  # own phase excluded
    surround = np.argmax(other, axis=1)
    has_surround = other.max(axis=1) > 0
    on_border = np.zeros(n + 1, bool)
    for a, size in enumerate(shape):
        on_border |= (col[("z0", "y0", "x0")[a]] == 0) | (col[("z1", "y1", "x1")[a]] == size)
    for rule in rules:
        p = int(rule["phase"])
        target = rule.get("reassign_to")
        mine = phase == p
        tests = []
        if rule.get("min_size"):
            tests.append((col["voxels"] < rule["min_size"], "min_size"))
        if rule.get("max_size") is not None:
            tests.append((col["voxels"] > rule["max_size"], "max_size"))
        if rule.get("max_elongation") is not None:
            tests.append((col["elongation"] > rule["max_elongation"], "max_elongation"))
        if rule.get("min_area"):
            tests.append((col["area_per_slice"] < rule["min_area"], "min_area"))
        if rule.get("max_area") is not None:
            tests.append((col["area_per_slice"] > rule["max_area"], "max_area"))
        ring = rule.get("ring")
        if ring is not None:
            ring = RING_DEFAULTS | dict(ring)
            tests.append(
                (
                    (col["slices"] <= ring["max_slices"])
                    & (col["area_per_slice"] >= ring["min_area"])
                    & (col["slenderness"] >= ring["min_slenderness"]),
                    "ring_artefact",
                )
            )
        for hit, why in tests:
            sel = mine & hit & (new < 0)
            if target is not None:
                new[sel] = int(target)
            else:
                sel &= has_surround
                new[sel] = surround[sel]
            for i in np.flatnonzero(sel):
                reason[i] = why
        if rule.get("fill_holes"):
            only_p = (touch[:, p] > 0) & (touch.sum(axis=1) == touch[:, p])
            sel = (phase != p) & (phase >= 0) & only_p & ~on_border & (new < 0)
            if rule.get("max_hole_size") is not None:
                sel &= col["voxels"] <= rule["max_hole_size"]
            new[sel] = p
            for i in np.flatnonzero(sel):
                reason[i] = "hole"
    return new, reason


def postprocess(
    pred: str | Path,
    out: str | Path,
    params: Mapping[str, Any],
    *,
    blobs_csv: str | Path | None = None,
    changes_csv: str | Path | None = None,
    overwrite: bool = False,
) -> StageResult:
    """Clean a label volume with per-phase rules and write it with its blob and change tables.

    Parameters
    ----------
    pred : label volume (Zarr array, OME-Zarr group with ``labels/<name>/0``, or TIFF), (z, y, x)
        unsigned integers.
    out : the cleaned volume, written as ``OUT.zarr/labels/<name>/0`` (uint8) with the
        ``dlpipe`` attributes of the input, the NGFF label attributes (voxel size and unit of the
        input) and the completion marker written last.
    params : the ``postprocess`` config section (connectivity, chunks, rules, labels_name).
    blobs_csv, changes_csv : table paths; default ``OUT`` with ``.blobs.csv`` / ``.changes.csv``.
    overwrite : replace existing outputs (each is checked before any work).

    Returns
    -------
    dict
        Summary: blobs per phase, changed voxels per reason, phase fractions before and after.
    """
    out = Path(out)
    stem = out.with_suffix("") if out.suffix == ".zarr" else out
    blobs_csv = Path(blobs_csv or f"{stem}.blobs.csv")
    changes_csv = Path(changes_csv or f"{stem}.changes.csv")
    check_outputs([out, blobs_csv, changes_csv], overwrite=overwrite, inputs=[pred])
    src = open_labels(pred, labels_name=params["labels_name"])
    if src.ndim != 3:
        raise UserError(f"expected a 3D (z, y, x) volume, got shape {tuple(src.shape)}", path=pred)
    chunks = tuple(params["chunks"] or chunk_shape(src))
    rules = list(params["rules"])
    phases = present_phases(src, chunks)
    n_phase = max([*phases, *(int(r["phase"]) for r in rules), 0]) + 1
    nbytes = int(np.prod(src.shape)) * 4
    scratch = None
    _remove_stale_scratch(out)
    if nbytes <= IN_MEMORY_LIMIT:
        ids: Any = None
    else:
        import tempfile

        import zarr

        scratch = tempfile.TemporaryDirectory(prefix=_scratch_prefix(out), dir=out.parent)
        ids = zarr.create_array(scratch.name, shape=src.shape, chunks=chunks, dtype="uint32")
    try:
        comp = label_chunked(
            src, phases, connectivity=params["connectivity"], chunks=chunks, out=ids, stats=True
        )
        table = blob_table(comp)
        touch = contacts(src, comp.ids, comp, chunks, n_phase)
        new, reason = decide(table, touch, rules, src.shape)
        changed = new >= 0
        newphase = np.where(changed, new, 0).astype(np.uint8)
        morph = [(r, int(r.get("opening") or 0), int(r.get("closing") or 0)) for r in rules]
        halo = 2 * sum(o + c for _, o, c in morph)  # each operation needs 2r more context
        morph_counts: dict[tuple[str, int, int], int] = {}
        before = np.zeros(n_phase, np.int64)
        after = np.zeros(n_phase, np.int64)

        def cleaned() -> Iterator[tuple[tuple[slice, ...], np.ndarray]]:
            for sl in tqdm(blocks(src.shape, chunks), desc="clean", disable=None, leave=False):
                ext = tuple(
                    slice(max(s.start - halo, 0), min(s.stop + halo, n))
                    for s, n in zip(sl, src.shape, strict=True)
                )
                crop = tuple(
                    slice(s.start - e.start, s.stop - e.start) for s, e in zip(sl, ext, strict=True)
                )
                data = np.asarray(src[ext])
                i = np.asarray(comp.ids[ext])
                res = np.where(changed[i], newphase[i], data).astype(np.uint8)
                for rule, op, cl in morph:
                    p = int(rule["phase"])
                    if op:
                        mask = res == p
                        removed = mask & ~ndimage.binary_opening(mask, _ball(op, 3))
                        fill = rule.get("reassign_to")
                        fill = int(fill if fill is not None else (1 if p == 0 else 0))
                        k = ("opening", p, fill)
                        morph_counts[k] = morph_counts.get(k, 0) + int(removed[crop].sum())
                        res[removed] = fill
                    if cl:
                        mask = res == p
                        added = ndimage.binary_closing(mask, _ball(cl, 3)) & ~mask
                        for q in np.unique(res[crop][added[crop]]):
                            k = ("closing", int(q), p)
                            morph_counts[k] = morph_counts.get(k, 0) + int(
                                (added[crop] & (res[crop] == q)).sum()
                            )
                        res[added] = p
                before[:] += np.bincount(data[crop].ravel(), minlength=n_phase)[:n_phase]
                after[:] += np.bincount(res[crop].ravel(), minlength=n_phase)[:n_phase]
                yield sl, res[crop]

        attrs = dict(dlpipe_attrs(pred))
        attrs.pop("complete", None)
        attrs["postprocess"] = {"rules": rules, "connectivity": params["connectivity"]}
        write_labels(
            out,
            cleaned(),
            src.shape,
            chunks,
            labels_name=params["labels_name"],
            attrs=attrs,
            overwrite=overwrite,
            like=pred,
        )
    finally:
        if scratch is not None:
            scratch.cleanup()
    table["new_phase"] = np.where(changed[1:], new[1:], table["phase"])
    table["reason"] = np.array(reason[1:], dtype=object)
    write_csv(blobs_csv, table, overwrite=overwrite)
    idx = np.flatnonzero(changed)
    change_rows: dict[str, list] = {
        "id": [int(i) for i in idx],
        "from_phase": [int(comp.phase[i]) for i in idx],
        "to_phase": [int(new[i]) for i in idx],
        "voxels": [int(comp.voxels[i]) for i in idx],
        "reason": [reason[i] for i in idx],
    }
    for (why, f, t), v in sorted(morph_counts.items()):
        if v:
            for key, val in zip(change_rows, (0, f, t, v, why), strict=True):
                change_rows[key].append(val)
    write_csv(changes_csv, change_rows, overwrite=overwrite)
    total = max(int(before.sum()), 1)
    by_reason: dict[str, int] = {}
    for why, v in zip(change_rows["reason"], change_rows["voxels"], strict=True):
        by_reason[why] = by_reason.get(why, 0) + v
    summary = {
        "blobs": {str(p): int((comp.phase[1:] == p).sum()) for p in phases},
        "changed_blobs": len(idx),
        "changed_voxels": by_reason,
        "fraction_before": {str(p): float(before[p] / total) for p in range(n_phase)},
        "fraction_after": {str(p): float(after[p] / total) for p in range(n_phase)},
        "blobs_csv": str(blobs_csv),
        "changes_csv": str(changes_csv),
    }
    log.info("postprocess: %d blobs, %d changed", comp.count, len(idx))
    return StageResult(
        summary,
        metrics={f"blobs_{k}": v for k, v in summary["blobs"].items()}
        | {f"changed_voxels_{k}": v for k, v in summary["changed_voxels"].items()}
        | {f"fraction_after_{k}": v for k, v in summary["fraction_after"].items()},
        artifacts=[Path(blobs_csv), Path(changes_csv)],
        summary=f"cleaned {len(idx)} of {comp.count} blobs, "
        f"{sum(by_reason.values())} voxels changed: {out}",
    )


def _scratch_prefix(out: Path) -> str:
    """The name prefix of the on-disk component ids of a cleaning into ``out`` (beside it)."""
    return f".ids.{out.name}."


def _remove_stale_scratch(out: Path) -> None:
    """Remove the component-id scratch that a killed cleaning into ``out`` left beside it.

    Only this output's scratch (its name is in the prefix): a run into another output of the
    same folder keeps its own.
    """
    import shutil

    for stale in out.parent.glob(_scratch_prefix(out) + "*"):
        if stale.is_dir() and not stale.is_symlink():
            log.info("removing %s, left by a killed run", stale)
            shutil.rmtree(stale, ignore_errors=True)
