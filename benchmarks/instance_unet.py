"""instance-unet next to Otsu + connected components and Mask R-CNN on real instance data.

The chain runs through the CLI as a user would: ``dlpipe import`` -> ``dlpipe train --model
instance-unet`` (CPU, a fixed number of steps, one torch thread) -> ``dlpipe predict`` ->
``dlpipe evaluate --instances``. The Otsu + connected-components floor is scored in the same
run by the same metric code (``benchmarks/instances.py``'s ``classical``). Mask R-CNN's
figures are those of ``benchmarks/RESULTS.md`` (``benchmarks/instances.py``), not re-run.

* DSB2018: train on the first 5 sample ids (sorted; the last of them validates and tunes the
  watershed), F1@0.5 and AP50 on each of the other 2 (each its own dataset Zarr).
* creme: train on the 16 COCO-annotated 512 x 512 images (20 % validate), test on the
  1024 x 1024 ``test/imgs/3.png`` (truth: the 8-connected components of its mask).
* pores: ``dlpipe synth`` (a 96 x 128 x 128 demo scan) -> ``dlpipe tile``; the truth pore
  instances are either the synth's own (``pore_instances.tif`` + ``dlpipe tile --instances``,
  when that is available) or, as a stand-in, the 26-connected components of its pore phase.
  A 2D instance U-Net trains on the training slab and predicts the test slab chunked; F1@0.5
  and count error of the 3D objects of the test slab. Then a 256^3 synth scan (another
  volume) is predicted chunked: scores, time, peak RSS, and the chunked result against the
  whole-volume watershed of the same maps (objects matched at IoU 0.9).

CPU seconds of each training are the children's user + system time (``resource``), so a
busy machine does not inflate them much; wall seconds are printed too.

Usage::

    python benchmarks/instance_unet.py --out /tmp/bench-iu                 # everything
    python benchmarks/instance_unet.py --out /tmp/bench-iu --datasets dsb2018 --steps 400
    python benchmarks/instance_unet.py --out /tmp/bench-iu --reuse         # keep models
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import instances as mr  # noqa: E402  (benchmarks/instances.py: data preparation, the floor)

MASK_RCNN = {  # benchmarks/RESULTS.md, "instances (Mask R-CNN training, issue 8)"
    "dsb2018": {"f1": 0.494, "ap50": 0.376},
    "creme": {"f1": 0.110, "ap50": 0.032, "predict_seconds": 418.0},
}

TRAIN_SETS = {
    "batch_size": 8,
    "lr": 0.002,
    "schedule": "onecycle",
    "patience": 1000,
    "workers": 0,
    "torch_threads": 1,
    "val_max_patches": 16,
    "architecture.depth": 4,
    "architecture.base_filters": 16,
}


def cpu_children() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def dlpipe(out: Path, *args: object, pythonpath: str | None = None) -> float:
    """Run one CLI command; its CPU seconds."""
    config = json.dumps(
        {"results": str(out / "results"), "predict": {"device": "cpu", "torch_threads": 1}}
    )
    cmd = [sys.executable, "-m", "dlpipe", "--config-json", config, *map(str, args)]
    print("$", " ".join(cmd[2:]), flush=True)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    c0 = cpu_children()
    subprocess.run(cmd, check=True, cwd=out, env=env)
    return cpu_children() - c0


def train(out: Path, name: str, store: Path, reuse: bool, extra: dict) -> tuple[Path, dict]:
    model = out / f"{name}_iu_model"
    timing_file = out / f"{name}_iu_train_timing.json"
    if reuse and (model / "card.json").is_file():
        print(f"reusing {model}")
        return model, json.loads(timing_file.read_text()) if timing_file.is_file() else {}
    sets = []
    for k, v in (TRAIN_SETS | extra).items():
        sets += ["--set", f"{k}={json.dumps(v)}"]
    t0 = time.perf_counter()
    cpu = dlpipe(
        out, "train", "--model", "instance-unet", store, "--out", model, "--overwrite",
        "--device", "cpu", *sets,
    )  # fmt: skip
    timing = {"train_cpu_seconds": cpu, "train_wall_seconds": time.perf_counter() - t0}
    timing_file.write_text(json.dumps(timing))
    return model, timing


def predict_evaluate(out: Path, name: str, model: Path, test: Path, *sets: str) -> dict:
    pred = out / f"{name}_iu_pred.zarr"
    t0 = time.perf_counter()
    cpu = dlpipe(out, "predict", model, test, "--out", pred, "--overwrite", *sets)
    seconds = time.perf_counter() - t0
    metrics = out / f"{name}_iu_metrics.json"
    dlpipe(out, "evaluate", "--instances", pred, test, "--out", metrics, "--overwrite")
    result = json.loads(metrics.read_text())
    result["predict_seconds"], result["predict_cpu_seconds"] = seconds, cpu
    summary = json.loads((pred / ".dlpipe_complete").read_text())
    result["peak_rss_mb"] = summary.get("peak_rss_mb")
    return result


def short(r: dict) -> dict:
    o = r["overall"]
    keep = ("n_true", "n_pred", "n_matched", "precision", "recall", "f1", "ap50", "ap")
    return {k: o[k] for k in keep if k in o}


def run_dsb(out: Path, args: argparse.Namespace) -> dict:
    ids = sorted(p.name for p in mr.DSB.iterdir() if (p / "images").is_dir())
    train_zarr = out / "dsb_train.zarr"
    tests = [(out / f"dsb_test_{i}.zarr", sid) for i, sid in enumerate(ids[5:])]
    for path, chosen in ((train_zarr, ids[:5]), *((p, [s]) for p, s in tests)):
        if not (path / ".dlpipe_complete").is_file():
            dlpipe(out, "import", "dsb2018", mr.DSB, "--ids", ",".join(chosen), "--out", path,
                   "--overwrite", "--rgb")  # fmt: skip
    extra = {
        "steps_per_epoch": args.steps_per_epoch,
        "epochs": args.steps // args.steps_per_epoch,
        "patch_size": [128, 128],
        "val_fraction": args.dsb_val_fraction,
        "augment.invert": args.dsb_invert,
    }
    model, timing = train(out, "dsb", train_zarr, args.reuse, extra)
    per_image = {}
    for i, (test, sid) in enumerate(tests):
        per_image[sid] = {
            "instance_unet": predict_evaluate(out, f"dsb_{i}", model, test),
            "otsu_cc": mr.classical(test),
        }
    pooled = {
        k: mr.pooled([v[k] for v in per_image.values()]) for k in ("instance_unet", "otsu_cc")
    }
    return {
        "per_image": {
            s: {k: short(v) for k, v in d.items() if k != "x"} for s, d in per_image.items()
        },
        "pooled": {k: v["overall"] for k, v in pooled.items()},
        "mask_rcnn": MASK_RCNN["dsb2018"],
        "card_watershed": _ws(model),
        **timing,
    }


def _ws(model: Path) -> dict:
    ws = json.loads((model / "card.json").read_text())["watershed"]
    return {k: ws.get(k) for k in ("seed_threshold", "foreground_threshold", "val_f1", "tuned")}


def run_creme(out: Path, args: argparse.Namespace) -> dict:
    train_zarr = out / "creme_train.zarr"
    if not (train_zarr / ".dlpipe_complete").is_file():
        dlpipe(out, "import", "coco", mr.CREME / "fov200nm" / "clean.json", "--images",
               mr.CREME / "fov200nm" / "imgs", "--out", train_zarr, "--overwrite")  # fmt: skip
    extra = {
        "steps_per_epoch": args.steps_per_epoch,
        "epochs": args.steps // args.steps_per_epoch,
        "patch_size": [128, 128],
        "val_fraction": 0.2,
    }
    model, timing = train(out, "creme", train_zarr, args.reuse, extra)
    test = mr.creme_test_dataset(out)
    ours = predict_evaluate(out, "creme", model, test)
    scaled = {}
    for scale in args.creme_scales:
        r = predict_evaluate(
            out, f"creme_x{scale:g}", model, test, "--set", f"instance_unet.scale={scale}"
        )
        scaled[f"{scale:g}"] = short(r) | {"predict_seconds": r["predict_seconds"]}
    return {
        "instance_unet_scaled": scaled,
        "instance_unet": short(ours),
        "otsu_cc": short(mr.classical(test)),
        "mask_rcnn": MASK_RCNN["creme"],
        "predict_seconds": ours["predict_seconds"],
        "predict_cpu_seconds": ours["predict_cpu_seconds"],
        "card_watershed": _ws(model),
        **timing,
    }


def pore_volume(out: Path, shape: tuple[int, int, int], instances_from: str | None) -> Path:
    """The synth demo scan tiled, with an instance label array ``labels/instances/0``."""
    import tifffile
    import zarr
    from scipy import ndimage

    name = "x".join(map(str, shape))
    synth, vol = out / f"synth_{name}", out / f"pores_{name}.zarr"
    if (vol / ".dlpipe_complete").is_file() and (vol / "labels" / "instances").is_dir():
        return vol
    if not (synth / "volume.tif").is_file():
        dlpipe(out, "synth", synth, "--shape", *shape, "--overwrite", pythonpath=instances_from)
    dlpipe(out, "tile", synth / "volume.tif", "--labels", synth / "labels.tif", "--out", vol,
           "--overwrite")  # fmt: skip
    truth = synth / "pore_instances.tif"
    if truth.is_file():
        inst = tifffile.imread(truth).astype(np.uint32)
        how = "synth truth instances (one id per pore ellipsoid)"
    else:
        labels = tifffile.imread(synth / "labels.tif")
        inst, _ = ndimage.label(labels == 2, structure=np.ones((3, 3, 3), bool))
        inst = inst.astype(np.uint32)
        how = "stand-in: 26-connected components of the pore phase"
    g = zarr.open_group(str(vol), mode="r+")
    chunks = g["0"].chunks
    g.require_group("labels").require_group("instances").create_array(
        "0", data=inst, chunks=chunks, overwrite=True
    )
    g.attrs["dlpipe"] = dict(g.attrs["dlpipe"]) | {"instances_truth": how}
    return vol


def run_pores(out: Path, args: argparse.Namespace) -> dict:
    import zarr

    from dlpipe.evaluation.instances import evaluate_instance_images

    vol = pore_volume(out, tuple(args.pore_shape), args.synth_pythonpath)
    g = zarr.open_group(str(vol), mode="r")
    how = g.attrs["dlpipe"]["instances_truth"]
    split = g.attrs["dlpipe"]["split"]
    extra = {
        "steps_per_epoch": args.steps_per_epoch,
        "epochs": args.steps // args.steps_per_epoch,
        "patch_size": [64, 64],
        "instance_unet.class_name": "pore",
    }
    model, timing = train(out, "pores", vol, args.reuse, extra)
    pred = out / "pores_iu_pred.zarr"
    t0 = time.perf_counter()
    cpu = dlpipe(out, "predict", model, vol, "--out", pred, "--overwrite", "--set",
                 "instance_unet.slices=test")  # fmt: skip
    seconds = time.perf_counter() - t0
    p = zarr.open_group(str(pred), mode="r")
    z0, z1 = p.attrs["dlpipe"]["z"]
    pi = np.asarray(p["instances"][...])
    ti = np.asarray(g["labels/instances/0"][z0:z1])
    # objects of the slab, scored as 3D objects (one "image": the slab)
    res = evaluate_instance_images(
        [(pi, (pi > 0).astype(np.uint8), ti, (ti > 0).astype(np.uint8), None)],
        ["background", "pore"],
    )["overall"]
    n_true = len(np.unique(ti)) - 1
    n_pred = len(np.unique(pi)) - 1
    summary = json.loads((pred / ".dlpipe_complete").read_text())
    big = big_volume(out, model, tuple(args.big_shape), args.synth_pythonpath)
    return {
        "big_volume": big,
        "truth": how,
        "split": split,
        "instance_unet": {k: res[k] for k in ("n_true", "n_pred", "n_matched", "f1", "ap50")},
        "count_error": (n_pred - n_true) / max(n_true, 1),
        "predict_seconds": seconds,
        "predict_cpu_seconds": cpu,
        "predict_peak_rss_mb": summary.get("peak_rss_mb"),
        "card_watershed": _ws(model),
        **timing,
    }


def big_volume(out: Path, model: Path, shape: tuple[int, int, int], synth_from: str | None) -> dict:
    """A larger synth scan predicted chunked: scores, time, peak RSS, chunked vs whole."""
    import zarr

    from dlpipe.evaluation.instances import evaluate_instance_images, pair_iou
    from dlpipe.postprocess.watershed import seeded_watershed

    vol = pore_volume(out, shape, synth_from)
    pred = out / "pores_big_iu_pred.zarr"
    t0 = time.perf_counter()
    cpu = dlpipe(out, "predict", model, vol, "--out", pred, "--overwrite")
    seconds = time.perf_counter() - t0
    p = zarr.open_group(str(pred), mode="r")
    g = zarr.open_group(str(vol), mode="r")
    pi = np.asarray(p["instances"][...])
    ti = np.asarray(g["labels/instances/0"][...])
    res = evaluate_instance_images(
        [(pi, (pi > 0).astype(np.uint8), ti, (ti > 0).astype(np.uint8), None)],
        ["background", "pore"],
    )["overall"]
    n_true, n_pred = len(np.unique(ti)) - 1, len(np.unique(pi)) - 1
    summary = json.loads((pred / ".dlpipe_complete").read_text())
    ws = p.attrs["dlpipe"]["params"]
    whole = seeded_watershed(
        np.asarray(p["maps/foreground"][...], np.float32),
        np.asarray(p["maps/distance"][...], np.float32),
        seed_threshold=ws["seed_threshold"],
        foreground_threshold=ws["foreground_threshold"],
        min_size=ws["min_size"],
    )
    a, _, iou = pair_iou(whole, pi)
    matched = float((iou >= 0.9).any(1).sum() / max(len(a), 1))
    return {
        "shape": list(shape),
        "scores": {k: res[k] for k in ("n_true", "n_pred", "n_matched", "f1", "ap50")},
        "count_error": (n_pred - n_true) / max(n_true, 1),
        "predict_seconds": seconds,
        "predict_cpu_seconds": cpu,
        "peak_rss_mb": summary.get("peak_rss_mb"),
        "joined_across_blocks": summary.get("joined_across_blocks"),
        "whole_objects_matched_by_chunked_at_iou_0.9": matched,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("/tmp/bench-iu"))
    ap.add_argument(
        "--datasets", nargs="+", default=["dsb2018", "creme", "pores"],
        choices=["dsb2018", "creme", "pores"],
    )  # fmt: skip
    ap.add_argument("--steps", type=int, default=600, help="training steps (fixed budget)")
    ap.add_argument("--steps-per-epoch", type=int, default=50)
    ap.add_argument("--reuse", action="store_true", help="keep finished model folders")
    ap.add_argument(
        "--dsb-val-fraction",
        type=float,
        default=0.2,
        help="DSB2018 images kept to validate and tune the watershed (0: all 5 train, the "
        "configured thresholds are used)",
    )
    ap.add_argument(
        "--creme-scales",
        type=float,
        nargs="*",
        default=[3.0],
        help="also predict the creme test image zoomed by these factors (predict."
        "instance_unet.scale): its loops are ~12x smaller in area than the training ones",
    )
    ap.add_argument(
        "--dsb-invert",
        type=float,
        default=0.0,
        help="DSB2018: train.augment.invert, the probability of inverting a training patch",
    )
    ap.add_argument("--pore-shape", type=int, nargs=3, default=[96, 128, 128])
    ap.add_argument(
        "--big-shape", type=int, nargs=3, default=[256, 256, 256], help="the chunked test scan"
    )
    ap.add_argument(
        "--synth-pythonpath",
        default=None,
        help="PYTHONPATH of a dlpipe whose synth writes pore_instances.tif (else the stand-in)",
    )
    args = ap.parse_args()
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    runs = {"dsb2018": run_dsb, "creme": run_creme, "pores": run_pores}
    report = {"load_average": os.getloadavg(), "steps": args.steps}
    for name in args.datasets:
        report[name] = runs[name](out, args)
        print(json.dumps({name: report[name]}, indent=1, default=str), flush=True)
    path = out / f"report_{'_'.join(args.datasets)}.json"
    path.write_text(json.dumps(report, indent=1, default=str))
    print(f"report: {path}")


if __name__ == "__main__":
    main()
