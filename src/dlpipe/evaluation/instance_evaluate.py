"""Instance evaluation of stores: JSON, CSV, figures.

Three pairings of prediction and truth (docs/instances.md):

* **images**: a prediction Zarr (``instances`` + ``semantic`` (N, H, W), Mask R-CNN or
  instance-unet) against a dataset Zarr (``dlpipe cvat`` / ``dlpipe import``);
* **slices**: the same prediction of a volume's z-slices (attribute ``z``) against an
  instance label volume, slice by slice;
* **volume**: an instance label volume against another, 3D objects, slab by slab
  (:mod:`dlpipe.evaluation.instance_volumes`).

The inputs are opened and checked in :mod:`dlpipe.evaluation.instance_inputs`. The metrics
and their conventions are in :mod:`dlpipe.evaluation.instances` and
:mod:`dlpipe.evaluation.instance_scores`.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from dlpipe.errors import UserError
from dlpipe.evaluation import instance_plots
from dlpipe.evaluation import instance_volumes as vols
from dlpipe.evaluation.instance_inputs import (
    check_params,
    classes_of,
    is_instance_dataset,
    open_instances,
    pixel_spacing,
    pred_table,
    source_kind,
)
from dlpipe.evaluation.instances import IOU_THRESHOLDS, InstanceEvaluator, instance_classes
from dlpipe.evaluation.plots import save_figures
from dlpipe.results import StageResult
from dlpipe.stores.atomic import check_outputs, write_json_atomic, write_text_atomic

__all__ = ["check_params", "evaluate_instances"]

log = logging.getLogger(__name__)


KEYS = [
    "n_true",
    "n_pred",
    "n_matched",
    "precision",
    "recall",
    "f1",
    "ap",
    "ap50",
    "ap75",
    "pq",
    "sq",
    "rq",
    "count_error",
    "count_error_signed",
    "size_w1",
    "mean_diameter_pred",
    "mean_diameter_true",
    "mean_matched_iou",
]


def evaluate_instances(
    pred_path: str | Path,
    truth_path: str | Path,
    out_json: str | Path,
    params: Mapping[str, Any] | None = None,
    *,
    progress: bool = True,
    overwrite: bool = False,
    z_range: tuple[int, int] | None = None,
    use_all: bool = False,
    components: str | None = None,
    classes: list[str] | None = None,
) -> StageResult:
    """Instance metrics of a prediction against the truth; JSON, CSV, figures.

    Parameters
    ----------
    pred_path : ``PRED.zarr`` from ``dlpipe predict`` with a Mask R-CNN or instance-unet
        (``instances`` (N, H, W) uint32, ``semantic``, ``instances.csv`` for scores and
        classes; any Zarr with ``instances`` and ``semantic`` works: scores then all 1,
        classes the majority of ``semantic``), or an instance label volume (TIFF, Zarr
        array, ``STORE/labels/NAME``, or a store with one ``*instances`` label image)
    truth_path : a dataset Zarr (``dlpipe cvat``: ``instances``, ``semantic`` (N, H, W),
        attribute ``classes``; ``images`` drawn under the outlines) or an instance label
        volume (``synth``'s ``pore_instances.tif``, ``VOL.zarr/labels/pores_instances``)
    out_json : metrics JSON (NaN as null); a CSV (one row per class and ``overall``) beside
        it and figures in ``<stem>_plots/`` (``ap_f1.png``, ``sizes.png``,
        ``outlines_<i>.png``)
    params : the ``evaluation.instances`` config section (iou_thresholds, f1_iou, overlays)
    overwrite : replace an existing ``out_json`` (and its CSV); checked before any work
    z_range, use_all : volumes: the half-open z range scored; default the test split of
        either input, else everything (``use_all``: everything)
    components : a class name: ``pred_path`` is a semantic label volume (``PRED.zarr``,
        ``CLEAN.zarr``, a baseline's) whose 26-connected components of that class are the
        predicted instances (the Otsu + connected-components floor)
    classes : class names by label value of such a semantic volume when it names none
        (``evaluation.classes``)

    Raises
    ------
    UserError
        Thresholds outside (0, 1], missing arrays or instances, shapes that differ,
        predicted classes unknown to the truth.
    """
    p = {"iou_thresholds": list(IOU_THRESHOLDS), "f1_iou": 0.5, "overlays": 2} | dict(params or {})
    check_params(p)
    pred_path, truth_path, out_json = Path(pred_path), Path(truth_path), Path(out_json)
    check_outputs(
        [out_json, out_json.with_suffix(".csv")],
        overwrite=overwrite,
        inputs=[pred_path, truth_path],
    )
    thresholds, f1_iou = [float(t) for t in p["iou_thresholds"]], float(p["f1_iou"])
    if components is not None:
        if is_instance_dataset(truth_path):
            raise UserError("--components needs an instance label volume as the truth")
        result, figures = _volume(
            pred_path, truth_path, thresholds, f1_iou, z_range, use_all, components, classes
        )
    elif is_instance_dataset(truth_path):
        result, figures = _images(pred_path, truth_path, thresholds, f1_iou, p, progress)
    elif is_instance_dataset(pred_path) and source_kind(pred_path) == "volume":
        result, figures = _volume(pred_path, truth_path, thresholds, f1_iou, z_range, use_all)
    elif is_instance_dataset(pred_path):
        result, figures = _slices(pred_path, truth_path, thresholds, f1_iou, progress)
    else:
        result, figures = _volume(pred_path, truth_path, thresholds, f1_iou, z_range, use_all)
    result["prediction"], result["truth"] = str(pred_path), str(truth_path)
    write_json_atomic(out_json, result, overwrite=overwrite)
    lines = [",".join(["class", *KEYS])]
    for name, m in [*result["per_class"].items(), ("overall", result["overall"])]:
        cells = []
        for k in KEYS:
            v = m.get(k, math.nan)
            cells.append(
                ""
                if isinstance(v, float) and math.isnan(v)
                else f"{v:.6g}"
                if isinstance(v, float)
                else str(v)
            )
        lines.append(",".join([name, *cells]))
    write_text_atomic(out_json.with_suffix(".csv"), "\n".join(lines) + "\n", overwrite=overwrite)
    o = result["overall"]
    metrics = {k: o[k] for k in KEYS if k in o}
    for name, m in result["per_class"].items():
        for k in ("ap", "ap50", "ap75", "f1", "precision", "recall", "pq", "count_error"):
            metrics[f"{k}_{name}"] = m[k]
    return StageResult(
        result,
        metrics={k: float(v) for k, v in metrics.items() if not math.isnan(v)},
        artifacts=[out_json, out_json.with_suffix(".csv"), *save_figures(out_json, figures)],
        summary=f"AP {o['ap']:.3f}, AP50 {o['ap50']:.3f}, F1@{result['f1_iou']:g} "
        f"{o['f1']:.3f}, PQ {o['pq']:.3f}, count error {o['count_error_signed']:+.1%}, "
        f"W1 {o['size_w1']:.3g} ({o['n_matched']} of {o['n_true']} true matched, "
        f"{o['n_pred']} predicted): {out_json}",
    )


def _images(
    pred_path: Path,
    truth_path: Path,
    thresholds: list[float],
    f1_iou: float,
    p: Mapping[str, Any],
    progress: bool,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """A prediction Zarr against a dataset Zarr, image by image."""
    from tqdm.auto import tqdm  # deferred: heavy

    pred, truth = open_instances(pred_path, "prediction"), open_instances(truth_path, "truth")
    if pred["instances"].shape != truth["instances"].shape:
        raise UserError(
            f"prediction shape {pred['instances'].shape} differs from the truth's "
            f"{truth['instances'].shape}",
            path=pred_path,
        )
    t_classes = classes_of(truth)
    p_classes = classes_of(pred)
    classes = t_classes or p_classes
    if classes is None:
        n = int(max(np.max(truth["semantic"][...]), np.max(pred["semantic"][...]))) + 1
        classes = ["background", *(f"class_{i}" for i in range(1, n))]
    remap = None
    if p_classes and t_classes and p_classes != t_classes:
        unknown = [c for c in p_classes[1:] if c not in t_classes]
        if unknown:
            raise UserError(
                f"predicted classes {unknown} are not classes of the truth "
                f"({', '.join(t_classes[1:])})",
                path=pred_path,
            )
        remap = {i: t_classes.index(c) for i, c in enumerate(p_classes) if i}
    table = pred_table(pred_path)
    ev = InstanceEvaluator(classes, thresholds, f1_iou, ndim=2, spacing=pixel_spacing(truth))
    n = int(pred["instances"].shape[0])
    for i in tqdm(range(n), desc="evaluate", unit="image", disable=None if progress else True):
        p_inst = np.asarray(pred["instances"][i])
        t_inst = np.asarray(truth["instances"][i])
        t_cls = instance_classes(t_inst, np.asarray(truth["semantic"][i]))
        p_cls, scores = _pred_classes(table, i, p_inst, pred, pred_path)
        if remap:
            p_cls = {k: remap.get(v, v) for k, v in p_cls.items()}
        ev.add_image(p_inst, t_inst, t_cls, p_cls, scores)
    result = ev.result()
    result["mode"] = "images"
    figures = instance_plots.image_figures(result, pred, truth, int(p["overlays"]))
    figures["sizes.png"] = instance_plots.size_histograms(ev.diameters(), result)
    return result, figures


def _pred_classes(
    table: dict[int, dict[int, tuple[int, float]]] | None,
    i: int,
    p_inst: np.ndarray,
    pred: Any,
    pred_path: Path,
) -> tuple[dict[int, int], dict[int, float] | None]:
    """Class and score of each predicted id of image ``i``: the table's, else semantic's."""
    if table is None:
        return instance_classes(p_inst, np.asarray(pred["semantic"][i])), None
    rows = table.get(i, {})
    missing = set(np.unique(p_inst).tolist()) - set(rows) - {0}
    if missing:
        raise UserError(
            f"image {i}: instance ids {sorted(missing)[:5]} are not in instances.csv",
            path=pred_path,
        )
    return {k: v[0] for k, v in rows.items()}, {k: v[1] for k, v in rows.items()}


def _slices(
    pred_path: Path, truth_path: Path, thresholds: list[float], f1_iou: float, progress: bool
) -> tuple[dict[str, Any], dict[str, Any]]:
    """A prediction of a volume's z-slices against an instance label volume, slice by slice.

    The truth's objects are of one class (:func:`instance_volumes.class_name`); predicted
    instances of other classes (a Mask R-CNN trained on fibres and pores) are left out.
    """
    from tqdm.auto import tqdm  # deferred: heavy

    from dlpipe.stores.volume import source_grid

    pred = open_instances(pred_path, "prediction")
    truth, store, name = vols.open_instance_volume(truth_path, "truth")
    zs = (dict(pred.attrs).get("dlpipe") or {}).get("z") or dict(pred.attrs).get("z")
    if not zs:
        raise UserError(
            "prediction of images, truth a volume: the prediction has no `z` attribute "
            "(predict a tiled volume, or give a dataset Zarr as the truth)",
            path=pred_path,
        )
    if tuple(pred["instances"].shape[1:]) != tuple(truth.shape[1:]) or max(zs) >= truth.shape[0]:
        raise UserError(
            f"prediction slices {pred['instances'].shape} do not fit the truth {truth.shape}",
            path=pred_path,
        )
    cls = vols.class_name(name)
    p_classes = classes_of(pred) or ["background", cls]
    keep = p_classes.index(cls) if cls in p_classes else None
    spacing, _ = source_grid(store, name) if store.is_dir() else (None, None)
    ev = InstanceEvaluator(
        ["background", cls], thresholds, f1_iou, ndim=2, spacing=spacing[-2:] if spacing else None
    )
    table = pred_table(pred_path)
    bar = tqdm(zs, desc="evaluate", unit="slice", disable=None if progress else True)
    for i, z in enumerate(bar):
        p_inst = np.asarray(pred["instances"][i])
        t_inst = np.asarray(truth[int(z)])
        p_cls, scores = _pred_classes(table, i, p_inst, pred, pred_path)
        if keep is not None and len(p_classes) > 2:
            drop = [k for k, v in p_cls.items() if v != keep]
            if drop:
                p_inst = np.where(np.isin(p_inst, drop), 0, p_inst)
        p_cls = {k: 1 for k in p_cls}
        t_cls = {int(k): 1 for k in np.unique(t_inst) if k}
        ev.add_image(p_inst, t_inst, t_cls, p_cls, scores)
    result = ev.result()
    result["mode"] = "slices"
    figures = {
        "ap_f1.png": instance_plots.ap_f1_bars(result),
        "sizes.png": instance_plots.size_histograms(ev.diameters(), result),
    }
    return result, figures


def _volume(
    pred_path: Path,
    truth_path: Path,
    thresholds: list[float],
    f1_iou: float,
    z_range: tuple[int, int] | None,
    use_all: bool,
    components: str | None = None,
    classes: list[str] | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """An instance label volume against another: 3D objects, slab by slab.

    ``components``: the class whose connected components of a semantic prediction are its
    instances (the Otsu + connected-components floor), labelled chunk by chunk into a
    scratch Zarr that is removed at the end.
    """
    scratch = None  # the components' TemporaryDirectory, removed when this returns
    from dlpipe.evaluation.evaluate import resolve_z_ranges
    from dlpipe.stores.volume import source_grid

    truth, t_store, t_name = vols.open_instance_volume(truth_path, "truth")
    cls = vols.class_name(t_name)
    scores, z_note = None, None
    if is_instance_dataset(pred_path):  # instance-unet's PRED.zarr of slices [z0, z1)
        root = open_instances(pred_path, "prediction")
        z0, z1 = ((dict(root.attrs).get("dlpipe") or {}).get("z") or [0, 0])[:2]
        inst = root["instances"]
        if tuple(inst.shape[1:]) != tuple(truth.shape[1:]) or z1 - z0 != inst.shape[0]:
            raise UserError(
                f"prediction {tuple(inst.shape)} of slices {z0}-{z1 - 1} does not fit the "
                f"truth {tuple(truth.shape)}",
                path=pred_path,
            )
        p_classes = classes_of(root) or ["background", cls]
        keep = p_classes.index(cls) if cls in p_classes and len(p_classes) > 2 else None
        pred = vols.PredictedVolume(inst, root["semantic"], int(z0), keep)
        p_store, p_name = pred_path, "instances"
        table = pred_table(pred_path)
        scores = {k: v[1] for k, v in (table or {}).get(0, {}).items()} if table else None
        full = (int(z0), int(z1)) == (0, int(truth.shape[0]))
        if use_all and not full:
            raise UserError(
                f"--all: the prediction covers slices {z0}-{z1 - 1} only", path=pred_path
            )
        if z_range is None and not use_all:
            # the truth's test split within the predicted slices, else those slices
            test, _ = resolve_z_ranges(
                None, t_store if t_store.is_dir() else None, int(truth.shape[0])
            )
            a, b = max(test[0][0], int(z0)), min(test[0][1], int(z1))
            z_range = (a, b) if a < b else (int(z0), int(z1))
            z_note = "split within the predicted slices" if a < b else "predicted slices"
    elif components is not None:  # a semantic volume: its class's connected components
        pred, p_store, p_name, scratch = vols.components_of(
            pred_path, components, truth.shape, classes
        )
        log.info("evaluate: connected components of %s in %s (%s)", components, p_store, scratch)
    else:
        pred, p_store, p_name = vols.open_instance_volume(pred_path, "prediction")
        if tuple(pred.shape) != tuple(truth.shape):
            raise UserError(
                f"prediction shape {tuple(pred.shape)} differs from the truth's "
                f"{tuple(truth.shape)}",
                path=pred_path,
            )
    ranges, source = resolve_z_ranges(
        p_store if p_store.is_dir() else None,
        t_store if t_store.is_dir() else None,
        int(truth.shape[0]),
        z_range=z_range,
        use_all=use_all,
    )
    spacing = None
    for store, name in ((t_store, t_name), (p_store, p_name)):
        if spacing is None and store.is_dir():
            spacing, _ = source_grid(store, name)
    chunks = getattr(truth, "chunks", None)
    slab = max(8, int(chunks[0])) if chunks else 16
    ev = InstanceEvaluator(["background", cls], thresholds, f1_iou, ndim=3, spacing=spacing)
    vols.add_volume(ev, *vols.volume_overlaps(pred, truth, ranges, slab), scores=scores)
    result = ev.result()
    ranges_ = [list(r) for r in ranges]
    result |= {"mode": "volume", "z_ranges": ranges_, "z_source": z_note or source}
    if components is not None:
        result["components_of"] = components
    figures = {
        "ap_f1.png": instance_plots.ap_f1_bars(result),
        "sizes.png": instance_plots.size_histograms(ev.diameters(), result),
    }
    return result, figures
