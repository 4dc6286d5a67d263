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
    with pytest.raises(UserError, match="output exists"):
        atomic.write_text_atomic(final, "new")
    atomic.write_text_atomic(final, "new", overwrite=True)
    assert final.read_text() == "new"


def test_check_output_one_rule(tmp_path: Path) -> None:
    """Absent: write; a user's file or folder: refused; a failed run's leftover: replaced."""
    assert atomic.check_output(tmp_path / "new.json") is False
    user = tmp_path / "mine.zarr"
    user.mkdir()
    (user / "zarr.json").write_text('{"attributes": {}}')
    with pytest.raises(UserError, match="output exists"):
        atomic.check_output(user)
    assert atomic.check_output(user, overwrite=True) is True
    # a dlpipe store without its marker, a model folder without card.json, an empty folder
    store = tmp_path / "pred.zarr"
    store.mkdir()
    (store / "zarr.json").write_text('{"attributes": {"dlpipe": {"complete": false}}}')
    model = tmp_path / "model"
    (model / "checkpoints").mkdir(parents=True)
    (model / "metrics.csv").write_text("epoch\n")
    empty = tmp_path / "empty"
    (empty / "plots").mkdir(parents=True)
    for leftover in (store, model, empty):
        assert atomic.is_leftover(leftover) and atomic.check_output(leftover) is True
    marker.mark_complete(store)
    (model / "card.json").write_text("{}")
    for complete in (store, model):
        assert not atomic.is_leftover(complete)
        with pytest.raises(UserError, match="output exists"):
            atomic.check_output(complete)
    # an output that is an input is refused even with overwrite
    with pytest.raises(UserError, match="also an input"):
        atomic.check_output(user, overwrite=True, inputs=[user])


def test_stale_temporaries_of_dead_processes_are_removed(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    final = tmp_path / "out.zarr"
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    pid = int(dead.stdout)
    host = atomic._HOST
    stale = tmp_path / f".out.zarr.{host}-{pid}.abc.tmp"
    (stale / "0").mkdir(parents=True)
    live = tmp_path / f".out.zarr.{host}-{os.getppid()}.abc.tmp"
    live.mkdir()
    other = tmp_path / f".other.zarr.{host}-{pid}.abc.tmp"
    other.mkdir()
    with atomic.atomic_path(final) as tmp:
        assert f"{host}-{os.getpid()}." in tmp.name
        tmp.mkdir()
    assert not stale.exists() and live.exists() and other.exists() and final.is_dir()


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
