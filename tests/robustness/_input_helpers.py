"""Helpers of the hostile-input tests: the CLI as a subprocess, tiny real inputs.

Every case asserts the exit code, that the one-line message names the culprit, and what
is (not) left on disk.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import tifffile

NO_TRACKING = json.dumps({"tracking": {"enabled": False}})
PREDICTION_TESTS = Path(__file__).resolve().parents[1] / "prediction"

TRAIN_TINY = [
    "--epochs",
    "1",
    "--device",
    "cpu",
    "--set",
    "steps_per_epoch=1",
    "--set",
    "batch_size=2",
    "--set",
    "patch_size=[8,8]",
    "--set",
    "workers=0",
    "--set",
    "val_max_patches=2",
    "--set",
    "architecture.depth=2",
    "--set",
    "architecture.base_filters=2",
]


def dlpipe(
    *args: object, cwd: Path, env: dict[str, str] | None = None, config_json: str = NO_TRACKING
) -> tuple[int, str, str]:
    """Run ``dlpipe --config-json ... ARGS`` as a subprocess; (exit code, stdout, stderr)."""
    full = dict(os.environ)
    full["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{full.get('PATH', '')}"
    full.pop("MLFLOW_TRACKING_URI", None)
    full.update(env or {})
    cmd = ["dlpipe", "--config-json", config_json, *[str(a) for a in args]]
    res = subprocess.run(cmd, capture_output=True, text=True, env=full, cwd=cwd, timeout=600)
    return res.returncode, res.stdout, res.stderr


_INFO = re.compile(r"^\d\d:\d\d:\d\d INFO ")


def one_line_error(err: str) -> str:
    """The error of a refused command: exactly one line besides INFO log lines, no
    traceback; returned."""
    lines = [line for line in err.splitlines() if line.strip() and not _INFO.match(line)]
    assert "Traceback" not in err, err
    assert len(lines) == 1, err
    return lines[0]


def leftovers(folder: Path, name: str) -> list[str]:
    """Entries of ``folder`` named after output ``name`` (final or temporary)."""
    return sorted(p.name for p in folder.iterdir() if name in p.name)


def phantom(shape: tuple[int, int, int] = (12, 32, 32), seed: int = 0) -> tuple[np.ndarray, ...]:
    """A uint8 image and 3-class uint8 labels (thresholds of the image)."""
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 255, shape, dtype=np.uint8)
    labels = np.digitize(image, [85, 170]).astype(np.uint8)
    return image, labels


def tiled_volume(tmp: Path, name: str = "vol.zarr", *, labels: bool = True) -> Path:
    """``dlpipe tile`` of a small phantom (with its labels): a real VOL.zarr."""
    image, lab = phantom()
    tifffile.imwrite(tmp / "img.tif", image)
    args: list[object] = ["tile", tmp / "img.tif", "--out", tmp / name, "--chunks", "4", "16", "16"]
    if labels:
        tifffile.imwrite(tmp / "lab.tif", lab)
        args += ["--labels", tmp / "lab.tif"]
    code, _, err = dlpipe(*args, cwd=tmp)
    assert code == 0, err
    return tmp / name


def tiny_model(tmp: Path, **arch: object) -> Path:
    """A tiny 2D U-Net model folder (card.json + weights.pt) of the prediction tests."""
    sys.path.insert(0, str(PREDICTION_TESTS))
    try:
        from _predict_helpers import train_model
    finally:
        sys.path.remove(str(PREDICTION_TESTS))
    model = train_model(tmp / "model", "2d", steps=2)
    if arch:
        card = json.loads((model / "card.json").read_text())
        card["architecture"].update(arch)
        (model / "card.json").write_text(json.dumps(card))
    return model


def cvat_xml(body: str, labels: tuple[str, ...] = ("a", "b")) -> str:
    """A CVAT 1.1 image export around ``body`` (the ``<image>`` elements)."""
    names = "".join(f"<label><name>{n}</name></label>" for n in labels)
    return (
        '<?xml version="1.0" encoding="utf-8"?>\n<annotations><version>1.1</version>'
        f"<meta><task><labels>{names}</labels></task></meta>{body}</annotations>\n"
    )


def image_xml(shapes: str = "", *, name: str = "i.png", width: int = 8, height: int = 6) -> str:
    return f'<image id="0" name="{name}" width="{width}" height="{height}">{shapes}</image>'
