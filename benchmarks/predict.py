"""Benchmark of `dlpipe predict`: CLI wall time against MONAI and the whole-slice floor.

Default protocol (issue 16), each method a fresh process timed from outside (Python start-up,
imports, model load, volume read, label write included), every one with the machine's
default thread count, the minimum of ``--repeats`` interleaved repeats:

- 2D: the demo's U-Net as the shipped config.yaml trains it (f16-d4: ``dlpipe synth``,
  ``dlpipe tile``, ``dlpipe cvat``, ``dlpipe train``), on a 64×512×512 demo scan
  (``dlpipe synth --shape 64 512 512`` + ``dlpipe tile``);
- 3D: a 3D U-Net (f8-d3, patch 32×64×64, trained briefly on the demo's placed annotations:
  speed, not accuracy) on a 128×256×256 demo scan;
- methods: ``dlpipe predict MODEL VOL --out OUT`` (defaults; MLflow off unless
  ``--tracking``); MONAI's ``sliding_window_inference`` (roi = the card's patch, overlap
  0.25, Gaussian, batch 8, softmax, argmax); the floor: every z-slice (3D: the whole
  volume) through the network once, whole, batch 2 slices, channels-last as dlpipe;
- reported: seconds, Mvoxel/s, throughput vs MONAI, wall time vs the floor, and the % of
  labels differing from the floor's; the load average before and after.

    PYTHONPATH=src python benchmarks/predict.py [--work DIR] [--repeats 3] [--no-3d] \
        [--tracking]

The work folder (default $TMPDIR/dlpipe_bench_predict, reused: models and scans are made once)
holds the models, scans and outputs. The older comparisons stay as options:
``--synthetic`` (a random 3D U-Net on noise, 1 torch thread for all, in-process) and
``--memory`` (the memory budget run in a fresh process):

    PYTHONPATH=src python benchmarks/predict.py --synthetic --shape 64 192 192 \
        --block 64 96 96 [--halo 8 8 8]
    PYTHONPATH=src python benchmarks/predict.py --memory --memory-shape 80 2048 2048 \
        --budget-mb 640
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import zarr

from dlpipe.models import UNet
from dlpipe.prediction import load_model, peak_rss_mb, predict_volume


def _volume(path: Path, shape, dtype=np.uint8, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    root = zarr.open_group(path, mode="w")
    arr = root.create_array("0", shape=shape, chunks=(16, 128, 128), dtype=dtype)
    for z in range(0, shape[0], 16):
        block = rng.normal(100, 30, size=(min(16, shape[0] - z), *shape[1:]))
        arr[z : z + 16] = np.clip(block, 0, 255).astype(dtype)
    root.attrs.update(
        {
            "ome": {
                "version": "0.5",
                "multiscales": [
                    {
                        "axes": [{"name": a, "type": "space"} for a in "zyx"],
                        "datasets": [{"path": "0"}],
                    }
                ],
            },
            "dlpipe": {"statistics": {"p0_1": 10.0, "p99_9": 200.0}, "complete": True},
        }
    )
    (path / ".dlpipe_complete").write_text("")
    return path


def _model(path: Path, mode: str, window, base: int, depth: int) -> Path:
    torch.manual_seed(0)
    dim = 3 if mode == "3d" else 2
    arch = {
        "dim": dim,
        "in_channels": 1,
        "n_classes": 3,
        "depth": depth,
        "base_filters": base,
        "norm": "batch",
    }
    net = UNet(**arch)
    path.mkdir(parents=True, exist_ok=True)
    torch.save(net.state_dict(), path / "weights.pt")
    (path / "card.json").write_text(
        json.dumps(
            {
                "model": "unet",
                "architecture": arch,
                "input": mode,
                "context_slices": 1,
                "patch_size": list(window),
                "classes": ["a", "b", "c"],
                "normalisation": {"p0_1": 10.0, "p99_9": 200.0},
            }
        )
    )
    return path


def _monai(model_dir: Path, vol: Path, window, batch: int) -> float | None:
    try:
        from monai.inferers import sliding_window_inference
    except ImportError:
        print("MONAI not installed: skipping the MONAI comparison (pip install monai)")
        return None
    m = load_model(model_dir)
    t0 = time.perf_counter()
    x = zarr.open_group(vol, mode="r")["0"][:].astype(np.float32)
    x = torch.from_numpy((x - 10.0) / 190.0)[None, None]
    with torch.no_grad():
        p = sliding_window_inference(
            x,
            tuple(window),
            batch,
            lambda t: torch.softmax(m.net(t), dim=1),
            overlap=0.25,
            mode="gaussian",
            sigma_scale=0.125,
        )
    labels = torch.argmax(p, dim=1).to(torch.uint8).numpy()
    seconds = time.perf_counter() - t0
    assert labels.shape[1:] == x.shape[2:]
    return seconds


def _floor(model_dir: Path, windows: int, window, batch: int) -> float:
    m = load_model(model_dir)
    x = torch.randn(batch, 1, *window)
    t0 = time.perf_counter()
    with torch.no_grad():
        for i in range(0, windows, batch):
            m.net(x[: min(batch, windows - i)])
    return time.perf_counter() - t0


def throughput(shape, block, window, batch: int, repeats: int = 3, halo=None) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        vol = _volume(tmp / "vol.zarr", shape)
        model = _model(tmp / "model", "3d", window, base=8, depth=3)
        n = int(np.prod(shape))
        # warm-up: thread pools and oneDNN kernels for these shapes, before any timing
        warm = _volume(tmp / "warm.zarr", tuple(window))
        predict_volume(
            model,
            warm,
            tmp / "warm_pred.zarr",
            {"block": list(window), "batch_size": batch, "torch_threads": 1, "window": "patch"},
            progress=False,
        )
        _floor(model, batch, window, batch)
        t_dl, t_monai, t_floor = [], [], []
        for rep in range(repeats):  # interleaved; the minimum of each (shared, noisy CPU)
            s = predict_volume(
                model,
                vol,
                tmp / f"pred{rep}.zarr",
                {
                    "block": list(block),
                    "batch_size": batch,
                    "overlap": 0.25,
                    "torch_threads": 1,
                    "halo": halo,
                    "window": "patch",
                },
                progress=False,
            )
            t_dl.append(s["seconds"])
            t_monai.append(_monai(model, vol, window, batch))
            t_floor.append(_floor(model, int(s["windows"]), window, batch))
        print(
            "all times (s): dlpipe",
            [round(t, 2) for t in t_dl],
            "MONAI",
            [round(t, 2) for t in t_monai if t is not None],
            "floor",
            [round(t, 2) for t in t_floor],
        )
        t_dl, t_floor = min(t_dl), min(t_floor)
        t_monai = None if t_monai[0] is None else min(t_monai)
        m = load_model(model)
        monai_windows = int(
            np.prod(
                [
                    len(range(0, max(a - w, 0) + 1, int(w * 0.75)))
                    + (1 if (a - w) % int(w * 0.75) else 0)
                    for a, w in zip(shape, window, strict=True)
                ]
            )
        )
        print(
            f"volume {shape} ({n / 1e6:.2f} Mvoxel), 3D U-Net depth 3 base 8 "
            f"({sum(p.numel() for p in m.net.parameters())} parameters), window {window}, "
            f"batch {batch}, overlap 0.25, Gaussian sigma 0.125; dlpipe block {block}, "
            f"halo {list(halo) if halo else [-(-w // 8) for w in window]} (mirrored at the "
            f"border); torch threads {torch.get_num_threads()}"
        )
        print(
            f"dlpipe : {t_dl:8.2f} s  {n / t_dl / 1e6:7.3f} Mvoxel/s  "
            f"({int(s['windows'])} windows, {s['blocks']} blocks)"
        )
        if t_monai is not None:
            print(
                f"MONAI  : {t_monai:8.2f} s  {n / t_monai / 1e6:7.3f} Mvoxel/s  "
                f"(~{monai_windows} windows)"
            )
            print(f"throughput dlpipe / MONAI = {t_monai / t_dl:.2f}x")
        print(
            f"floor  : {t_floor:8.2f} s  (forward passes alone over dlpipe's "
            f"{int(s['windows'])} windows)"
        )
        print(f"dlpipe time / floor = {t_dl / t_floor:.2f}x")


def memory_child(tmp: Path, shape, budget_mb: float, block) -> None:
    """Predict the volume the parent wrote (so that writing it does not count).

    The budget is the process's total peak RSS: VmHWM of this fresh process (imports,
    model, everything), cross-checked with ``resource.getrusage`` (ru_maxrss).
    """
    import resource

    vol, model = tmp / "vol.zarr", tmp / "model"
    s = predict_volume(
        model,
        vol,
        tmp / "pred.zarr",
        {
            "block": list(block),
            "memory_budget_mb": budget_mb,
            "threads": 2,
            "batch_size": 8,
            "torch_threads": 1,
            "window": "patch",
        },
        progress=False,
    )
    peak = peak_rss_mb()
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    vol_mb = np.prod(shape) * 4 / 2**20
    print(
        json.dumps(
            {
                "volume_mb": vol_mb,
                "budget_mb": budget_mb,
                "peak_mb": peak,
                "ru_maxrss_mb": maxrss,
                "seconds": s["seconds"],
                "voxels_per_s": s["voxels_per_s"],
                "workers": s["workers"],
                "estimated_block_mb": s["estimated_block_mb"],
                "blocks": s["blocks"],
            }
        )
    )


ROOT = Path(__file__).resolve().parents[1]
OFF = '{"tracking": {"enabled": false}}'


CPU: dict[str, list[float]] = {}
"""CPU seconds (user + system) of each method's processes, per repeat: far less sensitive
to other jobs on a shared machine than the wall time."""


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def _dlpipe(*args: str, cwd: Path, config: bool = True, tracking: bool = False) -> float:
    """Run ``dlpipe ARGS`` in a fresh process; its wall time (start-up included)."""
    cmd = [sys.executable, "-m", "dlpipe"]
    if config:
        cmd += ["-c", str(ROOT / "config.yaml")]
    if not tracking:
        cmd += ["--config-json", OFF]
    t0 = time.perf_counter()
    r = subprocess.run([*cmd, *args], cwd=cwd, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if r.returncode:
        sys.exit(f"dlpipe {' '.join(args)} failed ({r.returncode}):\n{r.stderr[-3000:]}")
    return seconds


def _scan(work: Path, name: str, shape) -> Path:
    """A demo scan of ``shape`` (``dlpipe synth --shape`` + ``dlpipe tile``), made once."""
    vol = work / name / "volume.zarr"
    if not (vol / ".dlpipe_complete").is_file():
        shutil.rmtree(work / name, ignore_errors=True)
        _dlpipe("synth", str(work / name), "--shape", *map(str, shape), cwd=work)
        _dlpipe("tile", str(work / name / "volume.tif"), "--out", str(vol), cwd=work)
    return vol


def _models(work: Path, want3d: bool) -> dict[str, Path]:
    """The demo's 2D U-Net as config.yaml trains it, and a briefly trained 3D U-Net."""
    demo = work / "demo"
    if not (demo / "volume.zarr" / ".dlpipe_complete").is_file():
        shutil.rmtree(demo, ignore_errors=True)
        _dlpipe("synth", str(demo), cwd=work)
        _dlpipe("tile", str(demo / "volume.tif"), "--out", str(demo / "volume.zarr"), cwd=work)
    models = {"2d": work / "model2d", "3d": work / "model3d"}
    if not (models["2d"] / "card.json").is_file():
        if not (demo / "cvat.zarr").exists():
            _dlpipe(
                "cvat",
                str(demo / "cvat" / "annotations.xml"),
                "--images",
                str(demo / "cvat" / "images"),
                "--out",
                str(demo / "cvat.zarr"),
                cwd=work,
            )
        _dlpipe(
            "train",
            "--model",
            "unet",
            str(demo / "cvat.zarr"),
            "--out",
            str(models["2d"]),
            "--overwrite",
            cwd=work,
        )
    if want3d and not (models["3d"] / "card.json").is_file():
        _dlpipe(
            "cvat",
            str(demo / "cvat" / "annotations.xml"),
            "--images",
            str(demo / "cvat" / "images"),
            "--volume",
            str(demo / "volume.zarr"),
            "--overwrite",
            cwd=work,
        )
        _dlpipe(
            "train",
            "--model",
            "unet",
            "--input",
            "3d",
            str(demo / "volume.zarr"),
            "--out",
            str(models["3d"]),
            "--overwrite",
            "--epochs",
            "1",
            "--set",
            "steps_per_epoch=10",
            "--set",
            "batch_size=1",
            "--set",
            "patch_size=[32, 64, 64]",
            "--set",
            'architecture={"base_filters": 8, "depth": 3}',
            cwd=work,
        )
    return models


