"""×2 downsampling for the multiscale pyramid: see :mod:`dlpipe.stores.pyramid` (its home)."""

from __future__ import annotations

from dlpipe.stores.pyramid import downsample_mean, downsample_mode, level_shapes

__all__ = ["downsample_mean", "downsample_mode", "level_shapes"]
