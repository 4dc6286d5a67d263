"""Prediction runs: :func:`predict` dispatches on the model card; the U-Net volume run.

Public API
----------
predict
    Predict a volume (or a dataset Zarr) with a model folder: a U-Net's blocks
    (:func:`predict_volume`) or a Mask R-CNN's instances
    (:func:`~dlpipe.prediction.instances.predict_instances`), as its card says.
DEFAULTS
    The ``predict`` config section's defaults for a U-Net run.
predict_volume
    Predict ``VOL.zarr`` into ``PRED.zarr`` (OME-Zarr labels): the blocks still to do, on
    local threads or a distributed scheduler, under an optional memory budget.

The run's layout (block, halo, batch, threads) is planned in :mod:`dlpipe.prediction.plan`
(``plan_run``, re-exported here).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from dlpipe.config import defaults
from dlpipe.errors import UserError
from dlpipe.models.devices import torch_device
from dlpipe.prediction.block import Job, load_resources
from dlpipe.prediction.engine import tta_ops
from dlpipe.prediction.instances import predict_instances
from dlpipe.prediction.memory import (
    RUN_OVERHEAD_MB,
    limit_malloc,
    peak_rss_mb,
    rss_mb,
    workers_in_budget,
)
from dlpipe.prediction.model import (
    load_model,
)
from dlpipe.prediction.output import (
    MANIFEST,
    all_marked,
    block_name,
    build_manifest,
    gather,
    prepare_output,
)
from dlpipe.prediction.plan import SLIDING_BLOCK, adopt_layout, plan_run
from dlpipe.prediction.schedulers import dask_scheduler, run_distributed, run_local
from dlpipe.prediction.volume import open_volume
from dlpipe.prediction.windows import block_grid
from dlpipe.results import StageResult
from dlpipe.stores.atomic import output_errors
from dlpipe.stores.card import model_family, read_card

log = logging.getLogger("dlpipe.prediction")

__all__ = ["DEFAULTS", "SLIDING_BLOCK", "plan_run", "predict", "predict_volume"]

DEFAULTS: dict[str, Any] = {
    k: v
    for k, v in defaults()["predict"].items()
    # the CLI's; maskrcnn and instance_unet: their own
    if k not in ("model", "slabs", "scheduler", "maskrcnn", "instance_unet")
}
"""The ``predict`` section's defaults, from the config schema (the one source of defaults)."""


