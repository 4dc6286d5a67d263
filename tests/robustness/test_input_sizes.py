"""Issue 17 item 4: sizes in a user's file are checked before allocating (one size guard)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _input_helpers import (
    cvat_xml,
    dlpipe,
    image_xml,
    leftovers,
    one_line_error,
    tiled_volume,
    tiny_model,
)

from dlpipe.errors import UserError
from dlpipe.stores.guards import ENV_CAP, check_allocation


def test_cvat_image_of_100000_squared_is_refused_before_allocating(tmp_path: Path) -> None:
    box = '<box label="a" xtl="0" ytl="0" xbr="2" ybr="2"/>'
    xml = tmp_path / "big.xml"
    xml.write_text(cvat_xml(image_xml(box, width=100000, height=100000)))
    # 100000 x 100000 x 8 bytes = 74.5 GiB; the cap makes the test independent of the machine
    code, _, err = dlpipe(
        "cvat",
        xml,
        "--no-images",
        "--out",
        tmp_path / "o.zarr",
        cwd=tmp_path,
        env={ENV_CAP: "4096"},
    )
    line = one_line_error(err)
    assert code == 2
    assert "big.xml" in line and "width/height" in line and "100000 x 100000" in line
    assert "74.5 GiB" in line and f"{ENV_CAP}=4096" in line
    assert leftovers(tmp_path, "o.zarr") == []


def test_cvat_image_size_checked_against_available_memory(tmp_path: Path) -> None:
    xml = tmp_path / "big.xml"
    xml.write_text(cvat_xml(image_xml(width=10**7, height=10**7)))  # 728 TiB: never fits
    code, _, err = dlpipe("cvat", xml, "--no-images", "--out", tmp_path / "o.zarr", cwd=tmp_path)
    line = one_line_error(err)
    assert code == 2 and "big.xml" in line and "the memory available" in line
    assert leftovers(tmp_path, "o.zarr") == []


def test_card_with_huge_base_filters_is_refused_before_building(tmp_path: Path) -> None:
    model = tiny_model(tmp_path, base_filters=65536)
    vol = tiled_volume(tmp_path, labels=False)
    code, _, err = dlpipe(
        "predict",
        model,
        vol,
        "--out",
        tmp_path / "pred.zarr",
        cwd=tmp_path,
        env={ENV_CAP: "8192"},
    )
    line = one_line_error(err)
    assert code == 2
    assert str(model / "card.json") in line and "architecture.base_filters" in line
    assert leftovers(tmp_path, "pred.zarr") == []


def test_guard_units_and_bad_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_CAP, "1")
    check_allocation(2**20, "exactly the cap")  # equal is allowed
    with pytest.raises(UserError, match=r"f.json: field asks for x of 1.0 MiB"):
        check_allocation(2**20 + 1, "x", "f.json", "field")
    monkeypatch.setenv(ENV_CAP, "nan")
    with pytest.raises(UserError, match="not a positive number"):
        check_allocation(1, "x")
