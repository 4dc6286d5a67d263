"""The shipped demo's U-Net sweep against its baselines, stage by stage with the CLI.

Reproduces the workflow's chain (workflow/rules/*.smk) on the demo data: ``dlpipe synth``,
``tile``, ``cvat`` and ``place`` (the annotations into the scan); ``baseline --method rf`` and
``otsu``; for each annotated-slice count of the sweep ``train`` on the placed annotations (the
config's train section plus ``--set max_images=<n>`` and any extra ``--set``; ``--train-from
dataset``: on the CVAT dataset Zarr instead), ``predict``, ``postprocess``; ``evaluate`` of
every cleaned segmentation on the test slab. Prints the mean and per-class Jaccard of every
model and baseline (``clean_metrics.json``, as the summary reads it) and the wall and CPU
seconds of each training. Tracking is off. The data and baselines are kept in WORK and reused;
``--synth KEY=JSON`` overrides the demo scan (use a WORK of its own).

Usage::

    python benchmarks/demo_sweep.py --work /tmp/demo_sweep
    python benchmarks/demo_sweep.py --work /tmp/demo_sweep --tag lr3 --set lr=0.003
    python benchmarks/demo_sweep.py --work /tmp/ds/seed0 --synth seed=0
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import resource
import shlex
import subprocess
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
TRAIN_FROM = "volume"  # --train-from


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def _run(cmd: list[str], log: Path) -> tuple[float, float]:
    """Run one dlpipe command (output to ``log``); its wall and CPU seconds."""
    t0, c0 = time.perf_counter(), _cpu()
    with log.open("w") as fh:
        proc = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, check=False)
    if proc.returncode:
        sys.exit(f"failed ({proc.returncode}): {shlex.join(cmd)}\n  see {log}")
    return time.perf_counter() - t0, _cpu() - c0


SYNTH: dict[str, object] = {}  # synth overrides (--synth), for every command


def _dlpipe(config: Path, *args: str) -> list[str]:
    over = json.dumps({"tracking": {"enabled": False}, "synth": SYNTH})
    return ["dlpipe", "--config", str(config), "--config-json", over, *args]


def _scores(path: Path) -> dict[str, float]:
    """Mean and per-class Jaccard of a metrics.json."""
    m = json.loads(path.read_text())
    out = {"mean": float(m["mean_jaccard"])}
    out.update({k: float(v["jaccard"]) for k, v in m["per_class"].items()})
    return out


def _segment_chain(cfg: Path, seg: Path, vol: Path, logs: Path, name: str) -> dict[str, float]:
    """postprocess + evaluate of ``seg/prediction.zarr`` (cached by clean_metrics.json)."""
    metrics = seg / "clean_metrics.json"
    if not metrics.exists():
        _run(
            _dlpipe(
                cfg,
                "postprocess",
                str(seg / "prediction.zarr"),
                "--out",
                str(seg / "clean.zarr"),
                "--blobs",
                str(seg / "clean.blobs.csv"),
                "--changes",
                str(seg / "clean.changes.csv"),
                "--overwrite",
            ),
            logs / f"postprocess_{name}.log",
        )
        _run(
            _dlpipe(cfg, "evaluate", str(seg / "clean.zarr"), str(vol), "--out", str(metrics)),
            logs / f"evaluate_{name}.log",
        )
    return _scores(metrics)


def prepare(cfg: Path, work: Path) -> tuple[Path, Path]:
    """synth, tile and cvat of the demo data (kept in ``work``); VOL.zarr and the CVAT Zarr."""
    demo, logs = work / "demo", work / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    vol, cvat = demo / "volume.zarr", demo / "cvat.zarr"
    if not (demo / "metadata.json").exists():
        _run(_dlpipe(cfg, "synth", str(demo), "--overwrite"), logs / "synth.log")
    if not (vol / ".dlpipe_complete").exists():
        _run(
            _dlpipe(
                cfg,
                "tile",
                str(demo / "volume.tif"),
                "--labels",
                str(demo / "labels.tif"),
                "--out",
                str(vol),
                "--overwrite",
            ),
            logs / "tile.log",
        )
    export = [str(demo / "cvat" / "annotations.xml"), "--images", str(demo / "cvat" / "images")]
    if not (cvat / ".dlpipe_complete").exists():
        _run(_dlpipe(cfg, "cvat", *export, "--out", str(cvat), "--overwrite"), logs / "cvat.log")
    placed = demo / ".placed"
    if not placed.exists():  # the workflow's place rule: the annotations into the scan
        _run(_dlpipe(cfg, "cvat", *export, "--volume", str(vol), "--overwrite"), logs / "place.log")
        placed.touch()
    return vol, cvat


def baselines(cfg: Path, work: Path, vol: Path) -> dict[str, dict[str, float]]:
    """rf and otsu baselines, post-processed and evaluated like the workflow's."""
    demo, logs, out = work / "demo", work / "logs", {}
    for method in ("rf", "otsu"):
        seg = work / "baselines" / method
        if not (seg / "prediction.zarr" / ".dlpipe_complete").exists():
            seg.mkdir(parents=True, exist_ok=True)
            _run(
                _dlpipe(
                    cfg,
                    "baseline",
                    str(vol),
                    str(demo / "labels.tif"),
                    "--method",
                    method,
                    "--metadata",
                    str(demo / "metadata.json"),
                    "--out",
                    str(seg / "prediction.zarr"),
                    "--metrics",
                    str(seg / "metrics.json"),
                    "--overwrite",
                ),
                logs / f"baseline_{method}.log",
            )
        out[method] = _segment_chain(cfg, seg, vol, logs, method)
    return out


