"""Run names, tags, the logged model and the parent run's summary, read back with MlflowClient.

One tiny chain runs through the real CLI against a real SQLite store: train a U-Net on a
CVAT-style dataset Zarr (class 0 named ``background``), predict the volume, evaluate,
an Otsu baseline, and the summary under a workflow parent run.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from mlflow import MlflowClient

from dlpipe.cli import main
from dlpipe.config import defaults
from dlpipe.stores.dataset import write_instance_dataset
from dlpipe.tracking import PARENT_ENV, end_parent_run, init_store, start_parent_run
from dlpipe.training import write_labelled_volume

EXPERIMENT = "names-test"
TRAIN_SETS = {
    "steps_per_epoch": 2,
    "batch_size": 2,
    "patch_size": [8, 8],
    "workers": 0,
    "val_max_patches": 4,
    "architecture.depth": 2,
    "architecture.base_filters": 2,
}


def _volume(shape=(10, 16, 16), seed=0) -> tuple[np.ndarray, np.ndarray]:
    """Bright squares (1) and a dark blob (2) on matrix (0), grey values in uint8 range."""
    rng = np.random.default_rng(seed)
    labels = np.zeros(shape, dtype=np.uint8)
    for _ in range(6):
        y, x = rng.integers(0, shape[1] - 4), rng.integers(0, shape[2] - 4)
        labels[:, y : y + 4, x : x + 4] = 1
    labels[:, 2:4, 2:4] = 2
    grey = np.array([100, 200, 20], dtype=np.float32)
    image = grey[labels] + rng.normal(0, 5, shape).astype(np.float32)
    return np.clip(image, 0, 255).astype(np.float32), labels


class Chain:
    """What the chain left behind: its folders, the store, each command's stderr."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.results = root / "results"
        self.stderr: dict[str, str] = {}
        self.parent = ""

    @property
    def client(self) -> MlflowClient:
        return MlflowClient(tracking_uri=f"sqlite:///{self.results / 'mlflow.db'}")

    def runs(self) -> dict[str, Any]:
        exp = self.client.get_experiment_by_name(EXPERIMENT)
        return {r.info.run_name: r for r in self.client.search_runs([exp.experiment_id])}


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> Chain:
    """Run the tiny chain once for every test of this module."""
    capsys = _Capture()
    root = tmp_path_factory.mktemp("chain")
    c = Chain(root)
    data = root / "tiny"  # the dataset is named after this folder
    image, labels = _volume()
    vol = write_labelled_volume(
        data / "volume.zarr",
        image,
        labels,
        split={"train": [0, 6], "val": [7, 9], "test": [9, 10], "gap": 1},
        classes=["matrix", "fibre", "pore"],
        chunks=(4, 8, 8),
    )
    frames = [
        (f"slice_{z:04d}.png", image[z].astype(np.uint8), labels[z], labels[z].astype(np.uint32))
        for z in range(labels.shape[0])
    ]
    write_instance_dataset(
        data / "cvat.zarr",
        frames,
        classes=["background", "fibre", "pore"],
        sizes=[labels.shape[1:]] * labels.shape[0],
        channels=1,
    )
    config = defaults()
    config["results"] = str(c.results)
    config["tracking"].update(enabled=True, experiment=EXPERIMENT)
    cfg = json.dumps({"results": str(c.results), "tracking": config["tracking"]})
    old = {k: os.environ.pop(k, None) for k in ("MLFLOW_TRACKING_URI", PARENT_ENV)}
    try:
        init_store(config)
        c.parent = start_parent_run(config, "snakemake") or ""
        os.environ[PARENT_ENV] = c.parent
        sets = [a for k, v in TRAIN_SETS.items() for a in ("--set", f"{k}={json.dumps(v)}")]
        model = root / "models" / "m1"
        c.stderr["train"] = capsys.run(
            cfg, "train", data / "cvat.zarr", "--out", model, "--epochs", "2", *sets
        )
        pred = root / "unet" / "m1" / "prediction.zarr"
        c.stderr["predict"] = capsys.run(cfg, "predict", model, vol, "--out", pred)
        metrics = root / "unet" / "m1" / "metrics.json"
        c.stderr["evaluate"] = capsys.run(cfg, "evaluate", pred, vol, "--out", metrics)
        base = root / "baselines" / "otsu"
        c.stderr["baseline"] = capsys.run(
            cfg, "baseline", vol, vol, "--method", "otsu", "--slices", "1,2",
            "--out", base / "prediction.zarr", "--metrics", base / "metrics.json",
        )  # fmt: skip
        c.stderr["summary"] = capsys.run(
            cfg, "--dataset", "tiny", "summary", metrics, "--models", root / "models",
            "--baseline", base / "metrics.json", "--out", root / "summary",
        )  # fmt: skip
        end_parent_run(config, c.parent)
    finally:
        for k, v in old.items():
            os.environ.pop(k, None)
            if v is not None:
                os.environ[k] = v
    return c


