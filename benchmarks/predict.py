"""Benchmark of `dlpipe predict`: throughput against MONAI and the floor, and a memory run.

Same U-Net, same volume, same window, overlap 0.25 and Gaussian weighting (sigma 1/8 of
the window) in one run:

- dlpipe: ``predict_volume`` from VOL.zarr to PRED.zarr (reads, halos, blending, argmax,
  Zarr writes included);
- MONAI: ``monai.inferers.sliding_window_inference`` on the whole volume held in memory,
  softmax per window, Gaussian blending, argmax (skipped with a message if MONAI is absent);
- floor: the network's forward passes alone over as many windows as dlpipe ran, in the
  same batches.

The memory run (``--memory``) predicts, in a fresh process, a float32 volume at least
twice the memory budget (``--budget-mb``, the process's total peak RSS) and reports that
process's peak RSS (VmHWM, and ru_maxrss), after a breakdown of the imports' resident
memory; 1/8 of the volume is run too, to show that the peak does not follow its size.

    PYTHONPATH=src python benchmarks/predict.py [--shape 64 192 192] [--halo 4 4 4] \
        [--memory --memory-shape 80 2048 2048 --budget-mb 640] [--no-throughput]
"""

from __future__ import annotations

import argparse
import json
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
            {"block": list(window), "batch_size": batch, "torch_threads": 1},
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
    torch.set_num_threads(1)  # same for all three; 2 shared cores make 2 threads erratic
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shape", type=int, nargs=3, default=[64, 192, 192])
    ap.add_argument("--block", type=int, nargs=3, default=[64, 96, 96])
    ap.add_argument("--window", type=int, nargs=3, default=[32, 32, 32])
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--memory", action="store_true", help="also run the memory run")
    ap.add_argument("--halo", type=int, nargs=3, default=None, help="default: window / 4")
    ap.add_argument("--memory-shape", type=int, nargs=3, default=[80, 2048, 2048])
    ap.add_argument(
        "--budget-mb",
        type=float,
        default=640.0,
        help="memory budget = total peak RSS of the predicting process",
    )
    ap.add_argument("--memory-block", type=int, nargs=3, default=[4, 256, 256])
    ap.add_argument("--no-throughput", action="store_true", help="only the memory run")
    ap.add_argument("--memory-child", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--write-child", type=Path, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.write_child:
        _volume(a.write_child / "vol.zarr", a.memory_shape, dtype=np.float32)
        _model(a.write_child / "model", "2d", (64, 64), base=4, depth=2)
        return
    if a.memory_child:
        memory_child(a.memory_child, a.memory_shape, a.budget_mb, a.memory_block)
        return
    if not a.no_throughput:
        throughput(a.shape, a.block, a.window, a.batch, halo=a.halo)
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
