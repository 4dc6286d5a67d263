"""Benchmark how every stage's cost grows with the scan: seconds per Mvoxel and peak RSS.

For each ``--sizes`` N (default 128, 256, 512 and 1024, i.e. 2 Mvoxel to 1 Gvoxel), a uint16
N³ demo scan is made with ``dlpipe synth`` and every stage runs on it as its own ``dlpipe``
process under ``/usr/bin/time`` (wall seconds, user + system CPU seconds, peak RSS):

- ``synth``: the scan, its labels and a 10-image CVAT export;
- ``tile``: ``volume.tif`` and ``labels.tif`` into ``volume.zarr``;
- ``cvat``: a CVAT export of ``--images`` (2000) N² images (the 10 annotated slices repeated,
  the image files hard links) into a dataset Zarr; its voxels are images x N²;
- ``train``: a 2D U-Net (the demo's settings: 128² patches, batch 2, one torch thread) for
  ``--train-steps`` steps (one epoch) on that 2000-image dataset; reported as steps per
  second of the epoch (its seconds in ``metrics.csv``, validation included, start-up not);
- ``predict``: that model over the whole scan, up to ``--predict-up-to`` (default 512); above
  it the row is extrapolated from the largest size measured (time per voxel constant, RSS
  the same) and marked ``extrapolated``;
- ``baseline``: multi-Otsu, trained on the annotated slices (its output feeds the next two
  at every size, so they see the same kind of label volume whatever was predicted);
- ``postprocess``: the demo's clean-up rules on the Otsu labels;
- ``evaluate``: the cleaned labels against the tiled truth.

Writes ``benchmarks/scale.json`` and ``benchmarks/scale.csv`` (one row per size and stage:
seconds, CPU seconds, s/Mvoxel, CPU s/Mvoxel, peak RSS, the 1-minute load average when it
started) and the log-log plot ``benchmarks/scale.png``. CPU seconds are the robust figure on
a shared machine; wall seconds follow the load. Each size's folder is deleted after it ran
(``--keep`` keeps them); a 1024³ size needs about 15 GB of free disk under ``--work``.

Usage::

    python benchmarks/scale.py --work /tmp/dlpipe-scale [--sizes 128 256 512 1024]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from lxml import etree

HERE = Path(__file__).resolve().parent
STAGES = ("synth", "tile", "cvat", "train", "predict", "baseline", "postprocess", "evaluate")
CONFIG = """\
tracking: {enabled: false}
synth: {dtype: uint16, annotated_slices: 10}
train: {epochs: 1, steps_per_epoch: %(steps)d, batch_size: 2, patch_size: [%(patch)d, %(patch)d],
        lr: 0.006, oversample: 0.1, torch_threads: 1}
postprocess:
  rules:
    - {phase: 2, min_size: 8, ring: {max_slices: 3, min_area: 50, min_slenderness: 8}}
    - {phase: 1, fill_holes: true, max_hole_size: 200}
