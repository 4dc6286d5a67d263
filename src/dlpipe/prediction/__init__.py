"""Prediction with a trained model: a U-Net's chunked volumes, a Mask R-CNN's instances.

Public API
----------
predict
    Predict a volume (or a dataset Zarr) with a model folder, dispatching on its card: a
    U-Net's blocks (:func:`predict_volume`) or a Mask R-CNN's instances
    (:func:`predict_instances`).
predict_volume
    Predict ``VOL.zarr`` block by block (real-context halos, Gaussian-blended sliding
    windows, batched, optional dihedral TTA) into OME-Zarr labels, with Dask, resumable.
gather
    Mark an output complete once every block (e.g. of z-slab jobs) is done.
predict_block
    One block task of a U-Net run.
predict_region
    Gaussian-blended sliding-window probabilities of one in-memory normalised region.
load_model, LoadedModel
    Rebuild a U-Net from ``card.json`` + ``weights.pt`` and check it.
gaussian_map, window_starts
    The importance map and the window grid.
peak_rss_mb
    Peak resident memory of this process in MiB (runs' summaries, benchmarks).
predict_instances, predict_image, load_maskrcnn, detect_image, merge_detections,
paint_instances, Detection
    Tiled Mask R-CNN inference: tiles with overlap, one instance per object across tiles,
    instance label images and the per-instance table.

Modules
-------
run (:func:`predict`, :func:`predict_volume`), block (the block task and its process
cache), output (``PRED.zarr``'s layout, resume manifest, block markers, gather), memory
(memory model, RSS, malloc tuning), schedulers (Dask), engine and windows (sliding
windows), model (U-Net card and weights), volume (input reads); maskrcnn (Mask R-CNN
tiling), detections (merging across tiles, painting), instances (the Mask R-CNN run).
"""

from dlpipe.prediction.block import predict_block
from dlpipe.prediction.detections import Detection, merge_detections, paint_instances
from dlpipe.prediction.engine import predict_region
from dlpipe.prediction.instances import predict_instances
from dlpipe.prediction.maskrcnn import detect_image, load_maskrcnn, predict_image
from dlpipe.prediction.memory import peak_rss_mb
from dlpipe.prediction.model import LoadedModel, load_model
from dlpipe.prediction.output import gather
from dlpipe.prediction.run import DEFAULTS, predict, predict_volume
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
    "peak_rss_mb",
    "predict",
    "predict_block",
    "predict_image",
    "predict_instances",
    "predict_region",
    "predict_volume",
    "window_starts",
]
