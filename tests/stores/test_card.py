"""The model card reader, its family and writer."""

from __future__ import annotations

from pathlib import Path

import pytest

from dlpipe.errors import UserError
from dlpipe.stores import card


def test_read_card_errors(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"no card\.json: not a model folder"):
        card.read_card(tmp_path)
    (tmp_path / "card.json").write_text("{not json")
    with pytest.raises(UserError, match=r"card\.json is not valid JSON"):
        card.read_card(tmp_path)
    (tmp_path / "card.json").write_text("[1, 2]")
    with pytest.raises(UserError, match=r"card\.json is not a JSON object"):
        card.read_card(tmp_path)


def test_write_read_and_family(tmp_path: Path) -> None:
    path = card.write_card(tmp_path, {"model": "maskrcnn", "classes": ["background", "cell"]})
    assert path == tmp_path / "card.json"
    assert path.read_text() == (
        '{\n  "model": "maskrcnn",\n  "classes": [\n    "background",\n    "cell"\n  ]\n}\n'
    )
    got = card.read_card(tmp_path)
    assert card.model_family(got) == "maskrcnn"
    assert card.model_family({"model": "unet"}) == "unet"
    with pytest.raises(UserError, match="model card names model 'gan'"):
        card.model_family({"model": "gan"}, path=path)
    with pytest.raises(UserError, match="model card names model None"):
        card.model_family({})
