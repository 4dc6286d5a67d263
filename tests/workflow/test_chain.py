"""The whole workflow on a tiny configuration: one real run (killed during train and during
predict, then resumed) shared by the tests of re-run planning, Dask, report and MLflow."""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import yaml
import zarr

ROOT = Path(__file__).resolve().parents[2]
MODEL = "f4-d2-ce-2d-s3"
R = "results"
D = f"{R}/demo"  # the one dataset: the demo
PRED = f"{D}/unet/{MODEL}/prediction.zarr"
CONFIG = {
    "results": R,
    "tracking": {"enabled": True, "experiment": "wf-test"},
    "synth": {"shape": [16, 64, 64], "annotated_slices": 5},
    "tile": {"chunks": [8, 32, 32], "levels": 2},
    "train": {
        "epochs": 3,
        "steps_per_epoch": 6,
        "batch_size": 2,
        "patch_size": [32, 32],
        "workers": 0,
        "val_max_patches": 4,
    },
    "sweep": {"base_filters": [4], "depth": [2], "loss": ["ce"], "annotated_slices": [3]},
    "predict": {"block": [2, 32, 32], "tta": 8, "batch_size": 2, "torch_threads": 1},
    "postprocess": {"rules": [{"phase": 2, "min_size": 4}]},
    "evaluation": {"overlays": 1},
}
TARGET = f"{D}/summary/models.csv"
BASELINES = ("otsu", "rf")


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), env.get("PYTHONPATH", "")])
    env.pop("MLFLOW_TRACKING_URI", None)
    env.pop("DLPIPE_PARENT_RUN_ID", None)
    return env


def _cmd(work: Path, *args: str, config: str = "config.yaml") -> list[str]:
    # --configfile takes several values: it goes last.
    return [
        "snakemake",
        *args,
        "--snakefile",
        str(ROOT / "Snakefile"),
        "--directory",
        str(work),
        "--configfile",
        str(work / config),
    ]


