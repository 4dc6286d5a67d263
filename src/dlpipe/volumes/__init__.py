"""Tomography volumes into chunked, resumable OME-Zarr pyramids (``dlpipe tile``).

Public API
----------
tile_volume
    Any supported input (TIFF, slice folder, raw, .npy, HDF5, Zarr) into ``VOL.zarr``:
    pyramid, labels, streaming statistics, z-slab split, completion marker last.
open_source
    Slab-by-slab reader of an input volume.
StreamingStats, z_split, downsample_mean, downsample_mode, level_shapes
    The building blocks.

The format of ``VOL.zarr`` (opening it, its NGFF attributes, the completion marker) lives in
:mod:`dlpipe.stores`.
"""

from dlpipe.volumes.pyramid import downsample_mean, downsample_mode, level_shapes
from dlpipe.volumes.readers import SUPPORTED_DTYPES, Source, natural_key, open_source
from dlpipe.volumes.split import z_split
from dlpipe.volumes.statistics import StreamingStats
from dlpipe.volumes.tile import DEFAULTS, tile_volume

__all__ = [
    "DEFAULTS",
    "SUPPORTED_DTYPES",
    "Source",
    "StreamingStats",
    "downsample_mean",
    "downsample_mode",
    "level_shapes",
    "natural_key",
    "open_source",
    "tile_volume",
    "z_split",
]