"""


def timed(cmd: list[str], log: Path) -> dict[str, float]:
    """Run ``cmd`` under /usr/bin/time: wall and CPU seconds, peak RSS (MB), load at start."""
    stats = log.with_suffix(".time")
    load = os.getloadavg()[0]
    with log.open("w") as out:
        proc = subprocess.run(
            ["/usr/bin/time", "-f", "%e %U %S %M", "-o", str(stats), *cmd],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=os.environ | {"TQDM_DISABLE": "1"},
            check=False,
        )
    if proc.returncode != 0:
        tail = log.read_text().splitlines()[-5:]
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n" + "\n".join(tail))
    wall, user, system, rss_kb = stats.read_text().split()[-4:]
    return {
        "seconds": float(wall),
        "cpu_seconds": float(user) + float(system),
        "peak_rss_mb": int(rss_kb) / 1024,
        "load_1min": round(load, 2),
    }


def repeat_export(src: Path, dst: Path, count: int) -> Path:
    """A CVAT export of ``count`` images: ``src``'s images repeated, files hard-linked.

    Written as text, image by image: a tree of 2000 images of 1024² (4 million shapes) would
    take many GB here.
    """
    root = etree.parse(str(src / "annotations.xml")).getroot()
    images = root.findall("image")
    for img in images:
        root.remove(img)
    size = root.find("meta/task/size")
    if size is not None:
        size.text = str(count)
    close = "</annotations>"
    head = etree.tostring(root, encoding="unicode")
    head = head[: head.rindex(close)]
    templates = []
    for img in images:
        name = img.get("name")
        img.set("id", "@@ID@@")
        img.set("name", "@@NAME@@")
        templates.append((name, etree.tostring(img, encoding="unicode")))
    (dst / "images").mkdir(parents=True)
    with (dst / "annotations.xml").open("w", encoding="utf-8") as f:
        f.write('<?xml version="1.0" encoding="utf-8"?>\n' + head)
        for i in range(count):
            name, text = templates[i % len(templates)]
            new = f"r{i:05d}_{name}"
            os.link(src / "images" / name, dst / "images" / new)
            f.write(text.replace("@@ID@@", str(i)).replace("@@NAME@@", new))
        f.write(close + "\n")
    return dst / "annotations.xml"


def run_size(n: int, work: Path, args: argparse.Namespace) -> list[dict]:
    """Every stage on an N³ scan; one row per stage."""
    d = work / str(n)
    if "tile" in args.stages:  # a fresh folder; without tile, the earlier run's volume.zarr
        shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(d / "cvat2000", ignore_errors=True)
    cfg = d / "config.yaml"
    cfg.write_text(CONFIG % {"steps": args.train_steps, "patch": min(128, n)})

    def dl(*parts: object) -> list[str]:
        return ["dlpipe", "-c", str(cfg), *map(str, parts)]

    mvox = n**3 / 1e6
    s, vol, export = args.synth or d / "synth", d / "volume.zarr", d / "cvat2000"
    steps = {
        "synth": (dl("synth", s, "--shape", n, n, n), mvox),
        "tile": (dl("tile", s / "volume.tif", "--labels", s / "labels.tif", "--out", vol), mvox),
        "cvat": (
            dl(
                "cvat",
                export / "annotations.xml",
                "--images",
                export / "images",
                "--out",
                d / "cvat.zarr",
            ),
            args.images * n * n / 1e6,
        ),
        "train": (dl("train", "--model", "unet", d / "cvat.zarr", "--out", d / "model"), None),
        "predict": (dl("predict", d / "model", vol, "--out", d / "pred.zarr"), mvox),
        "baseline": (
            dl(
                "baseline",
                vol,
                s / "labels.tif",
                "--metadata",
                s / "metadata.json",
                "--method",
                "otsu",
                "--out",
                d / "otsu.zarr",
                "--metrics",
                d / "otsu.json",
            ),
            mvox,
        ),
        "postprocess": (dl("postprocess", d / "otsu.zarr", "--out", d / "clean.zarr"), mvox),
        "evaluate": (dl("evaluate", d / "clean.zarr", vol, "--out", d / "eval.json"), mvox),
    }
    rows = []
    for stage in STAGES:
        if stage not in args.stages:
            continue
        cmd, size_mvox = steps[stage]
        if stage == "cvat":
            repeat_export(s / "cvat", export, args.images)
        if stage == "predict" and n > args.predict_up_to:
            continue  # extrapolated in main()
        if stage == "synth" and args.synth:
            continue
        print(f"[{n}³] {stage} ...", file=sys.stderr, flush=True)
        m = timed(cmd, d / f"{stage}.log")
        row = {"size": n, "stage": stage, "mvoxel": size_mvox, "extrapolated": False}
        row |= {"source": "scale.py"} | m
        if size_mvox:
            row["s_per_mvoxel"] = m["seconds"] / size_mvox
            row["cpu_s_per_mvoxel"] = m["cpu_seconds"] / size_mvox
        if stage == "train":  # the epoch's own seconds (metrics.csv): start-up left out
            with (d / "model" / "metrics.csv").open() as f:
                epoch = float(next(csv.DictReader(f))["seconds"])
            row |= {"steps": args.train_steps, "epoch_seconds": epoch}
            row["steps_per_s"] = args.train_steps / epoch
        print(f"[{n}³] {stage}: {json.dumps(row)}", file=sys.stderr, flush=True)
        rows.append(row)
    if not args.keep:
        shutil.rmtree(d)
    return rows


def workflow_rows(bench: Path) -> list[dict]:
    """Rows from a workflow run's benchmark files (Snakemake: s, max_rss, cpu_time).

    The dataset's size comes from its synth config (``results/<dataset>/metadata.json``
    beside the benchmark folder's ``logs``); cvat counts the export's images.
    """
    root = bench.resolve().parents[2]
    meta = json.loads((root / "results" / bench.name / "metadata.json").read_text())
    n = meta["shape"][0]
    rows = []
    for tsv in sorted(bench.glob("*.tsv")):
        job = tsv.stem.split("_")[0]
        if job == "cvat":  # the dataset's own few slices, not the 2000 images of scale.py
            job = f"cvat-{len(meta['annotated_slices'])}"
        with tsv.open() as f:
            rec = list(csv.DictReader(f, delimiter="\t"))[-1]
        mvox = (len(meta["annotated_slices"]) if job.startswith("cvat") else n) * n * n / 1e6
        row = {
            "size": n,
            "stage": job,
            "mvoxel": mvox,
            "extrapolated": False,
            "source": f"workflow {tsv.name}",
            "seconds": float(rec["s"]),
            "cpu_seconds": float(rec["cpu_time"]),
            "peak_rss_mb": float(rec["max_rss"]),  # MiB, sampled over the job's processes
            "load_1min": None,
            "job_cpu_percent": float(rec["mean_load"]),
        }
        if job == "train":  # train_<model>.tsv: the model's epochs (metrics.csv) and card
            model = root / "results" / bench.name / "models" / tsv.stem.split("_", 1)[1]
            with (model / "metrics.csv").open() as f:
                epoch = sum(float(e["seconds"]) for e in csv.DictReader(f))
            card = json.loads((model / "card.json").read_text())
            steps = card["params"]["steps_per_epoch"] * card["epochs_run"]
            row |= {"steps": steps, "epoch_seconds": epoch, "steps_per_s": steps / epoch}
        elif job != "place":  # place: a few slices written into the scan
            row["s_per_mvoxel"] = row["seconds"] / mvox
            row["cpu_s_per_mvoxel"] = row["cpu_seconds"] / mvox
        rows.append(row)
    return rows


def extrapolate(rows: list[dict], sizes: list[int], limit: int) -> list[dict]:
    """Predict rows above ``limit``: the largest measured size's per-voxel cost and RSS."""
    measured = [r for r in rows if r["stage"] == "predict" and not r["extrapolated"]]
    if not measured:
        return []
    base = max(measured, key=lambda r: r["size"])
    out = []
    for n in sizes:
        if n > limit:
            mvox = n**3 / 1e6
            out.append(
                base
                | {
                    "size": n,
                    "mvoxel": mvox,
                    "extrapolated": True,
                    "seconds": base["s_per_mvoxel"] * mvox,
                    "cpu_seconds": base["cpu_s_per_mvoxel"] * mvox,
                    "load_1min": None,
                }
            )
    return out