class _Capture:
    """In-process CLI calls with their stderr (module scope: no capsys fixture there)."""

    def run(self, cfg: str, *args: Any) -> str:
        import contextlib
        import io

        err = io.StringIO()
        with contextlib.redirect_stderr(err), pytest.raises(SystemExit) as exc:
            main(["--config-json", cfg, *[str(a) for a in args]])
        assert exc.value.code == 0, err.getvalue()
        return err.getvalue()


def test_run_names_and_tags(chain: Chain) -> None:
    runs = chain.runs()
    expected = {
        "train tiny/m1": ("train", "tiny", "m1", "unet"),
        "predict tiny/m1": ("predict", "tiny", "m1", "unet"),
        "evaluate tiny/m1": ("evaluate", "tiny", "m1", "unet"),
        "baseline tiny/otsu": ("baseline", "tiny", "otsu", "baseline"),
        "summary tiny": ("summary", "tiny", None, "summary"),
    }
    assert set(expected) <= set(runs), sorted(runs)
    for name, (stage, dataset, model, kind) in expected.items():
        tags = runs[name].data.tags
        assert (tags["stage"], tags["dataset"], tags.get("model"), tags["kind"]) == (
            stage,
            dataset,
            model,
            kind,
        ), name
        assert tags["mlflow.parentRunId"] == chain.parent
        assert runs[name].info.status == "FINISHED"


def test_evaluate_links_its_train_run(chain: Chain) -> None:
    runs = chain.runs()
    train_id = runs["train tiny/m1"].info.run_id
    card = json.loads((chain.root / "models" / "m1" / "card.json").read_text())
    assert card["mlflow_run_id"] == train_id
    assert runs["evaluate tiny/m1"].data.tags["train_run_id"] == train_id
    assert runs["predict tiny/m1"].data.tags["train_run_id"] == train_id
    assert "train_run_id" not in runs["baseline tiny/otsu"].data.tags


def test_only_the_family_params_and_config_class_names(chain: Chain) -> None:
    runs = chain.runs()
    train = runs["train tiny/m1"]
    params, metrics = train.data.params, train.data.metrics
    assert params["architecture.depth"] == "2"
    for name in ("train tiny/m1", "predict tiny/m1"):
        assert not [k for k in runs[name].data.params if k.startswith("maskrcnn")], name
    assert "block" in runs["predict tiny/m1"].data.params
    # the CVAT store calls class 0 "background"; the config (evaluation.classes) "matrix"
    assert params["classes"] == str(["matrix", "fibre", "pore"])
    assert "val_jaccard_matrix" in metrics and "val_jaccard_background" not in metrics
    card = json.loads((chain.root / "models" / "m1" / "card.json").read_text())
    assert card["classes"] == ["matrix", "fibre", "pore"]