CHILD = r"""
import sys, time
import numpy as np, torch, zarr
from dlpipe.prediction import load_model
method, model_dir, vol, out = sys.argv[1:5]
m = load_model(model_dir)
root = zarr.open_group(vol, mode="r")
norm = m.card["normalisation"]
x = root["0"][:].astype(np.float32)
x -= np.float32(norm["p0_1"]); x /= np.float32(norm["p99_9"] - norm["p0_1"])
labels = np.empty(x.shape, dtype=np.uint8)
net = m.net
two = m.mode != "3d"
with torch.inference_mode():
    if method == "monai":
        from monai.inferers import sliding_window_inference
        if two:  # every z-slice an image of the batch
            t = torch.from_numpy(x)[:, None]
        else:
            t = torch.from_numpy(x)[None, None]
        p = sliding_window_inference(
            t, tuple(m.window), 8, lambda w: torch.softmax(net(w), dim=1), overlap=0.25,
            mode="gaussian", sigma_scale=0.125)
        labels[:] = (torch.argmax(p, dim=1).numpy() if two else torch.argmax(p[0], dim=0).numpy())
    elif two:  # the floor: whole slices, batch 2, channels-last (as dlpipe)
        net = net.to(memory_format=torch.channels_last)
        for z in range(0, x.shape[0], 2):
            t = torch.from_numpy(x[z : z + 2])[:, None]
            t = t.contiguous(memory_format=torch.channels_last)
            labels[z : z + 2] = torch.argmax(net(t), dim=1).numpy()
    else:  # the floor: the whole volume as one window
        labels[:] = torch.argmax(net(torch.from_numpy(x)[None, None])[0], dim=0).numpy()
zarr.open_group(out, mode="w").create_array("labels", data=labels, chunks=root["0"].chunks)
print(torch.get_num_threads())
"""


