"""The sweep summary: table rows from cards, metrics and benchmark files; plots; CLI."""

from __future__ import annotations

import csv
import json
import subprocess
from pathlib import Path

import pytest

from dlpipe.summary import loss_name, model_row, summarise


def _model(root: Path, name: str, slices: int | None, params_count: int, jac: list) -> Path:
    folder = root / "models" / name
    folder.mkdir(parents=True)
    card = {
        "input": "2d",
        "architecture": {"base_filters": 8, "depth": 3},
        "parameters": params_count,
        "loss": {"ce": 1.0, "dice": 1.0},
        "split": {"train": [0, 8], "val": [8, 10]},
        "val_mean_jaccard": 0.5,
        "epochs_run": 4,
        "params": {"max_images": slices},
    }
    (folder / "card.json").write_text(json.dumps(card))
    ev = root / "unet" / name
    ev.mkdir(parents=True)
    per = {c: {"jaccard": j} for c, j in zip(("matrix", "fibre", "pore"), jac, strict=True)}
    mean = sum(j for j in jac if j is not None) / sum(j is not None for j in jac)
    (ev / "clean_metrics.json").write_text(json.dumps({"per_class": per, "mean_jaccard": mean}))
    bench = root / "bench"
    bench.mkdir(exist_ok=True)
    (bench / f"train_{name}.tsv").write_text(
        "s\th:m:s\tmax_rss\tmax_vms\n12.5\t0:00:12\t300.1\t900.0\n"
    )
    return ev / "clean_metrics.json"


def test_loss_name() -> None:
    assert loss_name({"ce": 1.0, "dice": 1.0}) == "ce+dice"
    assert loss_name({"ce": 0.5, "dice": 0, "focal": 2}) == "ce@0.5+focal@2"


def test_rows_and_files(tmp_path: Path) -> None:
    a = _model(tmp_path, "f8-d3-ce+dice-2d-s2", 2, 1000, [0.9, 0.5, None])
    b = _model(tmp_path, "f8-d3-ce+dice-2d-sall", None, 1000, [0.95, 0.7, 0.25])
    row = model_row("x", tmp_path / "models/f8-d3-ce+dice-2d-s2/card.json", a, None)
    assert row["annotated_slices"] == 2 and row["train_s"] is None
    assert row["jaccard_pore"] is None and row["mean_jaccard"] == pytest.approx(0.7)
    models = {
        p.parent.name: (
            tmp_path / "models" / p.parent.name / "card.json",
            p,
            tmp_path / "bench" / f"train_{p.parent.name}.tsv",
        )
        for p in (a, b)
    }
    rows = summarise(models, tmp_path / "summary")
    assert [r["model"] for r in rows] == ["f8-d3-ce+dice-2d-s2", "f8-d3-ce+dice-2d-sall"]
    table = list(csv.DictReader((tmp_path / "summary/models.csv").read_text().splitlines()))
    assert table[1] == {
        "model": "f8-d3-ce+dice-2d-sall",
        "input": "2d",
        "base_filters": "8",
        "depth": "3",
        "loss": "ce+dice",
        "annotated_slices": "8",  # null max_images: every training image
        "parameters": "1000",
        "jaccard_matrix": "0.95",
        "jaccard_fibre": "0.7",
        "jaccard_pore": "0.25",
        "mean_jaccard": str((0.95 + 0.7 + 0.25) / 3),
        "val_mean_jaccard": "0.5",
        "epochs_run": "4",
        "train_s": "12.5",
        "kind": "model",  # the card names no model family
    }
    assert table[0]["jaccard_pore"] == ""
    for png in ("jaccard_vs_parameters.png", "learning_curve.png"):
        assert (tmp_path / "summary" / png).read_bytes()[:4] == b"\x89PNG"


def test_cli_and_missing_card(tmp_path: Path, cli_env: dict[str, str]) -> None:
    m = _model(tmp_path, "m1", 4, 10, [0.9, 0.8, 0.7])
    args = [
        "dlpipe",
        "--log-level",
        "warning",
        "--config-json",
        '{"tracking": {"enabled": false}}',
        "summary",
        str(m),
        "--models",
        str(tmp_path / "models"),
        "--bench",
        str(tmp_path / "bench"),
        "--out",
        str(tmp_path / "s"),
        "--overwrite",
    ]
    out = subprocess.run(args, env=cli_env, capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    assert "summarised 1 models and 0 baselines" in out.stdout
    (tmp_path / "models/m1/card.json").unlink()
    out = subprocess.run(args, env=cli_env, capture_output=True, text=True, check=False)
    assert out.returncode == 2
    assert len(out.stderr.strip().splitlines()) == 1 and "model card not found" in out.stderr


def test_annotated_slices_of_a_model_trained_on_placed_slices(tmp_path: Path) -> None:
    metrics = _model(tmp_path, "m", None, 100, [0.9, 0.8, 0.7])
    card_path = tmp_path / "models/m/card.json"
    card = json.loads(card_path.read_text())
    card["split"] = {"train": {"z": [3, 7, 11], "y": [40]}, "val": {"z": [20]}, "test": {}}
    card_path.write_text(json.dumps(card))
    assert model_row("m", card_path, metrics, None)["annotated_slices"] == 4