def plot(rows: list[dict], path: Path) -> None:
    """Log-log: CPU s/Mvoxel and peak RSS against the scan's voxels, one line per stage."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.5))
    rows = _one_per_size(rows)
    for i, stage in enumerate(STAGES):
        pts = sorted((r for r in rows if r["stage"] == stage), key=lambda r: r["size"])
        if not pts:
            continue
        x = [r["size"] ** 3 / 1e6 for r in pts]
        style = {"marker": "o", "label": stage, "color": f"C{i}"}
        if "cpu_s_per_mvoxel" in pts[0]:
            ax1.plot(x, [r["cpu_s_per_mvoxel"] for r in pts], **style)
        ax2.plot(x, [r["peak_rss_mb"] for r in pts], **style)
        ext = [(xi, r) for xi, r in zip(x, pts, strict=True) if r["extrapolated"]]
        if ext:
            ax1.plot([e[0] for e in ext], [e[1]["cpu_s_per_mvoxel"] for e in ext], "x", c="k")
    ax1.set(
        xscale="log",
        yscale="log",
        xlabel="scan voxels (Mvoxel; cvat: 2000 images x N², train: steps/s not shown)",
        ylabel="CPU seconds per Mvoxel",
        title="time per voxel (x: extrapolated)",
    )
    ax2.set(
        xscale="log",
        yscale="log",
        xlabel="scan voxels (Mvoxel)",
        ylabel="peak RSS (MB)",
        title="peak resident memory",
    )
    for ax in (ax1, ax2):
        ax.grid(True, which="both", alpha=0.3)
    ax2.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def _one_per_size(rows: list[dict]) -> list[dict]:
    """One row per stage and size: scale.py's own before a workflow run's."""
    best: dict[tuple[str, int], dict] = {}
    for r in rows:
        key = (r["stage"], r["size"])
        if key not in best or (
            best[key].get("source", "").startswith("workflow")
            and not r.get("source", "").startswith("workflow")
        ):
            best[key] = r
    return list(best.values())


def table(rows: list[dict]) -> str:
    """A Markdown table: one row per stage, columns per size."""
    rows = _one_per_size(rows)
    sizes = sorted({r["size"] for r in rows})
    head = "| stage | " + " | ".join(f"{n}³ CPU s/Mvox · RSS MB" for n in sizes) + " |"
    lines = [head, "|---" * (len(sizes) + 1) + "|"]
    for stage in STAGES:
        cells = []
        for n in sizes:
            r = next((r for r in rows if r["stage"] == stage and r["size"] == n), None)
            if r is None:
                cells.append("—")
            elif stage == "train":
                cells.append(f"{r['steps_per_s']:.2f} steps/s · {r['peak_rss_mb']:.0f}")
            else:
                mark = " (extrap.)" if r["extrapolated"] else ""
                cells.append(f"{r['cpu_s_per_mvoxel']:.3g} · {r['peak_rss_mb']:.0f}{mark}")
        lines.append(f"| {stage} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", type=Path, required=True, help="scratch folder (big)")
    ap.add_argument("--sizes", type=int, nargs="*", default=[128, 256, 512, 1024])
    ap.add_argument("--stages", nargs="+", default=list(STAGES), choices=STAGES)
    ap.add_argument("--images", type=int, default=2000, help="images of the cvat stage")
    ap.add_argument("--train-steps", type=int, default=30)
    ap.add_argument("--predict-up-to", type=int, default=512)
    ap.add_argument("--out", type=Path, default=HERE / "scale", help="OUT.json/.csv/.png")
    ap.add_argument("--keep", action="store_true", help="keep each size's folder")
    ap.add_argument(
        "--synth", type=Path, help="an existing `dlpipe synth` folder (one size) instead of synth"
    )
    ap.add_argument(
        "--workflow",
        type=Path,
        nargs="*",
        default=[],
        metavar="BENCH_DIR",
        help="Snakemake benchmark folders (logs/benchmarks/<dataset>) of a synth dataset: their "
        "jobs join the table as rows at the dataset's size, source 'workflow'",
    )
    ap.add_argument(
        "--merge", type=Path, nargs="*", default=[], help="earlier OUT.json files to join"
    )
    args = ap.parse_args(argv)
    if "predict" in args.stages and "train" not in args.stages:
        ap.error("predict needs the train stage's model")
    if args.synth and len(args.sizes) != 1:
        ap.error("--synth gives the scan of one size")
    args.work.mkdir(parents=True, exist_ok=True)
    rows: list[dict] = [r for m in args.merge for r in json.loads(m.read_text())["rows"]]
    rows = [r | {"source": r.get("source", "scale.py")} for r in rows if not r["extrapolated"]]
    if args.workflow:  # a workflow's rows come afresh from its benchmark files
        rows = [r for r in rows if not r["source"].startswith("workflow")]
    t0 = time.time()
    for n in sorted(args.sizes):
        rows += run_size(n, args.work, args)
        _write(rows, args, t0)
    for bench in args.workflow:
        rows += workflow_rows(bench)
    sizes = sorted({r["size"] for r in rows})
    measured = {r["size"] for r in rows if r["stage"] == "predict"}
    rows += extrapolate(rows, [n for n in sizes if n not in measured], args.predict_up_to)
    _write(rows, args, t0)
    print(table(rows))
    return 0


def _write(rows: list[dict], args: argparse.Namespace, t0: float) -> None:
    out = args.out
    meta = {
        "sizes": args.sizes,
        "images": args.images,
        "train_steps": args.train_steps,
        "predict_up_to": args.predict_up_to,
        "cpus": os.cpu_count(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t0)),
        "load_at_end": os.getloadavg(),
    }
    out.with_suffix(".json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1) + "\n")
    keys = sorted({k for r in rows for k in r}, key=lambda k: (k not in ("size", "stage"), k))
    with out.with_suffix(".csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        w.writerows(rows)
    plot(rows, out.with_suffix(".png"))


if __name__ == "__main__":
    sys.exit(main())
