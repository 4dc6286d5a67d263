"""Training segmentation networks from Zarr.

Public API
----------
train_unet
    Train a U-Net (2D, 2.5D or 3D) on a tiled volume or a CVAT dataset Zarr; writes a
    model folder with ``weights.pt`` and ``card.json``.
make_loss, CrossEntropy, SoftDice, SoftJaccard2, Focal, WeightedSum, inverse_frequency_weights
    Losses honouring the ignore index.
Augment, dihedral_elements, apply_dihedral
    Augmentation applied identically to image and mask.
PatchDataset, PatchSampler, PatchSpec, scan_labels
    Patches from Zarr with rare-class oversampling.
open_source, write_labelled_volume, sparse_labels, sparse_labels_from_demo, statistics
    Reading and writing training stores; sparse (annotated-slice) labels.
confusion, jaccard, mean_jaccard, pixel_error
    Metrics that skip the ignore index.
"""

from dlpipe.training.augment import Augment, apply_dihedral, dihedral_elements
from dlpipe.training.data import PatchDataset, PatchSampler, PatchSpec, scan_labels
from dlpipe.training.losses import (
    CrossEntropy,
    Focal,
    SoftDice,
    SoftJaccard2,
    WeightedSum,
    inverse_frequency_weights,
    make_loss,
)
from dlpipe.training.metrics import confusion, jaccard, mean_jaccard, pixel_error
from dlpipe.training.stores import (
    IGNORE_INDEX,
    open_source,
    sparse_labels,
    sparse_labels_from_demo,
    statistics,
    write_labelled_volume,
)
from dlpipe.training.unet import NaNLossError, train_unet

__all__ = [
    "IGNORE_INDEX",
    "Augment",
    "CrossEntropy",
    "Focal",
    "NaNLossError",
    "PatchDataset",
    "PatchSampler",
    "PatchSpec",
    "SoftDice",
    "SoftJaccard2",
    "WeightedSum",
    "apply_dihedral",
    "confusion",
    "dihedral_elements",
    "inverse_frequency_weights",
    "jaccard",
    "make_loss",
    "mean_jaccard",
    "open_source",
    "pixel_error",
    "scan_labels",
    "sparse_labels",
    "sparse_labels_from_demo",
    "statistics",
    "train_unet",
    "write_labelled_volume",
]
