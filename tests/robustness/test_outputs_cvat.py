"""Issue 17 item 9: `kill -9` of `dlpipe cvat` on a large export leaves no parser process
running, and the next run removes the killed run's temporary output."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from _robust import UNTRACKED

from dlpipe.annotations.cvat import _background


def _export(path: Path, n_images: int = 1700, n_shapes: int = 40) -> Path:
    """A CVAT 1.1 XML of squares, past the size from which a child process parses it."""
    parts = [
        '<?xml version="1.0" encoding="utf-8"?>\n<annotations><version>1.1</version><meta>'
        "<task><labels><label><name>fibre</name><type>polygon</type></label></labels>"
        "</task></meta>\n"
    ]
    for i in range(n_images):
        shapes = []
        for k in range(n_shapes):
            x, y = (k * 7) % 56, (k * 11) % 56
            pts = f"{x}.00,{y}.00;{x + 6}.00,{y}.00;{x + 6}.00,{y + 6}.00;{x}.00,{y + 6}.00"
            shapes.append(
                '<polygon label="fibre" occluded="0" source="manual" z_order="0" '
                f'points="{pts}"></polygon>'
            )
        parts.append(
            f'<image id="{i}" name="img_{i:05d}.png" width="64" height="64">'
            + "".join(shapes)
            + "</image>\n"
        )
    parts.append("</annotations>\n")
    path.write_text("".join(parts))
    assert path.stat().st_size >= _background.MIN_BYTES
    return path


def _children(pid: int) -> list[int]:
    kids = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                stat = Path(f"/proc/{d}/stat").read_text()
            except OSError:
                continue
            if int(stat[stat.rindex(")") + 2 :].split()[1]) == pid:
                kids.append(int(d))
    return kids


def _running(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2 :].split()[0] not in ("Z", "X")  # a zombie is dead


def test_killed_cvat_leaves_no_process_and_no_temporary(tmp_path: Path, env) -> None:
    if not Path("/proc/self/stat").is_file():
        pytest.skip("needs /proc (Linux)")
    _export(tmp_path / "big.xml")
    cmd = ["dlpipe", "--log-level", "warning", "--config-json", UNTRACKED, "cvat", "big.xml"]
    cmd += ["--no-images", "--out", "c.zarr"]
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stderr=subprocess.PIPE, text=True)
    kids: list[int] = []
    t0 = time.monotonic()
    while time.monotonic() - t0 < 120:  # the parser runs and the output is being written
        kids = _children(proc.pid)
        if kids and list(tmp_path.glob(".c.zarr.*.tmp")):
            break
        time.sleep(0.1)
    assert kids and list(tmp_path.glob(".c.zarr.*.tmp")), "cvat never started its parser"
    assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + 10
    while any(_running(k) for k in kids) and time.monotonic() < deadline:
        time.sleep(0.1)
    left = [k for k in kids if _running(k)]
    for k in left:  # do not leave them behind if the test fails
        os.kill(k, signal.SIGKILL)
    assert not left, "parser processes outlived the killed dlpipe cvat"
    stale = list(tmp_path.glob(".c.zarr.*.tmp"))
    assert len(stale) == 1 and f"-{proc.pid}." in stale[0].name  # the pid is in the name
    assert not (tmp_path / "c.zarr").exists()
    # the rerun (no --overwrite) removes the killed run's temporary and writes c.zarr
    done = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert not stale[0].exists() and not list(tmp_path.glob(".c.zarr.*.tmp"))
    assert (tmp_path / "c.zarr" / ".dlpipe_complete").is_file()
    assert "1700 images" in done.stdout