def unet(
    cfg: Path, work: Path, vol: Path, cvat: Path, tag: str, slices: int, sets: list[str]
) -> dict[str, float]:
    """Train, predict, postprocess and evaluate one U-Net of the sweep; scores and seconds."""
    logs = work / "logs"
    name = f"{tag}-s{slices}"
    model, seg = work / "models" / name, work / "unet" / name
    over = [f"max_images={slices}", *sets]
    store = cvat
    if TRAIN_FROM == "volume":  # the workflow's default (workflow/rules/datasets.smk)
        store, over = vol, [*over, 'labels="annotations"']
    args = [a for s in over for a in ("--set", s)] + ["--overwrite"]
    wall = cpu = float("nan")
    if not (model / "card.json").exists():
        wall, cpu = _run(
            _dlpipe(cfg, "train", "--model", "unet", str(store), "--out", str(model), *args),
            logs / f"train_{name}.log",
        )
        (model / "timing.json").write_text(json.dumps({"wall_s": wall, "cpu_s": cpu}))
    else:
        timing = model / "timing.json"
        if timing.exists():
            t = json.loads(timing.read_text())
            wall, cpu = t["wall_s"], t["cpu_s"]
    if not (seg / "prediction.zarr" / ".dlpipe_complete").exists():
        seg.mkdir(parents=True, exist_ok=True)
        _run(
            _dlpipe(
                cfg,
                "predict",
                str(model),
                str(vol),
                "--out",
                str(seg / "prediction.zarr"),
                "--overwrite",
            ),
            logs / f"predict_{name}.log",
        )
    scores = _segment_chain(cfg, seg, vol, logs, name)
    card = json.loads((model / "card.json").read_text())
    return {
        **scores,
        "train_wall_s": wall,
        "train_cpu_s": cpu,
        "best_epoch": card.get("best_epoch"),
        "val_mean_jaccard": card.get("val_mean_jaccard"),
    }


def table(rows: dict[str, dict[str, float]], classes: list[str]) -> str:
    """Markdown table of the rows (mean, per class, training seconds)."""
    head = ["model", "mean J", *classes, "train wall s", "train CPU s"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, r in rows.items():
        cells = [name, f"{r['mean']:.4f}", *(f"{r[c]:.4f}" for c in classes)]
        for key in ("train_wall_s", "train_cpu_s"):
            v = r.get(key)
            cells.append("" if v is None or v != v else f"{v:.0f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=Path("/tmp/demo_sweep"), help="work folder")
    ap.add_argument("--config", type=Path, default=ROOT / "config.yaml", help="config file")
    ap.add_argument("--tag", default="unet", help="name prefix of this run's models")
    ap.add_argument("--set", action="append", default=[], help="extra train KEY=JSON")
    ap.add_argument("--slices", type=int, nargs="*", help="sweep (default: the config's)")
    ap.add_argument("--json", type=Path, help="also write the rows here")
    ap.add_argument("--synth", action="append", default=[], help="synth KEY=JSON override")
    ap.add_argument(
        "--train-from",
        choices=["volume", "dataset"],
        default="volume",
        help="the placed annotations (the workflow's default) or the CVAT dataset Zarr",
    )
    args = ap.parse_args()
    global TRAIN_FROM
    TRAIN_FROM = args.train_from
    for item in args.synth:
        key, _, value = item.partition("=")
        SYNTH[key] = json.loads(value)
    os.environ.setdefault("PYTHONPATH", str(ROOT / "src"))
    cfg = args.config.resolve()
    conf = yaml.safe_load(cfg.read_text()) or {}
    slices = args.slices or conf.get("sweep", {}).get("annotated_slices") or [2, 4, 8]
    work = args.work.resolve()
    t0 = time.perf_counter()
    vol, cvat = prepare(cfg, work)
    base = baselines(cfg, work, vol)
    rows: dict[str, dict[str, float]] = {}
    for n in slices:
        rows[f"{args.tag}-s{n}"] = unet(cfg, work, vol, cvat, args.tag, n, args.set)
        print(f"{args.tag}-s{n}: mean Jaccard {rows[f'{args.tag}-s{n}']['mean']:.4f}", flush=True)
    rows.update(base)
    classes = [k for k in base["rf"] if k != "mean"]
    print(table(rows, classes))
    means = [rows[f"{args.tag}-s{n}"]["mean"] for n in slices]
    best_base = max(base["rf"]["mean"], base["otsu"]["mean"])
    print(
        f"every U-Net beats rf and otsu: {all(m > best_base for m in means)}; "
        f"learning curve monotone: {all(a < b for a, b in itertools.pairwise(means))}; "
        f"total wall {time.perf_counter() - t0:.0f} s"
    )
    if args.json:
        args.json.write_text(json.dumps({"sets": args.set, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
