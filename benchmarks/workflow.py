"""Wall time of the demo workflow from a clean folder, and of each stage (benchmark files).

Copies the workflow (Snakefile, workflow/, envs/, profiles, config.yaml) into a fresh folder,
runs ``snakemake --cores 8`` there, then runs it a second time (it must do nothing), and
tabulates ``benchmarks/out/*.tsv`` (seconds and peak RSS of each job) as a Markdown table.

    PYTHONPATH=src python benchmarks/workflow.py [--out /tmp/demo-run] [--cores 8]

Ratio printed: demo wall time / the issue's 10-minute budget, and sum of the job times /
wall time (the parallelism obtained).
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BUDGET_S = 600.0


def _copy_workflow(dest: Path) -> None:
    dest.mkdir(parents=True)
    for name in ("Snakefile", "config.yaml", "workflow", "envs"):
        src = ROOT / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, dest / name)
    (dest / "profiles").symlink_to("workflow/profiles")


def _bench(folder: Path) -> list[tuple[str, float, float]]:
    rows = []
    for tsv in sorted(folder.glob("*.tsv")):
        rec = list(csv.DictReader(tsv.read_text().splitlines(), delimiter="\t"))[-1]
        rss = rec.get("max_rss", "NA")
        rows.append((tsv.stem, float(rec["s"]), float(rss) if rss not in ("NA", "-") else 0.0))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("/tmp/dlpipe-demo-bench"))
    ap.add_argument("--cores", type=int, default=8)
    args = ap.parse_args()
    if args.out.exists():
        shutil.rmtree(args.out)
    _copy_workflow(args.out)
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), env.get("PYTHONPATH", "")])
    env.pop("DLPIPE_PARENT_RUN_ID", None)
    load = os.getloadavg()
    t0 = time.perf_counter()
    first = subprocess.run(["snakemake", "--cores", str(args.cores)], cwd=args.out, env=env,
                           capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    (args.out / "run.log").write_text(first.stdout + first.stderr)
    if first.returncode != 0:
        sys.exit(f"demo failed (see {args.out / 'run.log'})")
    t1 = time.perf_counter()
    second = subprocess.run(["snakemake", "--cores", str(args.cores)], cwd=args.out, env=env,
                            capture_output=True, text=True, check=False)
    again = time.perf_counter() - t1
    nothing = "Nothing to be done" in second.stdout + second.stderr
    rows = _bench(args.out / "benchmarks" / "out")
    total = sum(r[1] for r in rows)
    print(f"load average before: {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}; "
          f"load average after: {' '.join(f'{v:.1f}' for v in os.getloadavg())}")
    print(f"demo wall time: {wall:.1f} s ({wall / 60:.1f} min) for {len(rows)} jobs")
    print(f"second run: {again:.1f} s, nothing to do: {nothing}")
    print(f"ratio wall / 10-minute budget: {wall / BUDGET_S:.2f}")
    print(f"sum of job times / wall time (parallelism): {total / wall:.2f}\n")
    print("| job | s | max RSS MB |\n| --- | ---: | ---: |")
    for name, secs, rss in rows:
        print(f"| {name} | {secs:.1f} | {rss:.0f} |")
    summary = args.out / "results" / "summary" / "models.csv"
    if summary.is_file():
        print("\n" + summary.read_text())


if __name__ == "__main__":
    main()