def _child(method: str, model: Path, vol: Path, out: Path) -> tuple[float, int]:
    env = os.environ | {"PYTHONPATH": str(ROOT / "src")}
    t0 = time.perf_counter()
    r = subprocess.run(
        [sys.executable, "-c", CHILD, method, str(model), str(vol), str(out)],
        capture_output=True,
        text=True,
        env=env,
    )
    seconds = time.perf_counter() - t0
    if r.returncode:
        sys.exit(f"{method} failed:\n{r.stderr[-3000:]}")
    return seconds, int(r.stdout.strip().splitlines()[-1])


def _differ(a: Path, b: Path) -> float:
    x, y = zarr.open_array(a, mode="r")[:], zarr.open_array(b, mode="r")[:]
    return float((x != y).mean() * 100)


def protocol(work: Path, repeats: int, do3d: bool, tracking: bool) -> list[dict]:
    work.mkdir(parents=True, exist_ok=True)
    models = _models(work, do3d)
    cases = [("2d", _scan(work, "scan2d", (64, 512, 512)))]
    if do3d:
        cases.append(("3d", _scan(work, "scan3d", (128, 256, 256))))
    rows = []
    for mode, vol in cases:
        model = models[mode]
        card = json.loads((model / "card.json").read_text())
        arch = card["architecture"]
        shape = zarr.open_group(vol, mode="r")["0"].shape
        runs = work / f"runs_{mode}"
        shutil.rmtree(runs, ignore_errors=True)
        runs.mkdir()
        load0 = os.getloadavg()
        times: dict[str, list[float]] = {"dlpipe": [], "MONAI": [], "floor": []}
        if tracking:
            times["dlpipe+MLflow"] = []
        threads = {}
        cpu: dict[str, list[float]] = {k: [] for k in times}
        for rep in range(repeats):  # interleaved: each method once per round
            pred = runs / f"pred{rep}.zarr"
            c0 = _children_cpu()
            times["dlpipe"].append(
                _dlpipe(
                    "predict",
                    str(model),
                    str(vol),
                    "--out",
                    str(pred),
                    "--overwrite",
                    cwd=runs,
                    config=False,
                )
            )
            cpu["dlpipe"].append(_children_cpu() - c0)
            if tracking:
                c0 = _children_cpu()
                times["dlpipe+MLflow"].append(
                    _dlpipe(
                        "predict",
                        str(model),
                        str(vol),
                        "--out",
                        str(runs / "t.zarr"),
                        "--overwrite",
                        cwd=runs,
                        config=False,
                        tracking=True,
                    )
                )
                cpu["dlpipe+MLflow"].append(_children_cpu() - c0)
            for method, name in (("monai", "MONAI"), ("floor", "floor")):
                c0 = _children_cpu()
                sec, threads[name] = _child(method, model, vol, runs / f"{method}.zarr")
                times[name].append(sec)
                cpu[name].append(_children_cpu() - c0)
            print(
                f"{mode} round {rep + 1}: "
                + ", ".join(f"{k} {v[-1]:.2f} s" for k, v in times.items()),
                flush=True,
            )
        load1 = os.getloadavg()
        pred = runs / "pred0.zarr"
        root = zarr.open_group(pred, mode="r")
        layout = root.attrs["dlpipe"]["prediction"]["layout"]
        floor = runs / "floor.zarr" / "labels"
        diff = {
            "dlpipe": _differ(pred / "labels" / "phases" / "0", floor),
            "MONAI": _differ(runs / "monai.zarr" / "labels", floor),
        }
        best = {k: min(v) for k, v in times.items()}
        n = float(np.prod(shape))
        row = {
            "mode": mode,
            "shape": list(shape),
            "model": f"f{arch.get('base_filters')}-d{arch.get('depth')}",
            "parameters": sum(p.numel() for p in load_model(model).net.parameters()),
            "patch": card.get("patch_size"),
            "layout": layout,
            "times": times,
            "cpu_seconds": cpu,
            "best": best,
            "mvoxel_per_s": {k: n / v / 1e6 for k, v in best.items()},
            "throughput_vs_monai": best["MONAI"] / best["dlpipe"],
            "wall_vs_floor": best["dlpipe"] / best["floor"],
            "cpu_vs_monai": min(cpu["MONAI"]) / min(cpu["dlpipe"]),
            "cpu_vs_floor": min(cpu["dlpipe"]) / min(cpu["floor"]),
            "labels_differing_from_floor_pct": diff,
            "torch_threads_children": threads,
            "load_average_before_after": [round(load0[0], 2), round(load1[0], 2)],
            "cores": len(os.sched_getaffinity(0)),
        }
        rows.append(row)
        _print_row(row)
    (work / "results.json").write_text(json.dumps(rows, indent=2))
    return rows


