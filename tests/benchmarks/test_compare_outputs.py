"""benchmarks/compare_outputs.py on tiny made-up results folders."""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import zarr

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def co() -> ModuleType:
    """The script, imported by path (benchmarks/ is not a package)."""
    spec = importlib.util.spec_from_file_location(
        "compare_outputs", ROOT / "benchmarks" / "compare_outputs.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look the module up
    spec.loader.exec_module(module)
    return module


def _results(root: Path) -> Path:
    """A results folder with one output of each kind the workflow writes."""
    res = root / "results"
    store = res / "unet" / "m" / "clean.zarr"
    group = zarr.open_group(str(store), mode="w")
    group.attrs["dlpipe"] = {"source": {"path": str(res / "demo" / "volume.tif")}}
    labels = group.create_array("labels/phases/0", shape=(4, 8, 8), chunks=(2, 8, 8), dtype="u1")
    labels[:] = np.arange(256, dtype="u1").reshape(4, 8, 8) % 3
    (store / ".dlpipe_complete").write_text(
        json.dumps({"complete": True, "time": "2026-01-01T00:00:00Z"})
    )
    metrics = {
        "mean_jaccard": 0.9,
        "per_class": [0.8, float("nan")],
        "run_id": "abc",
        "seconds": 1.5,
    }
    (res / "unet" / "m" / "metrics.json").write_text(json.dumps(metrics))
    (res / "unet" / "m" / "metrics.csv").write_text("class,jaccard,seconds\nfibre,0.9,1.2\n")
    np.save(res / "unet" / "m" / "probs.npy", np.linspace(0, 1, 10))
    (res / "mlflow.db").write_bytes(b"db")
    (res / "logs").mkdir()
    (res / "logs" / "x.log").write_text("a log")
    return res


def _copy(res: Path, dest: Path) -> Path:
    shutil.copytree(res, dest / "results")
    return dest / "results"


def _by_path(rows: list) -> dict[str, object]:
    return {r.path: r for r in rows}


def test_a_copy_is_identical_and_volatile_values_are_ignored(co, tmp_path: Path, capsys) -> None:
    before = _results(tmp_path / "a")
    after = _copy(before, tmp_path / "b")  # absolute paths differ: tmp_path/a vs tmp_path/b
    meta = json.loads((after / "unet/m/metrics.json").read_text())
    meta.update(run_id="xyz", seconds=9.0)
    (after / "unet/m/metrics.json").write_text(json.dumps(meta))
    (after / "unet/m/metrics.csv").write_text("class,jaccard,seconds\nfibre,0.9,7.7\n")
    (after / "unet/m/clean.zarr/.dlpipe_complete").write_text(
        json.dumps({"complete": True, "time": "2027-05-05T10:00:00Z"})
    )
    (after / "mlflow.db").write_bytes(b"other db")
    assert co.main([str(before), str(after), "--all"]) == 0
    out = capsys.readouterr().out
    assert out.rstrip().endswith("5 identical, 0 different, 0 only in one")
    assert "mlflow.db" not in out and "x.log" not in out


def test_a_changed_chunk_is_found(co, tmp_path: Path, capsys) -> None:
    before = _results(tmp_path / "a")
    after = _copy(before, tmp_path / "b")
    arr = zarr.open_array(str(after / "unet/m/clean.zarr"), path="labels/phases/0", mode="r+")
    arr[3, 0, 0] = 9
    rows, _ = co.compare(before, after)
    row = _by_path(rows)["unet/m/clean.zarr/labels/phases/0"]
    assert row.status == "different"
    assert "1 values differ" in row.detail and "1 of 2 chunks differ" in row.detail
    assert co.main([str(before), str(after)]) == 1
    assert capsys.readouterr().out.rstrip().endswith("4 identical, 1 different, 0 only in one")


def test_corrupt_chunk_bytes_are_a_difference(co, tmp_path: Path) -> None:
    before = _results(tmp_path / "a")
    after = _copy(before, tmp_path / "b")
    chunk = next(
        p
        for p in (after / "unet/m/clean.zarr/labels/phases/0").rglob("*")
        if p.is_file() and p.name != "zarr.json"
    )
    chunk.write_bytes(b"garbage")
    rows, _ = co.compare(before, after)
    assert _by_path(rows)["unet/m/clean.zarr/labels/phases/0"].status == "different"


def test_attributes_ngff_only_pass_others_fail(co, tmp_path: Path) -> None:
    before = _results(tmp_path / "a")
    after = _copy(before, tmp_path / "b")
    group = zarr.open_group(str(after / "unet/m/clean.zarr"), mode="r+")
    group["labels"].attrs["labels"] = ["phases"]
    group["labels/phases"].attrs["image-label"] = {"colors": []}
    rows, _ = co.compare(before, after)
    attrs = [r for r in rows if r.kind == "zarr-attrs"]
    assert {r.status for r in attrs} == {"ngff-attrs"} and len(attrs) == 2
    assert co.main([str(before), str(after)]) == 0
    group.attrs["dlpipe"] = {"other": 1}
    rows, _ = co.compare(before, after)
    assert _by_path(rows)["unet/m/clean.zarr (attrs)"].status == "different"
    assert co.main([str(before), str(after)]) == 1


def test_values_outputs_only_in_one_and_allow_new(co, tmp_path: Path, capsys) -> None:
    before = _results(tmp_path / "a")
    after = _copy(before, tmp_path / "b")
    np.save(after / "unet/m/probs.npy", np.linspace(0, 1, 10) + 1e-12)
    (after / "unet/m/metrics.csv").write_text("class,jaccard,seconds\nfibre,0.91,1.2\n")
    (after / "new.json").write_text("{}")
    (before / "unet/m/metrics.json").unlink()
    rows = _by_path(co.compare(before, after)[0])
    assert rows["unet/m/probs.npy"].status == "different"
    assert rows["unet/m/metrics.csv"].status == "different"
    assert rows["new.json"].status == "after-only"
    assert rows["unet/m/metrics.json"].status == "after-only"
    assert co.main([str(before), str(after)]) == 1
    assert capsys.readouterr().out.rstrip().endswith("2 identical, 2 different, 2 only in one")


def test_png_metadata_ignored_pixels_compared(co, tmp_path: Path) -> None:
    image = pytest.importorskip("PIL.Image")
    from PIL import PngImagePlugin

    pixels = np.arange(64, dtype="u1").reshape(8, 8)
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    info = PngImagePlugin.PngInfo()
    info.add_text("Software", "matplotlib version 9")
    image.fromarray(pixels).save(a / "plot.png")
    image.fromarray(pixels).save(b / "plot.png", pnginfo=info)
    assert (a / "plot.png").read_bytes() != (b / "plot.png").read_bytes()
    assert _by_path(co.compare(a, b)[0])["plot.png"].status == "identical"
    image.fromarray(pixels[::-1]).save(b / "plot.png")
    assert _by_path(co.compare(a, b)[0])["plot.png"].status == "different"


def test_state_dicts_compared_by_tensor(co, tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    state = {"conv.weight": torch.ones(2, 3), "conv.bias": torch.zeros(2)}
    torch.save(state, a / "weights.pt")
    torch.save({k: v.clone() for k, v in state.items()}, b / "weights.pt")
    assert _by_path(co.compare(a, b)[0])["weights.pt"].status == "identical"
    state["conv.bias"][1] = 1e-6
    torch.save(state, b / "weights.pt")
    row = _by_path(co.compare(a, b)[0])["weights.pt"]
    assert row.status == "different" and "conv.bias" in row.detail


def test_checkpoint_history_differing_only_in_seconds_is_identical(
    co: ModuleType, tmp_path: Path
) -> None:
    """A checkpoint keeps its training history as JSON text: its timings are masked too,
    its scores are not."""
    import torch

    def save(path: Path, seconds: float, loss: float) -> None:
        history = json.dumps([{"epoch": 1, "train_loss": loss, "seconds": seconds}])
        torch.save({"model": {"w": torch.ones(2)}, "history": history}, path)

    a, b, c = tmp_path / "a.pt", tmp_path / "b.pt", tmp_path / "c.pt"
    save(a, 1.0, 0.5)
    save(b, 99.0, 0.5)
    save(c, 1.0, 0.6)
    norm = co._Norm([tmp_path], frozenset({"seconds"}))
    assert co._cmp_torch(a, b, norm) == ""
    assert "train_loss" in co._cmp_torch(a, c, norm)
