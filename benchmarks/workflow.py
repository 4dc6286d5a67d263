"""Wall time of the demo workflow from a clean folder, and of each stage (benchmark files).

Copies the workflow (Snakefile, workflow/, envs/, profiles, config.yaml) into a fresh folder,
runs ``snakemake --cores 8`` there, then runs it a second time (it must do nothing), and
tabulates ``logs/benchmarks/*.tsv`` (seconds and peak RSS of each job) as a Markdown table.

    PYTHONPATH=src python benchmarks/workflow.py [--out /tmp/demo-run] [--cores 8]

Ratio printed: demo wall time / the issue's 10-minute budget, and sum of the job times /
wall time (the parallelism obtained). On a shared machine the wall time is pessimistic; the
jobs' CPU time (``cpu_time`` of the benchmark files) divided by the number of cores estimates
what an idle machine of that many cores would need (Snakemake samples the CPU time
periodically, so short jobs are under-counted; long ones such as training are representative).

    PYTHONPATH=src python benchmarks/workflow.py --tabulate /tmp/demo-run   # an earlier run
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

ROOT = Path(__file__).resolve().parents[1]
BUDGET_S = 600.0


def _copy_workflow(dest: Path) -> None:
    dest.mkdir(parents=True)
    for name in ("Snakefile", "config.yaml", "workflow", "envs"):
        src = ROOT / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, dest / name)
    (dest / "profiles").symlink_to("workflow/profiles")


def _num(value: str | None) -> float:
    return float(value) if value not in (None, "", "NA", "-") else 0.0


def _bench(folder: Path) -> list[tuple[str, float, float, float]]:
    """(job, wall s, CPU s, max RSS MB) of each benchmark file (``<dataset>/<job>.tsv`` since
    the workflow runs per dataset, named ``<dataset>/<job>``; ``<job>.tsv`` before)."""
    rows = []
    for tsv in sorted(folder.rglob("*.tsv")):
        rec = list(csv.DictReader(tsv.read_text().splitlines(), delimiter="\t"))[-1]
        job = tsv.relative_to(folder).with_suffix("").as_posix()
        rows.append((job, _num(rec["s"]), _num(rec.get("cpu_time")), _num(rec.get("max_rss"))))
    return rows


def tabulate(out: Path, wall: float, cores: int) -> None:
    """Print the per-job table of the run in ``out`` and the ratios."""
    folder = out / "logs" / "benchmarks"
    if not folder.is_dir():  # a run made before issue 13 kept them in benchmarks/out
        folder = out / "benchmarks" / "out"
    rows = _bench(folder)
    total = sum(r[1] for r in rows)
    cpu = sum(r[2] for r in rows)
    print(f"demo wall time: {wall:.1f} s ({wall / 60:.1f} min) for {len(rows)} jobs")
    print(f"ratio wall / 10-minute budget: {wall / BUDGET_S:.2f}")
    print(f"sum of job times / wall time (parallelism): {total / wall:.2f}")
    print(
        f"CPU time of all jobs: {cpu:.0f} s; / {cores} cores = {cpu / cores:.0f} s "
        f"(ratio to the budget {cpu / cores / BUDGET_S:.2f})\n"
    )
    print("| job | wall s | CPU s | max RSS MB |\n| --- | ---: | ---: | ---: |")
    for name, secs, cpu_s, rss in rows:
        print(f"| {name} | {secs:.1f} | {cpu_s:.1f} | {rss:.0f} |")
    # One summary per dataset (results/<dataset>/summary/); results/summary/ before.
    for summary in sorted(out.glob("results/**/summary/models.csv")):
        print(f"\n{summary.relative_to(out)}:\n{summary.read_text()}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("/tmp/dlpipe-demo-bench"))
    ap.add_argument("--cores", type=int, default=8)
    ap.add_argument("--tabulate", type=Path, help="Only tabulate an earlier run in this folder.")
    ap.add_argument("--machine-cores", type=int, default=os.cpu_count() or 1)
    args = ap.parse_args()
    if args.tabulate:
        wall = json.loads((args.tabulate / "wall.json").read_text())["wall_s"]
        tabulate(args.tabulate, wall, args.machine_cores)
        return
    if args.out.exists():
        shutil.rmtree(args.out)
    _copy_workflow(args.out)
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), env.get("PYTHONPATH", "")])
    env.pop("DLPIPE_PARENT_RUN_ID", None)

    def snakemake() -> subprocess.CompletedProcess:
        return subprocess.run(
            ["snakemake", "--cores", str(args.cores)],
            cwd=args.out,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )

    load = os.getloadavg()
    t0 = time.perf_counter()
    first = snakemake()
    wall = time.perf_counter() - t0
    (args.out / "run.log").write_text(first.stdout + first.stderr)
    (args.out / "wall.json").write_text(json.dumps({"wall_s": wall}) + "\n")
    if first.returncode != 0:
        sys.exit(f"demo failed (see {args.out / 'run.log'})")
    t1 = time.perf_counter()
    second = snakemake()
    again = time.perf_counter() - t1
    nothing = "Nothing to be done" in second.stdout + second.stderr
    print(
        f"load average before: {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}; "
        f"load average after: {' '.join(f'{v:.1f}' for v in os.getloadavg())}"
    )
    print(f"second run: {again:.1f} s, nothing to do: {nothing}")
    tabulate(args.out, wall, args.machine_cores)


if __name__ == "__main__":
    main()