def predict_volume(
    model_dir: str | Path,
    volume: str | Path,
    out: str | Path,
    params: Mapping[str, Any] | None = None,
    *,
    scheduler: str | None = None,
    overwrite: bool = False,
    resume: bool = False,
    progress: bool = True,
    slab: tuple[int, int] | None = None,
    prepare_only: bool = False,
    card: Mapping[str, Any] | None = None,
) -> StageResult:
    """Predict a tiled volume block by block into ``OUT.zarr`` (OME-Zarr labels).

    Parameters
    ----------
    model_dir : folder of ``card.json`` + ``weights.pt`` from ``dlpipe train``
    volume : ``VOL.zarr`` (image level ``params['level']``, (z, y, x))
    out : ``PRED.zarr``: ``labels/<labels_name>/0`` uint8 (z, y, x) argmax and, with
        ``probabilities``, ``probabilities/0`` float16 (c, z, y, x); chunks = blocks
    params : the ``predict`` config section (see :data:`DEFAULTS`)
    scheduler : address of a ``dask.distributed`` scheduler; None = local threads
    overwrite : replace an existing output
    resume : finish an interrupted run with the same model and layout (with
        ``overwrite`` too: resume when they match, else start again)
    slab : (i, n): only the i-th of n contiguous z-slabs of blocks (one job of a split
        run); the output must have been created by a ``prepare_only`` call and is marked
        complete by :func:`gather` once every slab has run
    prepare_only : create (or check, when resuming) the output and its manifest, predict
        nothing
    card : the model card when the caller has read it already (None: read it here)

    Returns
    -------
    dict
        Summary: blocks, blocks_done_before, blocks_predicted, voxels, seconds,
        voxels_per_s, windows, forward_passes (batches of windows times TTA elements),
        tta_elements, peak_rss_mb (VmHWM), estimated_block_mb, workers, complete.
    """
    p = dict(DEFAULTS) | dict(params or {})
    t0 = time.perf_counter()
    win = p["window"]
    model = load_model(model_dir, list(win) if isinstance(win, (list, tuple)) else None, card)
    info = open_volume(volume, model.mode, model.card, p["level"], strict=p["strict"])
    p = adopt_layout(Path(out), p, info.shape)
    plan = plan_run(model, info, p, scheduler=scheduler)
    block, halo, batch, workers = plan["block"], plan["halo"], plan["batch"], plan["workers"]
    job = Job(
        str(Path(model_dir)),
        str(Path(volume)),
        p["level"],
        str(Path(out)),
        p["labels_name"],
        block,
        halo,
        tuple(model.window),
        float(p["overlap"]),
        batch,
        int(p["tta"]),
        bool(p["probabilities"]),
        p["device"],
        bool(p["amp"]),
        plan["torch_threads"],
        model.digest,
        whole=plan["whole"],
        multiple=plan["multiple"],
    )
    torch_device(job.device, "predict.device")
    manifest = build_manifest(model, info, job)
    out = Path(out)
    if slab is not None:
        i, n = slab
        if not 0 <= i < n:
            raise UserError(f"slab {i} of {n}: need 0 <= I < N")
        if not (out / MANIFEST).is_file():
            raise UserError("a slab job needs the output prepared first (--prepare)", path=out)
        resume, overwrite = True, False
    est = plan["estimate"]
    budget = plan["budget"]
    pipelined = True  # one block at a time: the next read and the last writes overlapped
    if budget is not None and not scheduler:
        workers = workers_in_budget(budget, est, workers)
        limit_malloc()
        job = replace(job, trim_memory=True)
        # the overlapped reads and writes hold about one more block's arrays
        pipelined = budget - rss_mb() - RUN_OVERHEAD_MB >= 2 * est / 2**20
    done = prepare_output(out, model, info, job, manifest, overwrite=overwrite, resume=resume)
    grid = block_grid(info.shape, block)
    if slab is not None:
        nzb = -(-info.shape[0] // block[0])
        grid = [g for g in grid if g[0] * slab[1] // nzb == slab[0]]
    if prepare_only:
        grid = []
    todo = [i for i in grid if block_name(i) not in done]
    if not scheduler:
        load_resources(job, model, info)  # the workers use this model and volume: one copy
    log.info(
        "predict: %d of %d blocks to do (%d done before), block %s, halo %s, window %s, "
        "batch %d, %d block(s) at once, %d torch thread(s)",
        len(todo),
        len(grid),
        len(grid) - len(todo),
        list(block),
        list(halo),
        "block + halo" if job.whole else list(model.window),
        job.batch_size,
        workers,
        job.torch_threads,
    )
    if todo:
        results = (
            run_distributed(job, todo, scheduler, progress)
            if scheduler
            else run_local(job, todo, workers, progress, pipelined=pipelined)
        )
    else:
        results = []
    all_done = gather(out) if slab is None else all_marked(out, info.shape, block)
    seconds = time.perf_counter() - t0
    voxels = sum(r["voxels"] for r in results)
    summary = {
        "blocks": len(grid),
        "blocks_done_before": len(grid) - len(todo),
        "blocks_predicted": len(results),
        "voxels": voxels,
        "seconds": seconds,
        "voxels_per_s": voxels / seconds if seconds > 0 else 0.0,
        "windows": sum(r["windows"] for r in results),
        "forward_passes": sum(r["forward_passes"] for r in results),
        "tta_elements": int(
            max(
                (r.get("tta_elements", 1) for r in results),
                default=len(tta_ops(model.mode, model.window, job.tta)),
            )
        ),
        "block": list(block),
        "halo": list(halo),
        "batch_size": job.batch_size,
        "torch_threads": job.torch_threads,
        "whole_windows": job.whole,
        "peak_rss_mb": peak_rss_mb(),
        "estimated_block_mb": est / 2**20,
        "workers": workers,
        "complete": all_done,
    }
    if budget is not None and summary["peak_rss_mb"] > budget:
        log.warning(
            "predict: peak RSS %.0f MiB passed predict.memory_budget_mb %.0f MiB",
            summary["peak_rss_mb"],
            budget,
        )
    return _result(summary, Path(out))


def _result(summary: dict[str, Any], out: Path) -> StageResult:
    """The summary with what tracking logs (throughput, blocks, the manifest) and one line."""
    keys = (
        "voxels_per_s",
        "seconds",
        "peak_rss_mb",
        "blocks",
        "blocks_predicted",
        "blocks_done_before",
        "voxels",
        "windows",
    )
    manifest = out / MANIFEST
    return StageResult(
        summary,
        metrics={k: float(summary[k]) for k in keys},
        artifacts=[manifest] if manifest.is_file() else [],
        summary=f"predicted {summary['blocks_predicted']} of {summary['blocks']} blocks "
        f"({summary['blocks_done_before']} done before), "
        f"{summary['voxels_per_s']:.0f} voxels/s, peak RSS {summary['peak_rss_mb']:.0f} MiB"
        f"{'' if summary['complete'] else ' (slab done; output not yet complete)'}: {out}",
    )


def predict(
    model_dir: str | Path,
    volume: str | Path,
    out: str | Path,
    params: Mapping[str, Any] | None = None,
    *,
    card: Mapping[str, Any] | None = None,
    scheduler: str | None = None,
    overwrite: bool = False,
    resume: bool = False,
    progress: bool = True,
    slab: tuple[int, int] | None = None,
    prepare_only: bool = False,
) -> StageResult:
    """Predict ``volume`` with the model in ``model_dir`` into ``out``, as its card says.

    The card is read once (:func:`dlpipe.stores.card.read_card`). A Mask R-CNN
    (``"model": "maskrcnn"``) predicts the instances of a dataset Zarr or of a volume's
    z-slices (:func:`~dlpipe.prediction.instances.predict_instances`, with
    ``params['maskrcnn']``, ``device`` and ``torch_threads``); a U-Net (``"unet"``) the
    blocks of a volume (:func:`predict_volume`).

    Parameters
    ----------
    model_dir : folder of ``card.json`` + ``weights.pt`` from ``dlpipe train``
    volume : ``VOL.zarr`` from ``dlpipe tile`` (Mask R-CNN: or a dataset Zarr)
    out : ``PRED.zarr`` to write
    params : the whole ``predict`` config section (its ``maskrcnn`` section for a Mask
        R-CNN); missing keys take their defaults
    card : the model card when the caller has read it already (None: read it here)
    scheduler : a ``predict.scheduler`` spec: None or "" for ``params['scheduler']``
        (default local threads), ``local-cluster:N`` or a scheduler address (U-Net only)
    overwrite : replace an existing output
    resume, slab, prepare_only : see :func:`predict_volume` (U-Net only; a Mask R-CNN
        run ignores them)
    progress : show a progress bar

    Returns
    -------
    StageResult
        The summary of :func:`predict_volume` or of
        :func:`~dlpipe.prediction.instances.predict_instances`, with the run's ``model`` tag
        and the parameters to log.

    Raises
    ------
    UserError
        No readable card, or a card naming neither family.
    """
    p = dict(params or {})
    card = dict(card) if card is not None else read_card(model_dir)
    family = model_family(card, Path(model_dir) / "card.json")
    if family == "instance-unet":
        from dlpipe.prediction.instance_unet import predict_instance_unet

        with output_errors(out):
            result = predict_instance_unet(
                model_dir,
                volume,
                out,
                p.get("instance_unet"),
                card=card,
                device=p.get("device", "auto"),
                torch_threads=p.get("torch_threads"),
                overwrite=overwrite,
                progress=progress,
            )
        result.tags["model"] = "instance-unet"
        result.params.update({"model_dir": str(model_dir), "device": p.get("device", "auto")})
        return result
    if family == "maskrcnn":
        result = predict_instances(
            model_dir,
            volume,
            out,
            p.get("maskrcnn"),
            card=card,
            device=p.get("device", "auto"),
            torch_threads=p.get("torch_threads"),
            overwrite=overwrite,
            progress=progress,
        )
        result.tags["model"] = "maskrcnn"
        result.params.update(
            dict(p.get("maskrcnn") or {})
            | {"model_dir": str(model_dir), "device": p.get("device", "auto")}
        )
        return result
    spec = scheduler or p.get("scheduler")
    with dask_scheduler(spec) as address, output_errors(out):  # a full disk: one line
        result = predict_volume(
            model_dir,
            volume,
            out,
            p,
            scheduler=address,
            overwrite=overwrite,
            resume=resume,
            progress=progress,
            slab=slab,
            prepare_only=prepare_only,
            card=card,
        )
    result.tags["model"] = str(card.get("model", ""))
    result.params.update(p | {"model_dir": str(model_dir), "scheduler": spec})
    return result