def smk(work: Path, *args: str, config: str = "config.yaml") -> subprocess.CompletedProcess:
    return subprocess.run(
        _cmd(work, *args, config=config),
        cwd=work,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def planned(work: Path, *args: str, config: str = "config.yaml") -> dict[str, int]:
    """Rule -> number of jobs of a dry run (its job stats); {} when nothing is to be done."""
    out = smk(work, "-n", "--cores", "2", *args, config=config)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    text = out.stdout + out.stderr
    if "Job stats" not in text:
        assert "Nothing to be done" in text, text[-2000:]
        return {}
    stats = text[text.index("Job stats") :]
    return {
        m[1]: int(m[2]) for m in re.finditer(r"^(\w+)\s+(\d+)$", stats, re.M) if m[1] != "total"
    }


def _kill_group_when(work: Path, ready: Callable[[], bool], timeout: float = 400) -> bool:
    """Run the workflow in its own process group; SIGKILL the group once ``ready()``.

    Returns False if the run ended before (nothing was killed)."""
    log = (work / "run.log").open("a")
    proc = subprocess.Popen(
        _cmd(work, TARGET, "--cores", "2"),
        cwd=work,
        env=_env(),
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    t0 = time.monotonic()
    try:
        while time.monotonic() - t0 < timeout:
            if proc.poll() is not None:
                return False
            if ready():
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                return True
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        raise AssertionError("the workflow never reached the kill point")
    finally:
        log.close()


def _blocks_done(work: Path) -> int:
    markers = work / PRED / ".dlpipe_blocks"
    return len(list(markers.iterdir())) if markers.is_dir() else 0


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The tiny workflow: killed (process group) during train, then during predict, then
    re-run to the end. Returns the folder and what was seen at each step."""
    work = tmp_path_factory.mktemp("wf")
    (work / "config.yaml").write_text(yaml.safe_dump(CONFIG))
    seen: dict = {"work": work}
    model = work / D / "models" / MODEL
    # 1. Killed during train, after the first epoch's checkpoint.
    seen["train_killed"] = _kill_group_when(
        work, lambda: (model / "checkpoints" / "last.pt").is_file()
    )
    seen["card_after_kill"] = (model / "card.json").exists()
    assert smk(work, "--unlock").returncode == 0
    seen["plan_after_train_kill"] = planned(work, TARGET)
    # 2. Killed during predict, once some blocks are written.
    seen["predict_killed"] = _kill_group_when(
        work, lambda: _blocks_done(work) >= 2 and not (work / PRED / ".dlpipe_complete").exists()
    )
    seen["blocks_after_kill"] = _blocks_done(work)
    seen["pred_marker_after_kill"] = (work / PRED / ".dlpipe_complete").exists()
    assert smk(work, "--unlock").returncode == 0
    seen["plan_after_predict_kill"] = planned(work, TARGET)
    # 3. Re-run to the end.
    out = smk(work, TARGET, "--cores", "2")
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return seen


def test_killed_train_resumes_from_its_checkpoint(run: dict) -> None:
    assert run["train_killed"], "train finished before it could be killed"
    assert not run["card_after_kill"]
    # The killed job's partial model folder is not taken for a finished output.
    assert run["plan_after_train_kill"].get("train") == 1
    log = (run["work"] / "logs" / "demo" / f"train_{MODEL}.log").read_text()
    resumed = re.search(r"resuming after epoch (\d+)", log)
    assert resumed and 1 <= int(resumed.group(1)) < 3, log[-2000:]
    card = json.loads((run["work"] / D / "models" / MODEL / "card.json").read_text())
    assert card["epochs_run"] == 3 and card["params"]["max_images"] == 3


def test_killed_predict_resumes_its_blocks(run: dict) -> None:
    assert run["predict_killed"], "predict finished before it could be killed"
    assert run["blocks_after_kill"] >= 2 and not run["pred_marker_after_kill"]
    plan = run["plan_after_predict_kill"]
    assert plan.get("predict") == 1 and "train" not in plan, plan
    log = (run["work"] / "logs" / "demo" / f"predict_{MODEL}.log").read_text()
    found = re.search(r"predicted (\d+) of (\d+) blocks \((\d+) done before\)", log)
    assert found, log[-2000:]
    predicted, total, before = (int(g) for g in found.groups())
    assert total == 8 * 2 * 2 and before >= run["blocks_after_kill"] and predicted + before == total


def test_second_run_does_nothing(run: dict) -> None:
    assert planned(run["work"], TARGET) == {}


def test_every_stage_wrote_its_outputs(run: dict) -> None:
    work = run["work"]
    rows = (work / TARGET).read_text().splitlines()
    assert rows[0].startswith("model,input,base_filters,depth,loss,annotated_slices,parameters")
    # The model, then the two baselines (Otsu, random forest).
    assert len(rows) == 4 and rows[1].startswith(f"{MODEL},2d,4,2,ce,3,")
    assert [r.split(",")[0] for r in rows[2:]] == ["otsu", "rf"]
    metrics = json.loads((work / D / "unet" / MODEL / "clean_metrics.json").read_text())
    assert set(metrics["per_class"]) == {"matrix", "fibre", "pore"}
    for png in ("jaccard_vs_parameters.png", "learning_curve.png"):
        assert (work / D / "summary" / png).read_bytes()[:4] == b"\x89PNG"
    for rule in (  # (the cvat rule's dataset Zarr is not on the way: train reads the scan)
        "synth",
        "tile",
        "place",
        f"train_{MODEL}",
        f"predict_{MODEL}",
        f"postprocess_unet_{MODEL}",
        f"evaluate_unet_{MODEL}",
        "summary",
    ):
        assert (work / "logs" / "benchmarks" / "demo" / f"{rule}.tsv").is_file(), rule


def _with(work: Path, name: str, **sections: dict) -> str:
    cfg = json.loads(json.dumps(CONFIG))
    for key, value in sections.items():
        cfg[key] = cfg.get(key, {}) | value
    (work / name).write_text(yaml.safe_dump(cfg))
    return name


def test_training_change_reruns_train_and_what_follows(run: dict) -> None:
    name = _with(run["work"], "lr.yaml", train={"lr": 0.002})
    plan = planned(run["work"], TARGET, config=name)
    assert plan == {"train": 1, "predict": 1, "postprocess": 1, "evaluate": 1, "summary": 1}


def test_postprocess_change_reruns_only_postprocess_and_evaluate(run: dict) -> None:
    name = _with(run["work"], "pp.yaml", postprocess={"rules": [{"phase": 2, "min_size": 9}]})
    plan = planned(run["work"], TARGET, config=name)
    # The rules clean the baselines too; the summary reads every evaluation, so it follows.
    assert plan == {"postprocess": 3, "evaluate": 3, "summary": 1}


def test_sweep_expands_into_one_chain_per_model(run: dict) -> None:
    name = _with(
        run["work"], "sweep.yaml", sweep={"annotated_slices": [2, 3], "input": ["2d", "2.5d"]}
    )
    out = smk(run["work"], "-n", "--cores", "2", TARGET, config=name)
    assert out.returncode == 0, out.stderr[-2000:]
    plan = planned(run["work"], TARGET, config=name)
    # f4-d2-ce-2d-s3 exists already: three new models.
    assert plan == {"train": 3, "predict": 3, "postprocess": 3, "evaluate": 3, "summary": 1}
    for model in ("f4-d2-ce-2d-s2", "f4-d2-ce-2.5d-s2", "f4-d2-ce-2.5d-s3"):
        assert f"models/{model}/card.json" in out.stdout


def test_failing_job_leaves_no_finished_output(run: dict, tmp_path: Path) -> None:
    """A job that fails (here evaluate, told of fewer classes than the labels hold) leaves
    none of its outputs, and the next run plans it again.

    (A label group that does not exist no longer fails: the demo volume holds placed
    annotations, which evaluate then scores — the annotation score.)"""
    work = tmp_path / "w"
    shutil.copytree(run["work"], work, symlinks=True)
    name = _with(work, "bad.yaml", evaluation={"classes": ["matrix"]})
    target = f"{D}/unet/{MODEL}/clean_metrics.json"
    # The evaluate job alone: towards the summary the baselines (told of 1 class too) may
    # fail first and stop the run before evaluate starts.
    out = smk(work, target, "--cores", "2", config=name)
    assert out.returncode != 0
    log = (work / "logs" / "demo" / f"evaluate_unet_{MODEL}.log").read_text()
    assert "only 1 classes are configured" in log
    folder = work / D / "unet" / MODEL
    assert not (folder / "clean_metrics.json").exists()
    assert not (folder / "clean_metrics.csv").exists()
    assert not (folder / "clean_metrics_plots").exists()
    assert not (folder / "clean_metrics.html").exists()
    assert planned(work, target, config=name) == {"evaluate": 1}


def test_predict_on_a_local_cluster_gives_the_same_labels(run: dict, tmp_path: Path) -> None:
    work = tmp_path / "w"
    shutil.copytree(run["work"], work, symlinks=True)
    shutil.rmtree(work / PRED)  # predict would otherwise resume the finished blocks
    name = _with(work, "dask.yaml", predict={"scheduler": "local-cluster:3"})
    target = f"{PRED}/.dlpipe_complete"
    out = smk(work, target, "--cores", "2", config=name)
    assert out.returncode == 0, out.stderr[-3000:]
    log = (work / "logs" / "demo" / f"predict_{MODEL}.log").read_text()
    assert "LocalCluster of 3 worker processes" in log
    assert "predicted 32 of 32 blocks (0 done before)" in log
    a = zarr.open_group(run["work"] / PRED, mode="r")["labels/phases/0"][:]
    b = zarr.open_group(work / PRED, mode="r")["labels/phases/0"][:]
    assert a.shape == (16, 64, 64) and np.array_equal(a, b)


def test_report(run: dict, tmp_path: Path) -> None:
    report = tmp_path / "report.html"
    out = smk(run["work"], TARGET, "--report", str(report))
    assert out.returncode == 0, out.stderr[-3000:]
    html = report.read_text()
    for text in ("Summary", "Evaluation", "Models", "learning_curve.png", "overlay_z"):
        assert text in html, text
    # The tables are HTML, shown in the page (CSV would be a download): embedded as data URIs,
    # the same bytes as the files, scores to 3 digits.
    embedded: dict[str, list[bytes]] = {}
    for name, data in re.findall(
        r"data:text/html;charset=utf8;filename=([^;]+);base64,([A-Za-z0-9+/=]+)", html
    ):
        embedded.setdefault(name, []).append(base64.b64decode(data))
    work = run["work"]
    models = (work / D / "summary" / "models.html").read_bytes()
    assert models in embedded["models.html"] and b"best model: " in models
    assert any(b"architecture.depth" in c for c in embedded["cards.html"])
    metrics = (work / D / "unet" / MODEL / "clean_metrics.html").read_bytes()
    assert metrics in embedded["clean_metrics.html"] and b"jaccard" in metrics
    assert len(embedded["clean_metrics.html"]) == 3  # the model, otsu and rf
    assert not re.search(rb"\d\.\d{4,}", models + metrics)
    # an item's info shows the rule's params: a config file's path, not the JSON
    assert "--config-json '{" not in html


def _baseline_job(tags: dict[str, str]) -> bool:
    """Whether a stage run belongs to a baseline's chain (baseline, its postprocess, evaluate)."""
    values = (tags.get("dataset", ""), tags.get("model", ""))
    return tags["stage"] == "baseline" or any(v in BASELINES or "/baselines/" in v for v in values)


def test_one_parent_run_per_invocation(run: dict) -> None:
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{run['work'] / R / 'mlflow.db'}")
    exp = client.get_experiment_by_name("wf-test")
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    parents = sorted(
        (r for r in runs if r.data.tags.get("stage") == "workflow"), key=lambda r: r.info.start_time
    )
    children = [r for r in runs if r.data.tags.get("stage") != "workflow"]
    # Three invocations (two killed) that ran jobs, each with its own parent.
    assert len(parents) >= 3
    ids = {p.info.run_id for p in parents}
    assert all(c.data.tags.get("mlflow.parentRunId") in ids for c in children)
    last = parents[-1].info.run_id
    assert parents[-1].info.status == "FINISHED"
    stages = sorted(
        c.data.tags["stage"]
        for c in children
        if c.data.tags["mlflow.parentRunId"] == last and not _baseline_job(c.data.tags)
    )
    # The last run finished predict (killed before) and what follows (the baselines' jobs run
    # whenever the scheduler fits them in, so they are left out here).
    assert stages == ["evaluate", "postprocess", "predict", "summary"]

    def stages_of(parent: str) -> set[str]:
        return {
            c.data.tags["stage"]
            for c in children
            if c.data.tags["mlflow.parentRunId"] == parent and not _baseline_job(c.data.tags)
        }

    assert stages_of(parents[0].info.run_id) == {"synth", "tile", "cvat", "train"}
    assert stages_of(parents[1].info.run_id) == {"train", "predict"}