def test_experiment_opens_on_model_training(chain: Chain) -> None:
    exp = chain.client.get_experiment_by_name(EXPERIMENT)
    assert exp.tags["mlflow.experimentKind"] == "custom_model_development"
    # MLflow 3.17's UI ignores that tag: the summary's last line gives the page that opens on
    # the experiment's runs in the model-training view (docs/screenshots/mlflow_runs.png)
    hint = chain.stderr["summary"].strip().splitlines()[-1]
    page = f"#/experiments/{exp.experiment_id}/runs?workflowType=machine_learning"
    assert hint.startswith("MLflow UI: mlflow ui --backend-store-uri sqlite:///"), hint
    assert hint.endswith(f"then http://127.0.0.1:5000/{page}"), hint


def test_logged_model_loads_back_and_predicts_like_the_folder(chain: Chain) -> None:
    import mlflow.pytorch
    import torch

    from dlpipe.prediction.model import load_model
    from dlpipe.tracking.models import _tracking_uri, example_input

    train = chain.runs()["train tiny/m1"]
    (output,) = train.outputs.model_outputs
    uri = f"models:/{output.model_id}"
    with _tracking_uri(chain.client.tracking_uri):  # restores MLFLOW_TRACKING_URI after
        logged = mlflow.pytorch.load_model(uri)
    folder = load_model(chain.root / "models" / "m1")
    x = torch.from_numpy(example_input(folder.card, seed=3))
    with torch.no_grad():
        expected = folder.net(x).numpy()
        got = logged(x).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    # registered under the dataset's name, version 1 from this run
    (version,) = chain.client.search_model_versions("name='tiny'")
    assert version.run_id == train.info.run_id
    # in the run's experiment, where the UI's Models column and Models tab look for it
    model = chain.client.get_logged_model(output.model_id)
    assert model.experiment_id == train.info.experiment_id
    assert model.source_run_id == train.info.run_id
    # the folder keeps the weights-only format
    assert {p.name for p in (chain.root / "models" / "m1").iterdir()} >= {"weights.pt", "card.json"}


def test_dataset_inputs(chain: Chain) -> None:
    runs = chain.runs()
    for name, context in (("train tiny/m1", "training"), ("evaluate tiny/m1", "evaluation")):
        (inp,) = runs[name].inputs.dataset_inputs
        assert inp.dataset.name == "tiny"
        assert {t.key: t.value for t in inp.tags}["mlflow.data.context"] == context
        assert json.loads(inp.dataset.source)["uri"].endswith(".zarr")


def test_summary_on_its_run_and_on_the_parent(chain: Chain) -> None:
    summary = chain.runs()["summary tiny"]
    parent = chain.client.get_run(chain.parent)
    rows = (chain.root / "summary" / "models.csv").read_text().splitlines()
    assert len(rows) == 3  # header, m1, otsu
    for run in (summary, parent):
        m = run.data.metrics
        assert m["models"] == 1 and m["baselines"] == 1
        assert 0 <= m["best_model_mean_jaccard"] <= m["best_overall_mean_jaccard"] <= 1
        assert run.data.params["best_model"] == "m1"
        assert run.data.tags["best_overall"] in ("m1", "otsu")
    arts = {a.path for a in chain.client.list_artifacts(chain.parent)}
    assert {"models.csv", "learning_curve.png", "jaccard_vs_parameters.png"} <= arts


def test_first_line_says_where_runs_go(chain: Chain) -> None:
    db = chain.results.resolve() / "mlflow.db"
    for stage, name in (("train", "train tiny/m1"), ("evaluate", "evaluate tiny/m1")):
        first = chain.stderr[stage].splitlines()[0]
        assert first.startswith(f"MLflow: run '{name}' goes to sqlite:///{db}"), first
        assert f"experiment '{EXPERIMENT}'" in first and chain.parent in first


def test_single_command_without_tracking_says_nothing(tmp_path: Path, capsys) -> None:
    cfg = json.dumps({"results": str(tmp_path / "results"), "tracking": {"enabled": False}})
    with pytest.raises(SystemExit) as exc:
        main(["--config-json", cfg, "synth", str(tmp_path / "d"), "--shape", "16", "32", "32"])
    captured = capsys.readouterr()
    assert exc.value.code == 0, captured.err
    assert "MLflow" not in captured.err + captured.out
    assert not (tmp_path / "results").exists()
