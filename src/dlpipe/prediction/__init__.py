"""Chunked prediction of tiled volumes with a trained U-Net.

Public API
----------
predict_volume
    Predict ``VOL.zarr`` block by block (real-context halos, Gaussian-blended sliding
    windows, batched, optional dihedral TTA) into OME-Zarr labels, with Dask, resumable.
gather
    Mark an output complete once every block (e.g. of z-slab jobs) is done.
predict_region
    Gaussian-blended sliding-window probabilities of one in-memory normalised region.
load_model
    Rebuild a U-Net from ``card.json`` + ``weights.pt`` and check it.
gaussian_map, window_starts
    The importance map and the window grid.
predict_instances, predict_image, load_maskrcnn, detect_image, merge_detections,
paint_instances, Detection
    Tiled Mask R-CNN inference: tiles with overlap, one instance per object across tiles,
    instance label images and the per-instance table.
"""

from dlpipe.prediction.engine import predict_region
from dlpipe.prediction.instances import (
    Detection,
    detect_image,
    load_maskrcnn,
    merge_detections,
    paint_instances,
    predict_image,
    predict_instances,
)
from dlpipe.prediction.model import LoadedModel, load_model
from dlpipe.prediction.run import DEFAULTS, gather, predict_block, predict_volume
from dlpipe.prediction.windows import gaussian_map, window_starts

__all__ = [
    "DEFAULTS",
    "Detection",
    "LoadedModel",
    "detect_image",
    "gather",
    "gaussian_map",
    "load_maskrcnn",
    "load_model",
    "merge_detections",
    "paint_instances",
    "predict_block",
    "predict_image",
    "predict_instances",
    "predict_region",
    "predict_volume",
    "window_starts",
]
