"""Fixtures: tiny trained U-Nets (2D, 2.5D, 3D) and small tiled volumes."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _predict_helpers import phantom, train_model, write_volume  # noqa: E402


@pytest.fixture(scope="session")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Tiny U-Nets trained for a few steps: {"2d": dir, "2.5d": dir, "3d": dir}."""
    root = tmp_path_factory.mktemp("models")
    return {m: train_model(root / m.replace(".", "_"), m) for m in ("2d", "2.5d", "3d")}


@pytest.fixture()
def volume(tmp_path: Path) -> Path:
    """A complete 12×72×80 uint8 tiled volume (chunks 8×32×32)."""
    image, _ = phantom((12, 72, 80), seed=7)
    return write_volume(tmp_path / "vol.zarr", image)