def _print_row(r: dict) -> None:
    print(
        f"\n{r['mode'].upper()}: {r['model']} U-Net ({r['parameters']} parameters, patch "
        f"{r['patch']}), volume {r['shape']} ({np.prod(r['shape']) / 1e6:.1f} Mvoxel); dlpipe "
        f"block {r['layout']['block']}, halo {r['layout']['halo']}, window "
        f"{r['layout']['window']}; {r['cores']} cores; load average "
        f"{r['load_average_before_after']}"
    )
    print(
        "| method | min wall time | all wall times | Mvoxel/s | min CPU time | "
        "labels differing from the floor's |"
    )
    print("|---|---|---|---|---|---|")
    for k, v in r["times"].items():
        d = r["labels_differing_from_floor_pct"].get(k)
        print(
            f"| {k} | {min(v):.2f} s | {', '.join(f'{t:.2f}' for t in v)} | "
            f"{r['mvoxel_per_s'][k]:.2f} | {min(r['cpu_seconds'][k]):.1f} s | "
            f"{'—' if d is None else f'{d:.3f} %'} |"
        )
    print(
        f"throughput dlpipe / MONAI = {r['throughput_vs_monai']:.2f}x; "
        f"wall time dlpipe / floor = {r['wall_vs_floor']:.2f}x "
        f"(CPU time: MONAI / dlpipe = {r['cpu_vs_monai']:.2f}x, dlpipe / floor = "
        f"{r['cpu_vs_floor']:.2f}x)"
    )


