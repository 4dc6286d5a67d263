"""The summary of a hand-made sweep laid out as the workflow writes it: baselines in the table
and plots, the learning curve's groups, the spread of equal parameter counts, the best lines."""

from __future__ import annotations

import csv
import json
import subprocess
from pathlib import Path

import pytest

from dlpipe.summary import best, best_lines, curve_groups, jaccard_vs_parameters, summarise
from dlpipe.summary.plots import learning_curve

CLASSES = ("matrix", "fibre", "pore")


def _metrics(path: Path, jac: tuple[float, float, float]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    per = {c: {"jaccard": j} for c, j in zip(CLASSES, jac, strict=True)}
    path.write_text(json.dumps({"per_class": per, "mean_jaccard": sum(jac) / 3}))
    return path


def _model(results: Path, filters: int, slices: int, params: int, jac: tuple) -> Path:
    """A model as `dlpipe train` and `dlpipe evaluate` leave it; returns its metrics path."""
    name = f"f{filters}-d3-ce+dice-2d-s{slices}"
    card = {
        "model": "unet",
        "input": "2d",
        "architecture": {"base_filters": filters, "depth": 3},
        "parameters": params,
        "loss": {"ce": 1.0, "dice": 1.0},
        "split": {"train": [0, 8], "val": [8, 10]},
        "params": {"max_images": slices},
    }
    (results / "models" / name).mkdir(parents=True)
    (results / "models" / name / "card.json").write_text(json.dumps(card))
    return _metrics(results / "unet" / name / "clean_metrics.json", jac)


def _baseline(results: Path, method: str, jac: tuple) -> Path:
    """A baseline as `dlpipe baseline` (metrics.json) and `dlpipe evaluate` leave it."""
    folder = results / "baselines" / method
    _metrics(folder / "metrics.json", jac)
    own = json.loads((folder / "metrics.json").read_text()) | {"training_slices": [0, 2, 4, 6, 8]}
    (folder / "metrics.json").write_text(json.dumps(own))
    return _metrics(folder / "clean_metrics.json", jac)


@pytest.fixture
def sweep(tmp_path: Path) -> dict:
    """Three f8 models differing only in their slices (made out of order), one f16 model, the
    two baselines. rf has the best mean Jaccard (0.88184), f8-s4 the best of the models."""
    r = tmp_path / "results"
    metrics = [
        _model(r, 8, 8, 5000, (0.95, 0.86, 0.787)),
        _model(r, 8, 2, 5000, (0.95, 0.85, 0.787)),
        _model(r, 8, 4, 5000, (0.955, 0.86, 0.795)),
        _model(r, 16, 4, 20000, (0.94, 0.84, 0.77)),
    ]
    baselines = [
        _baseline(r, "otsu", (0.9, 0.7, 0.6)),
        _baseline(r, "rf", (0.96, 0.87, 0.81552)),
    ]
    bench = tmp_path / "bench"
    bench.mkdir()
    (bench / "baseline_rf.tsv").write_text("s\th:m:s\n20.5\t0:00:20\n")
    return {"results": r, "metrics": metrics, "baselines": baselines, "bench": bench}


def _summarise(sweep: dict, out: Path) -> list[dict]:
    models = {
        m.parent.name: (sweep["results"] / "models" / m.parent.name / "card.json", m, None)
        for m in sweep["metrics"]
    }
    bases = {
        m.parent.name: (m, sweep["bench"] / f"baseline_{m.parent.name}.tsv")
        for m in sweep["baselines"]
    }
    return summarise(models, out, bases)


def test_table_has_the_baselines(sweep: dict, tmp_path: Path) -> None:
    _summarise(sweep, tmp_path / "s")
    table = list(csv.DictReader((tmp_path / "s/models.csv").read_text().splitlines()))
    assert [(r["model"], r["kind"]) for r in table] == [
        ("f16-d3-ce+dice-2d-s4", "unet"),
        ("f8-d3-ce+dice-2d-s2", "unet"),
        ("f8-d3-ce+dice-2d-s4", "unet"),
        ("f8-d3-ce+dice-2d-s8", "unet"),
        ("otsu", "baseline"),
        ("rf", "baseline"),
    ]
    rf = table[-1]
    assert rf["jaccard_pore"] == "0.81552" and float(rf["mean_jaccard"]) == pytest.approx(0.88184)
    # Trained on the 5 annotated slices of its metrics.json; time of the baseline job.
    assert rf["annotated_slices"] == "5" and rf["train_s"] == "20.5"
    assert rf["parameters"] == rf["input"] == rf["base_filters"] == ""
    assert table[-2]["train_s"] == ""  # no benchmark file for otsu


def test_learning_curve_connects_models_differing_only_in_slices(sweep: dict, tmp_path: Path):
    rows = _summarise(sweep, tmp_path / "s")
    groups = curve_groups(rows)
    assert {k: [r["model"] for r in v] for k, v in groups.items()} == {
        "f16-d3-ce+dice-2d": ["f16-d3-ce+dice-2d-s4"],
        "f8-d3-ce+dice-2d": ["f8-d3-ce+dice-2d-s2", "f8-d3-ce+dice-2d-s4", "f8-d3-ce+dice-2d-s8"],
    }
    fig = learning_curve(rows)
    mean, *phases = fig.axes
    assert [ax.get_title() for ax in fig.axes] == ["mean", *CLASSES]
    lines = {ln.get_label(): ln for ln in mean.get_lines()}
    assert set(lines) == {
        "f16-d3-ce+dice-2d",
        "f8-d3-ce+dice-2d",
        "otsu (baseline, 5 slices)",
        "rf (baseline, 5 slices)",
    }
    # One line of three points in slice order (shifted a little off the f16 point at 4).
    x, y = lines["f8-d3-ce+dice-2d"].get_data()
    assert list(x) == pytest.approx([2, 4, 8], abs=0.2) and list(x) == sorted(x)
    assert list(y) == pytest.approx([0.862333, 0.87, 0.865667], abs=1e-5)
    (x16,) = lines["f16-d3-ce+dice-2d"].get_xdata()
    assert x16 != x[1] and x16 == pytest.approx(4, abs=0.2)
    # The baselines: horizontal lines at their mean, in every panel.
    assert list(lines["rf (baseline, 5 slices)"].get_ydata()) == pytest.approx([0.88184] * 2)
    assert all("rf (baseline, 5 slices)" in [ln.get_label() for ln in ax.lines] for ax in phases)
    fig.clf()


def test_equal_parameter_counts_stay_apart(sweep: dict, tmp_path: Path) -> None:
    rows = _summarise(sweep, tmp_path / "s")
    fig = jaccard_vs_parameters(rows)
    mean = fig.axes[0]
    points = [ln for ln in mean.get_lines() if "baseline" not in ln.get_label()]
    xs = sorted(float(ln.get_xdata()[0]) for ln in points)
    assert len(xs) == 4 and len(set(xs)) == 4  # the three models of 5000 parameters spread
    assert xs[1] == pytest.approx(5000, rel=1e-6) and 4000 < xs[0] < xs[2] < 6000
    # Colour per group (all but the architecture): the slices; one label per parameter count.
    assert {ln.get_label() for ln in points} == {"ce+dice-2d-s2", "ce+dice-2d-s4", "ce+dice-2d-s8"}
    assert sorted(t.get_text() for t in mean.texts) == ["f16-d3", "f8-d3"]
    fig.clf()


def test_best_lines(sweep: dict, tmp_path: Path) -> None:
    rows = _summarise(sweep, tmp_path / "s")
    assert best(rows)["model"] == "rf"
    assert best(rows, models_only=True)["model"] == "f8-d3-ce+dice-2d-s4"
    assert best_lines(rows) == [
        "best overall: rf (mean Jaccard 0.882)",
        "best model: f8-d3-ce+dice-2d-s4 (0.870)",
    ]
    models_only = [r for r in rows if r["kind"] != "baseline"]
    assert best_lines(models_only)[0] == "best overall: f8-d3-ce+dice-2d-s4 (mean Jaccard 0.870)"
    nan = [{"model": "m", "kind": "unet", "mean_jaccard": None}]
    assert best_lines(nan) == [
        "best overall: none (no mean Jaccard)",
        "best model: none (no mean Jaccard)",
    ]


def test_cli_ends_with_the_best_lines(sweep: dict, tmp_path: Path, cli_env: dict) -> None:
    out_dir = tmp_path / "s"
    args = [
        "dlpipe",
        "--log-level",
        "warning",
        "--config-json",
        '{"tracking": {"enabled": false}}',
        "summary",
        *map(str, sweep["metrics"]),
        "--models",
        str(sweep["results"] / "models"),
        *(a for m in sweep["baselines"] for a in ("--baseline", str(m))),
        "--bench",
        str(sweep["bench"]),
        "--out",
        str(out_dir),
    ]
    out = subprocess.run(args, env=cli_env, capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-3:] == [
        f"summarised 4 models and 2 baselines: {out_dir / 'models.csv'}",
        "best overall: rf (mean Jaccard 0.882)",
        "best model: f8-d3-ce+dice-2d-s4 (0.870)",
    ]
    assert (out_dir / "models.csv").read_text().count(",baseline") == 2
