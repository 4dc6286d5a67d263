"""Issue 17 item 7: damaged or hostile weights and cards, RLE overflow: one line, exit 2."""

from __future__ import annotations

import pickle
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _input_helpers import (
    TRAIN_TINY,
    cvat_xml,
    dlpipe,
    image_xml,
    leftovers,
    one_line_error,
    tiled_volume,
    tiny_model,
)

from dlpipe.errors import UserError
from dlpipe.stores.weights import NOT_WEIGHTS, load_weights


class _Payload:
    """Unpickling this would create the file ``flag`` (it must never run)."""

    def __init__(self, flag: Path) -> None:
        self.flag = flag

    def __reduce__(self):
        return (Path.touch, (self.flag,))


def _damage(path: Path, how: str, flag: Path) -> None:
    if how == "empty":
        path.write_bytes(b"")
    elif how == "truncated":
        path.write_bytes(path.read_bytes()[:100])
    elif how == "hostile":
        torch.save({"w": _Payload(flag)}, path)
    elif how == "plain pickle":
        path.write_bytes(pickle.dumps(_Payload(flag)))
    elif how == "text":
        path.write_text("not weights\n")


DAMAGE = ["empty", "truncated", "hostile", "plain pickle", "text"]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_model(tmp_path_factory.mktemp("m"))


@pytest.fixture(scope="module")
def volume(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiled_volume(tmp_path_factory.mktemp("v"))


@pytest.mark.parametrize("how", DAMAGE)
def test_predict_with_bad_weights_pt(
    tmp_path: Path, model_dir: Path, volume: Path, how: str
) -> None:
    import shutil

    model = tmp_path / "model"
    shutil.copytree(model_dir, model)
    flag = tmp_path / "payload_ran"
    _damage(model / "weights.pt", how, flag)
    code, _, err = dlpipe("predict", model, volume, "--out", tmp_path / "p.zarr", cwd=tmp_path)
    line = one_line_error(err)
    assert code == 2 and str(model / "weights.pt") in line and NOT_WEIGHTS in line
    assert not flag.exists()
    assert leftovers(tmp_path, "p.zarr") == []


@pytest.mark.parametrize("how", DAMAGE)
def test_train_resume_with_bad_last_pt(tmp_path: Path, volume: Path, how: str) -> None:
    out = tmp_path / "model_out"
    (out / "checkpoints").mkdir(parents=True)
    last = out / "checkpoints" / "last.pt"
    torch.save({"params": "{}"}, last)
    flag = tmp_path / "payload_ran"
    _damage(last, how, flag)
    code, _, err = dlpipe("train", volume, "--out", out, *TRAIN_TINY, "--resume", cwd=tmp_path)
    line = one_line_error(err)
    assert code == 2 and str(last) in line and NOT_WEIGHTS in line
    assert not flag.exists()
    assert not (out / "card.json").exists()


def test_resume_or_start_restarts_after_a_bad_last_pt(tmp_path: Path, volume: Path) -> None:
    out = tmp_path / "model_out"
    (out / "checkpoints").mkdir(parents=True)
    flag = tmp_path / "payload_ran"
    _damage(out / "checkpoints" / "last.pt", "hostile", flag)
    code, _, err = dlpipe(
        "train", volume, "--out", out, *TRAIN_TINY, "--resume-or-start", cwd=tmp_path
    )
    assert code == 0, err
    assert NOT_WEIGHTS in err and (out / "card.json").is_file() and not flag.exists()


def test_load_weights_keys_and_types(tmp_path: Path) -> None:
    torch.save({"a": torch.zeros(2)}, tmp_path / "w.pt")
    assert set(load_weights(tmp_path / "w.pt")) == {"a"}
    with pytest.raises(UserError, match="checkpoint without model"):
        load_weights(tmp_path / "w.pt", keys=("model",))
    torch.save([1, 2], tmp_path / "l.pt")
    with pytest.raises(UserError, match="holds a list, not a dict"):
        load_weights(tmp_path / "l.pt")


@pytest.mark.parametrize("text", ["[1, 2]", '"card"', "3"])
def test_card_that_is_not_an_object(
    tmp_path: Path, model_dir: Path, volume: Path, text: str
) -> None:
    import shutil

    model = tmp_path / "model"
    shutil.copytree(model_dir, model)
    (model / "card.json").write_text(text)
    code, _, err = dlpipe("predict", model, volume, "--out", tmp_path / "p.zarr", cwd=tmp_path)
    line = one_line_error(err)
    assert code == 2 and "card.json" in line and "not a JSON object" in line
    assert leftovers(tmp_path, "p.zarr") == []


def test_rle_run_above_int64(tmp_path: Path) -> None:
    mask = (
        '<mask label="a" left="0" top="0" width="2" height="2" rle="99999999999999999999999, 1"/>'
    )
    xml = tmp_path / "rle.xml"
    xml.write_text(cvat_xml(image_xml(mask)))
    code, _, err = dlpipe("cvat", xml, "--no-images", "--out", tmp_path / "o.zarr", cwd=tmp_path)
    line = one_line_error(err)
    assert code == 2 and "rle.xml" in line and "image 'i.png'" in line
    assert "RLE runs sum to 100000000000000000000000, expected width*height" in line
    assert leftovers(tmp_path, "o.zarr") == []
