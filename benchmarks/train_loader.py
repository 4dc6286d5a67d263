"""Training steps per second: patches read from Zarr by DataLoader workers vs tensors in memory.

Both sides run the same U-Net training steps on the same patches (same specs, same
augmentation); the only difference is where the batches come from:

* zarr:   PatchDataset reading chunks of VOL.zarr in ``--workers`` DataLoader processes,
          through the training's PatchLoader (workers and their chunk caches persist from
          round to round, as from epoch to epoch in training);
* zarr, no cache: the same with ``cache_mb=0`` (every patch read through zarr);
* zarr, new workers: the cached dataset in a new DataLoader each round (new workers and
          cold caches every epoch: the training loader before PatchLoader);
* memory: the same batches, read and augmented beforehand, held as tensors in memory.

Timed rounds (an epoch each) alternate between the three sides; the first zarr rounds
include the workers' start. Prints the median round and the whole run (start included).
``--cpu-time`` also measures CPU time (``time.process_time``, less sensitive than wall
time to other jobs on shared cores) of the
loader per batch, with and without the cache (a fresh dataset, i.e. a cold cache, like a
new worker), and of one training step, and prints the ratio step / (step + loader) that a
loader sharing the cores with the step allows. Prints steps/s (median of rounds) and the
ratios zarr / memory (target >= 0.9).

Usage::

    python benchmarks/train_loader.py --steps 60 --workers 1
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from dlpipe.config import defaults
from dlpipe.models import UNet
from dlpipe.training import (
    Augment,
    PatchDataset,
    PatchLoader,
    PatchSampler,
    make_loss,
    open_source,
    scan_labels,
    write_labelled_volume,
)


def run_steps(model, opt, loss_fn, batches) -> tuple[int, float]:
    t0 = time.perf_counter()
    n = 0
    for img, mask in batches:
        loss = loss_fn(model(img), mask)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        n += 1
    return n, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--patch", type=int, default=64)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=2, help="alternating timed rounds per side")
    ap.add_argument("--cpu-time", action="store_true", help="also the CPU-time comparison")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from dlpipe.synth import make_demo

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        meta = make_demo(work / "demo", defaults()["synth"])
        import tifffile

        volume = tifffile.imread(work / "demo" / "volume.tif")
        labels = tifffile.imread(work / "demo" / "labels.tif")
        store = write_labelled_volume(
            work / "v.zarr", volume, labels, classes=meta["phases"], chunks=(8, 64, 64)
        )
        src = open_source(store)
        _, lab = src.open()
        sampler = PatchSampler(
            scan_labels(lab, 3), src.shape, "2d", (args.patch, args.patch), 0.3, [2]
        )
        specs = sampler.epoch(args.steps * args.batch, src.train, np.random.default_rng(0))
        aug = Augment(shift=0.05, noise=0.02, contrast=0.1, gamma=1.2)
        ds = PatchDataset(src, specs, "2d", (args.patch, args.patch), 1, aug)
        ds_nocache = PatchDataset(src, specs, "2d", (args.patch, args.patch), 1, aug, cache_mb=0)
        memory = list(DataLoader(ds, batch_size=args.batch, num_workers=0))  # pre-read

        loaders = {
            name: PatchLoader(d, batch_size=args.batch, workers=args.workers)
            for name, d in (("zarr", ds), ("zarr_nocache", ds_nocache))
        }

        torch.manual_seed(0)
        model = UNet(2, 1, 3, depth=4, base_filters=16)
        opt = torch.optim.Adam(model.parameters(), 1e-3)
        loss_fn = make_loss({"ce": 1.0, "dice": 1.0}, n_classes=3)
        run_steps(model, opt, loss_fn, memory[:3])  # warm-up
        if args.cpu_time:
            cpu = {True: [], False: []}
            for cached in (True, False, True, False):
                d = PatchDataset(
                    src,
                    specs,
                    "2d",
                    (args.patch, args.patch),
                    1,
                    aug,
                    cache_mb=128 if cached else 0,
                )
                c0 = time.process_time()
                n = len(list(DataLoader(d, batch_size=args.batch, num_workers=0)))
                cpu[cached].append((time.process_time() - c0) / n * 1e3)
            c0 = time.process_time()
            n, _ = run_steps(model, opt, loss_fn, memory)
            step = (time.process_time() - c0) / n * 1e3
            for cached, name in ((True, "with"), (False, "without")):
                v = min(cpu[cached])
                print(
                    f"CPU time {name} the chunk cache: loader {v:.1f} ms per batch "
                    f"(runs {[round(c, 1) for c in cpu[cached]]}), training step {step:.0f} ms "
                    f"-> step / (step + loader) = {step / (step + v):.3f}"
                )

        def fresh() -> DataLoader:
            return DataLoader(
                ds,
                batch_size=args.batch,
                num_workers=args.workers,
                prefetch_factor=4 if args.workers else None,
            )

        sides = ("zarr", "memory", "zarr_nocache", "zarr_fresh")
        rates: dict[str, list[float]] = {k: [] for k in sides}
        totals = {k: [0, 0.0] for k in rates}
        for _ in range(args.repeats):
            for name in sides:
                if name == "memory":
                    batches = memory
                elif name == "zarr_fresh":
                    batches = fresh()
                else:
                    batches = loaders[name](specs)
                n, s = run_steps(model, opt, loss_fn, batches)
                rates[name].append(n / s)
                totals[name][0] += n
                totals[name][1] += s
    med = {k: float(np.median(v)) for k, v in rates.items()}
    whole = {k: n / s for k, (n, s) in totals.items()}
    print(
        f"volume {tuple(volume.shape)}, chunks (8, 64, 64), patch {args.patch}^2, "
        f"batch {args.batch}, {args.steps} steps x {args.repeats} rounds, "
        f"workers {args.workers}, torch threads {args.threads}"
    )
    for name in ("zarr", "zarr_nocache", "zarr_fresh", "memory"):
        print(
            f"{name:13s}: median {med[name]:.2f} steps/s, whole run {whole[name]:.2f} "
            f"(rounds {[round(r, 2) for r in rates[name]]})"
        )
    print(
        f"ratio zarr/memory: median {med['zarr'] / med['memory']:.3f}, whole run "
        f"{whole['zarr'] / whole['memory']:.3f} (target >= 0.9); without the chunk cache "
        f"{med['zarr_nocache'] / med['memory']:.3f} / "
        f"{whole['zarr_nocache'] / whole['memory']:.3f}; new workers each round "
        f"{med['zarr_fresh'] / med['memory']:.3f} / {whole['zarr_fresh'] / whole['memory']:.3f}"
    )


if __name__ == "__main__":
    main()
