"""Instance evaluation of stores: a prediction Zarr against a dataset Zarr; JSON, CSV, figures.

The metrics and their conventions are in :mod:`dlpipe.evaluation.instances`
(docs/instances.md); this module reads the stores, writes the outputs and draws the figures.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from dlpipe.errors import UserError
from dlpipe.evaluation import instance_plots
from dlpipe.evaluation.instances import IOU_THRESHOLDS, InstanceEvaluator, instance_classes
from dlpipe.evaluation.plots import save_figures
from dlpipe.results import StageResult
from dlpipe.stores.atomic import check_outputs, write_json_atomic, write_text_atomic

__all__ = ["evaluate_instances"]


def _open_instances(path: Path, what: str) -> Any:
    import zarr  # deferred: heavy

    if not path.is_dir():
        raise UserError(f"{what}: not a Zarr folder", path=path)
    try:
        root = zarr.open_group(str(path), mode="r")
    except Exception as exc:
        raise UserError(f"{what}: cannot open as a Zarr group ({exc})", path=path) from None
    for name in ("instances", "semantic"):
        if name not in root:
            raise UserError(
                f"{what} has no `{name}` array (expected a dataset Zarr from "
                "`dlpipe cvat` or a Mask R-CNN prediction)",
                path=path,
            )
    if root["instances"].ndim != 3 or root["instances"].shape != root["semantic"].shape:
        raise UserError(
            f"{what}: `instances` and `semantic` must be (N, H, W) of one shape", path=path
        )
    return root


def _classes_of(root: Any) -> list[str] | None:
    attrs = dict(root.attrs)
    classes = attrs.get("classes") or (attrs.get("dlpipe") or {}).get("classes")
    return [str(c) for c in classes] if classes else None


def _pred_table(path: Path) -> dict[int, dict[int, tuple[int, float]]] | None:
    """{image: {instance_id: (class_id, score)}} from ``PRED.zarr/instances.csv``."""
    table = path / "instances.csv"
    if not table.is_file():
        return None
    out: dict[int, dict[int, tuple[int, float]]] = {}
    with open(table, newline="") as fh:
        for row in csv.DictReader(fh):
            out.setdefault(int(row["image"]), {})[int(row["instance_id"])] = (
                int(row["class_id"]),
                float(row["score"]),
            )
    return out


def evaluate_instances(
    pred_path: str | Path,
    truth_path: str | Path,
    out_json: str | Path,
    params: Mapping[str, Any] | None = None,
    *,
    progress: bool = True,
    overwrite: bool = False,
) -> StageResult:
    """Instance metrics of a prediction Zarr against a dataset Zarr; JSON, CSV, figures.

    Parameters
    ----------
    pred_path : ``PRED.zarr`` from ``dlpipe predict`` with a Mask R-CNN (``instances``
        (N, H, W) uint32, ``semantic``, ``instances.csv`` for scores and classes); any Zarr
        with ``instances`` and ``semantic`` works (scores then all 1, classes the majority
        of ``semantic``)
    truth_path : dataset Zarr (``dlpipe cvat``): ``instances``, ``semantic`` (N, H, W),
        attribute ``classes``; ``images`` is drawn under the outlines when present
    out_json : metrics JSON (NaN as null); a CSV (one row per class and ``overall``) beside
        it and figures in ``<stem>_plots/`` (``ap_f1.png``, ``outlines_<i>.png``)
    params : the ``evaluation.instances`` config section (iou_thresholds, f1_iou, overlays)
    overwrite : replace an existing ``out_json`` (and its CSV); checked before any work

    Raises
    ------
    UserError
        Missing arrays, shapes that differ, predicted classes unknown to the truth.
    """
    from tqdm.auto import tqdm  # deferred: heavy

    p = {"iou_thresholds": list(IOU_THRESHOLDS), "f1_iou": 0.5, "overlays": 2} | dict(params or {})
    pred_path, truth_path, out_json = Path(pred_path), Path(truth_path), Path(out_json)
    check_outputs(
        [out_json, out_json.with_suffix(".csv")],
        overwrite=overwrite,
        inputs=[pred_path, truth_path],
    )
    pred, truth = _open_instances(pred_path, "prediction"), _open_instances(truth_path, "truth")
    if pred["instances"].shape != truth["instances"].shape:
        raise UserError(
            f"prediction shape {pred['instances'].shape} differs from the truth's "
            f"{truth['instances'].shape}",
            path=pred_path,
        )
    t_classes = _classes_of(truth)
    p_classes = _classes_of(pred)
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
    table = _pred_table(pred_path)
    ev = InstanceEvaluator(classes, [float(t) for t in p["iou_thresholds"]], float(p["f1_iou"]))
    n = int(pred["instances"].shape[0])
    for i in tqdm(range(n), desc="evaluate", unit="image", disable=None if progress else True):
        p_inst = np.asarray(pred["instances"][i])
        t_inst = np.asarray(truth["instances"][i])
        t_cls = instance_classes(t_inst, np.asarray(truth["semantic"][i]))
        if table is not None:
            rows = table.get(i, {})
            missing = set(np.unique(p_inst).tolist()) - set(rows) - {0}
            if missing:
                raise UserError(
                    f"image {i}: instance ids {sorted(missing)[:5]} are not in instances.csv",
                    path=pred_path,
                )
            p_cls = {k: v[0] for k, v in rows.items()}
            scores = {k: v[1] for k, v in rows.items()}
        else:
            p_cls = instance_classes(p_inst, np.asarray(pred["semantic"][i]))
            scores = None
        if remap:
            p_cls = {k: remap.get(v, v) for k, v in p_cls.items()}
        ev.add_image(p_inst, t_inst, t_cls, p_cls, scores)
    result = ev.result()
    result["prediction"], result["truth"] = str(pred_path), str(truth_path)
    write_json_atomic(out_json, result, overwrite=overwrite)
    keys = [
        "n_true",
        "n_pred",
        "n_matched",
        "precision",
        "recall",
        "f1",
        "ap",
        "ap50",
        "ap75",
        "mean_matched_iou",
    ]
    lines = [",".join(["class", *keys])]
    for name, m in [*result["per_class"].items(), ("overall", result["overall"])]:
        cells = []
        for k in keys:
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
    figures = _figures(result, pred, truth, int(p["overlays"]))
    metrics = {k: result["overall"][k] for k in keys if k != "mean_matched_iou"}
    for name, m in result["per_class"].items():
        for k in ("ap", "ap50", "ap75", "f1", "precision", "recall"):
            metrics[f"{k}_{name}"] = m[k]
    o = result["overall"]
    return StageResult(
        result,
        metrics={k: float(v) for k, v in metrics.items() if not math.isnan(v)},
        artifacts=[out_json, out_json.with_suffix(".csv"), *save_figures(out_json, figures)],
        summary=f"AP {o['ap']:.3f}, AP50 {o['ap50']:.3f}, F1@{result['f1_iou']:g} "
        f"{o['f1']:.3f} ({o['n_matched']} of {o['n_true']} true matched, "
        f"{o['n_pred']} predicted): {out_json}",
    )


def _figures(result: dict[str, Any], pred: Any, truth: Any, overlays: int) -> dict[str, Any]:
    figs = {"ap_f1.png": instance_plots.ap_f1_bars(result)}
    n = int(pred["instances"].shape[0])
    picks = sorted({int(round(v)) for v in np.linspace(0, n - 1, min(overlays, n))}) if n else []
    images = truth["images"] if "images" in truth else None
    names = dict(truth.attrs).get("image_names") or []
    for i in picks:
        img = None if images is None else np.asarray(images[i])
        title = names[i] if i < len(names) else f"image {i}"
        figs[f"outlines_{i:04d}.png"] = instance_plots.outline_overlay(
            img, np.asarray(truth["instances"][i]), np.asarray(pred["instances"][i]), title
        )
    return figs
