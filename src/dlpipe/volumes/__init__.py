"""Tomography volumes into chunked, resumable OME-Zarr pyramids (``dlpipe tile``).

Public API
----------
tile_volume
    Any supported input (TIFF, slice folder, raw, .npy, HDF5, Zarr) into ``VOL.zarr``:
    pyramid, labels, streaming statistics, z-slab split, completion marker last.
open_volume
    ``(image level 0, labels level 0 or None, dlpipe attrs)`` of a complete store.
open_source
    Slab-by-slab reader of an input volume.
StreamingStats, z_split, downsample_mean, downsample_mode, level_shapes
    The building blocks.
"""

from dlpipe.volumes.ngff import COMPLETE_MARKER, is_complete, open_volume
from dlpipe.volumes.pyramid import downsample_mean, downsample_mode, level_shapes
from dlpipe.volumes.readers import SUPPORTED_DTYPES, Source, natural_key, open_source
from dlpipe.volumes.split import z_split
from dlpipe.volumes.statistics import StreamingStats
from dlpipe.volumes.tile import DEFAULTS, tile_volume

__all__ = [
    "COMPLETE_MARKER",
    "DEFAULTS",
    "SUPPORTED_DTYPES",
    "Source",
    "StreamingStats",
    "downsample_mean",
    "downsample_mode",
    "is_complete",
    "level_shapes",
    "natural_key",
    "open_source",
    "open_volume",
    "tile_volume",
    "z_split",
]
