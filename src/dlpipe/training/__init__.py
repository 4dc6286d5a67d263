"""Training segmentation networks from Zarr.

Public API
----------
train
    Train the model named by ``params["model"]`` (a U-Net, 2D, 2.5D or 3D, on a tiled
    volume or a CVAT dataset Zarr; torchvision's Mask R-CNN on an instance dataset Zarr);
    every family runs the one loop :func:`fit` and writes the same model folder
    (``weights.pt``, ``card.json``, ...).
TASKS, UNetTask, MaskRCNNTask, fit
    The task table (``train.model`` -> task class), the two tasks and the one loop.
load_pretrained
    Load a local weights file into a Mask R-CNN (never downloads).
CropDataset, open_instances, random_crops, grid_crops, drop_cut_objects
    Mask R-CNN crops with augmentation; targets recomputed from the transformed masks.
make_loss, CrossEntropy, SoftDice, SoftJaccard2, Focal, WeightedSum, inverse_frequency_weights
    Losses honouring the ignore index.
Augment, dihedral_elements, apply_dihedral
    Augmentation applied identically to image and mask.
PatchDataset, PatchLoader, PatchSampler, PatchSpec, scan_labels
    Patches from Zarr with rare-class oversampling; one loader whose workers last the run.
open_source, write_labelled_volume, sparse_labels, sparse_labels_from_demo, statistics
    Reading and writing training stores; sparse (annotated-slice) labels.
confusion, jaccard, mean_jaccard, pixel_error
    Metrics that skip the ignore index.
"""

from dlpipe.labels import IGNORE_INDEX
from dlpipe.training.augment import Augment, apply_dihedral, dihedral_elements
from dlpipe.training.data import (
    PatchDataset,
    PatchLoader,
    PatchSampler,
    PatchSpec,
    scan_labels,
)
from dlpipe.training.instances import (
    CropDataset,
    CropSpec,
    drop_cut_objects,
    grid_crops,
    open_instances,
    random_crops,
)
from dlpipe.training.loop import NaNLossError, fit
from dlpipe.training.losses import (
    CrossEntropy,
    Focal,
    SoftDice,
    SoftJaccard2,
    WeightedSum,
    inverse_frequency_weights,
    make_loss,
)
from dlpipe.training.maskrcnn import MaskRCNNTask, load_pretrained
from dlpipe.training.metrics import confusion, jaccard, mean_jaccard, pixel_error
from dlpipe.training.stores import (
    open_source,
    sparse_labels,
    sparse_labels_from_demo,
    statistics,
    write_labelled_volume,
)
from dlpipe.training.train import TASKS, train
from dlpipe.training.unet import UNetTask

__all__ = [
    "IGNORE_INDEX",
    "TASKS",
    "Augment",
    "CropDataset",
    "CropSpec",
    "CrossEntropy",
    "Focal",
    "MaskRCNNTask",
    "NaNLossError",
    "PatchDataset",
    "PatchLoader",
    "PatchSampler",
    "PatchSpec",
    "SoftDice",
    "SoftJaccard2",
    "UNetTask",
    "WeightedSum",
    "apply_dihedral",
    "confusion",
    "dihedral_elements",
    "drop_cut_objects",
    "fit",
    "grid_crops",
    "inverse_frequency_weights",
    "jaccard",
    "load_pretrained",
    "make_loss",
    "mean_jaccard",
    "open_instances",
    "open_source",
    "pixel_error",
    "random_crops",
    "scan_labels",
    "sparse_labels",
    "sparse_labels_from_demo",
    "statistics",
    "train",
    "write_labelled_volume",
]