BASELINE = """
import json, sys
def rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024)
steps = {"python": rss()}
import numpy; steps["+ numpy"] = rss()
import torch; steps["+ torch"] = rss()
import zarr; steps["+ zarr"] = rss()
import dask, dask.threaded; steps["+ dask"] = rss()
import dlpipe.prediction; steps["+ dlpipe.prediction"] = rss()
steps["torchvision imported"] = "torchvision" in sys.modules
import mlflow; steps["+ mlflow (CLI with tracking on)"] = rss()
print(json.dumps(steps))
"""
"""Resident memory (VmRSS, MiB) after each import a prediction process needs."""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--work", type=Path, default=Path(tempfile.gettempdir()) / "dlpipe_bench_predict"
    )
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--no-3d", action="store_true", help="only the 2D protocol")
    ap.add_argument("--tracking", action="store_true", help="also time the CLI with MLflow on")
    ap.add_argument("--synthetic", action="store_true", help="the older in-process comparison")
    ap.add_argument("--shape", type=int, nargs=3, default=[64, 192, 192])
    ap.add_argument("--block", type=int, nargs=3, default=[64, 96, 96])
    ap.add_argument("--window", type=int, nargs=3, default=[32, 32, 32])
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--memory", action="store_true", help="the memory run")
    ap.add_argument("--halo", type=int, nargs=3, default=None, help="default: window / 4")
    ap.add_argument("--memory-shape", type=int, nargs=3, default=[80, 2048, 2048])
    ap.add_argument(
        "--budget-mb",
        type=float,
        default=640.0,
        help="memory budget = total peak RSS of the predicting process",
    )
    ap.add_argument("--memory-block", type=int, nargs=3, default=[4, 256, 256])
    ap.add_argument("--no-throughput", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--memory-child", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--write-child", type=Path, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.write_child:
        _volume(a.write_child / "vol.zarr", a.memory_shape, dtype=np.float32)
        _model(a.write_child / "model", "2d", (64, 64), base=4, depth=2)
        return
    if a.memory_child:
        torch.set_num_threads(1)
        memory_child(a.memory_child, a.memory_shape, a.budget_mb, a.memory_block)
        return
    if a.synthetic:
        torch.set_num_threads(1)  # same for all three; 2 shared cores make 2 threads erratic
        throughput(a.shape, a.block, a.window, a.batch, halo=a.halo)
    elif not (a.memory or a.no_throughput):
        protocol(a.work, a.repeats, not a.no_3d, a.tracking)
    if not a.memory:
        return
    r = subprocess.run([sys.executable, "-c", BASELINE], capture_output=True, text=True, check=True)
    print("baseline RSS (VmRSS MiB after each import):", r.stdout.strip())
    small = [max(1, a.memory_shape[0] // 8), *a.memory_shape[1:]]
    for shape in (small, a.memory_shape):  # same working set for 1/8 of the volume
        with tempfile.TemporaryDirectory() as tmp:
            # written by another process: this one stays small, so that the child's
            # ru_maxrss (which starts from its parent's at fork) is its own
            subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--write-child",
                    tmp,
                    "--memory-shape",
                    *map(str, shape),
                ],
                check=True,
            )
            r = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--memory-child",
                    tmp,
                    "--memory-shape",
                    *map(str, shape),
                    "--memory-block",
                    *map(str, a.memory_block),
                    "--budget-mb",
                    str(a.budget_mb),
                ],
                capture_output=True,
                text=True,
                check=True,
            )
        m = json.loads(r.stdout.strip().splitlines()[-1])
        print(
            f"memory run: float32 volume {shape} = {m['volume_mb']:.0f} MiB, "
            f"budget {m['budget_mb']:.0f} MiB (volume/budget = "
            f"{m['volume_mb'] / m['budget_mb']:.2f}x): total peak RSS {m['peak_mb']:.0f} MiB "
            f"(VmHWM; ru_maxrss {m['ru_maxrss_mb']:.0f} MiB), {m['blocks']} blocks, "
            f"{m['workers']} at once (estimate {m['estimated_block_mb']:.0f} MiB each), "
            f"{m['seconds']:.0f} s, {m['voxels_per_s'] / 1e6:.2f} Mvoxel/s -> "
            f"{'UNDER' if m['peak_mb'] < m['budget_mb'] else 'OVER'} budget "
            f"(peak/budget = {m['peak_mb'] / m['budget_mb']:.2f})"
        )


if __name__ == "__main__":
    main()
