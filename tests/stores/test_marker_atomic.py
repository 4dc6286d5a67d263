"""The completion marker and the atomic writes."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from dlpipe.errors import UserError
from dlpipe.stores import atomic, marker


def test_marker_name_and_round_trip(tmp_path: Path) -> None:
    assert marker.MARKER == ".dlpipe_complete"
    store = tmp_path / "s.zarr"
    store.mkdir()
    assert not marker.is_complete(store)
    path = marker.mark_complete(store)
    assert path == store / ".dlpipe_complete"
    assert path.read_bytes() == b"complete\n"
    assert marker.is_complete(store)
    marker.require_complete(store)  # no error
    assert sorted(p.name for p in store.iterdir()) == [".dlpipe_complete"]  # no temp left


def test_marker_keeps_the_callers_text(tmp_path: Path) -> None:
    marker.mark_complete(tmp_path, '{"complete": true}\n')
    assert (tmp_path / ".dlpipe_complete").read_text() == '{"complete": true}\n'


def test_require_complete_names_the_store(tmp_path: Path) -> None:
    with pytest.raises(UserError) as err:
        marker.require_complete(tmp_path, "volume", ": re-run it")
    assert (
        str(err.value) == f"{tmp_path}: incomplete volume (no .dlpipe_complete marker): re-run it"
    )
    assert err.value.path == str(tmp_path)


def test_atomic_path_renames_only_on_success(tmp_path: Path) -> None:
    final = tmp_path / "out.txt"
    with pytest.raises(RuntimeError), atomic.atomic_path(final) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed")
    assert not final.exists() and list(tmp_path.iterdir()) == []
    with atomic.atomic_path(final) as tmp:
        tmp.write_text("whole")
    assert final.read_text() == "whole"
    with pytest.raises(UserError, match="output exists"), atomic.atomic_path(final):
        pass
    atomic.write_text_atomic(final, "new")
    assert final.read_text() == "new"


def test_json_safe_and_write_json_atomic(tmp_path: Path) -> None:
    obj = {"a": [1.5, math.nan, np.float32(2.0)], "b": np.int64(3), "c": (math.inf,)}
    assert atomic.json_safe(obj) == {"a": [1.5, None, 2.0], "b": 3, "c": [None]}
    atomic.write_json_atomic(tmp_path / "x.json", {"b": np.int64(3)})
    assert (tmp_path / "x.json").read_text() == '{\n  "b": 3\n}\n'
    assert json.loads((tmp_path / "x.json").read_text()) == {"b": 3}


def test_staged_dir_moves_entries_and_refuses_clashes(tmp_path: Path) -> None:
    final = tmp_path / "demo"
    with atomic.staged_dir(final) as stage:
        (stage / "a.txt").write_text("a")
    assert (final / "a.txt").read_text() == "a"
    with pytest.raises(UserError, match="output exists"), atomic.staged_dir(final) as stage:
        (stage / "a.txt").write_text("b")
    assert (final / "a.txt").read_text() == "a"
    assert not (tmp_path / ".demo.partial").exists()
