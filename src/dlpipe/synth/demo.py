"""Write the demo data set to a folder."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import tifffile

from dlpipe.errors import UserError
from dlpipe.results import StageResult, score
from dlpipe.stores.atomic import staged_dir
from dlpipe.synth.cvat_export import write_cvat_export
from dlpipe.synth.imaging import ct_pages
from dlpipe.synth.phantom import PHASES, fibre_composite, pore_instance_slabs

log = logging.getLogger(__name__)


def annotated_slices(nz: int, count: int, z_range: tuple[float, float]) -> list[int]:
    """``count`` evenly spaced z indices within the fraction ``z_range`` of ``nz`` slices."""
    if count == 0:
        return []
    lo, hi = sorted(z_range)
    z0, z1 = int(round(lo * (nz - 1))), int(round(hi * (nz - 1)))
    return sorted({int(round(z)) for z in np.linspace(z0, z1, count)})


def make_demo(
    out_dir: str | Path, params: Mapping[str, Any], *, overwrite: bool = False
) -> StageResult:
    """Generate the demo data set.

    Writes ``volume.tif`` (multi-page, uint8 or uint16), ``labels.tif`` (uint8 phases:
    0 matrix, 1 fibre, 2 pore), ``pore_instances.tif`` (uint32 truth pore instances: pore
    ``k`` has id ``k``, :func:`~dlpipe.synth.phantom.pore_instances`),
    ``cvat/annotations.xml`` with ``cvat/images/*.png`` (the annotated z-slices; one shape
    per pore) and ``metadata.json``. Each file appears only when
    complete. The same ``params`` (including ``seed``) give identical files.

    Parameters
    ----------
    out_dir : folder to write into (created if needed)
    params : the ``synth`` section of the config

    Returns
    -------
    dict
        The contents of ``metadata.json``: phase fractions, counts, slices.
    """
    t0 = time.perf_counter()
    shape = tuple(int(s) for s in params["shape"])
    if len(shape) != 3:
        raise UserError(f"synth.shape must have 3 values (z, y, x), got {list(shape)}")
    rng = np.random.default_rng(params["seed"])
    labels, fibres, pores = fibre_composite(
        shape,
        rng,
        fibre_fraction=params["fibre_fraction"],
        fibre_diameter=params["fibre_diameter"],
        fibre_direction=tuple(params["fibre_direction"]),
        fibre_angle_spread=params["fibre_angle_spread"],
        pore_fraction=params["pore_fraction"],
        pore_radius=tuple(params["pore_radius"]),
    )
    slices = annotated_slices(shape[0], params["annotated_slices"], params["annotate_range"])
    counts = sum(  # per slab: np.bincount would make an 8-byte copy of the whole volume
        np.bincount(labels[z : z + 8].ravel(), minlength=len(PHASES)) for z in range(0, shape[0], 8)
    )
    meta = {
        "shape": list(shape),
        "dtype": params["dtype"],
        "phases": list(PHASES),
        "phase_fractions": {p: float(c / labels.size) for p, c in zip(PHASES, counts, strict=True)},
        "fibres": len(fibres),
        "pores": len(pores),
        "annotated_slices": slices,
        "params": dict(params),
    }
    imaging = {
        k: params[k]
        for k in ("blur_sigma", "photons", "noise_sigma", "rings", "ring_amplitude", "dtype")
    }
    with staged_dir(out_dir, overwrite=overwrite) as stage:
        # The image slab by slab, straight into the TIFF (memory: the labels and one slab);
        # the annotated slices are kept for the CVAT export.
        tifffile.imwrite(stage / "labels.tif", labels, photometric="minisblack")
        shown: dict[int, np.ndarray] = {}
        shown_ids: dict[int, np.ndarray] = {}
        image = ct_pages(labels, rng, stage, grey_levels=tuple(params["grey_levels"]), **imaging)
        for name, slabs, dtype, kept in (
            ("volume.tif", image, np.dtype(params["dtype"]), shown),
            ("pore_instances.tif", pore_instance_slabs(shape, pores), np.uint32, shown_ids),
        ):
            tifffile.imwrite(
                stage / name,
                _pages(slabs, slices, kept),
                shape=shape,
                dtype=dtype,
                photometric="minisblack",
            )
        write_cvat_export(stage / "cvat", shown, labels, fibres, slices, shown_ids)
        (stage / "metadata.json").write_text(json.dumps(meta, indent=2) + "\n")
    log.info(
        "synth: %s voxels, fibre %.1f %%, pore %.2f %%, %d annotated slices, %.1f s",
        "x".join(map(str, shape)),
        100 * meta["phase_fractions"]["fibre"],
        100 * meta["phase_fractions"]["pore"],
        len(slices),
        time.perf_counter() - t0,
    )
    return StageResult(
        meta,
        metrics={f"fraction_{k}": v for k, v in meta["phase_fractions"].items()}
        | {"fibres": meta["fibres"], "pores": meta["pores"]},
        artifacts=[Path(out_dir) / "metadata.json"],
        summary=f"wrote a {'x'.join(map(str, shape))} scan (fibre "
        f"{score(meta['phase_fractions']['fibre'])}, "
        f"pore {score(meta['phase_fractions']['pore'])}), "
        f"labels and {len(slices)} annotated slices: {out_dir}",
    )


def _pages(slabs: Iterator[np.ndarray], keep: list[int], kept: dict[int, np.ndarray]) -> Iterator:
    """The (y, x) pages of z-slabs in order, copying the pages at z in ``keep`` into ``kept``."""
    z = 0
    for slab in slabs:
        for page in slab:
            if z in keep:
                kept[z] = page.copy()
            z += 1
            yield page
