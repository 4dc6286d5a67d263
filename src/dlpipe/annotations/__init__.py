"""Annotations to U-Net masks and Mask R-CNN targets: CVAT (:mod:`dlpipe.annotations.cvat`),
COCO and instance folders, all to one dataset Zarr layout.

Public API
----------
convert
    CVAT XML or export zip -> Zarr group (images, semantic, instances) + objects table.
targets
    torchvision Mask R-CNN targets (boxes, labels, masks) of one image of a dataset.
CvatReader
    Streaming, hardened reader yielding one :class:`Frame` per image.
rasterise_frame
    One frame's shapes -> semantic map, instance map, objects.
read_objects, table_path
    The objects table (Parquet or CSV) of a converted dataset.
decode_rle, write_cvat_xml
    CVAT's mask RLE to a bool array; shapes written as CVAT XML (the one writer).
read_coco, read_instance_folders
    COCO instances JSON + images, or one folder per image with one mask PNG per object
    (DSB2018), to a dataset Zarr in the same layout as :func:`convert`.
write_instance_dataset
    Images with semantic and instance maps to that layout (padded, atomic).
export_slices, place_annotations
    The annotation loop: slices of a tiled volume out as PNGs for a CVAT task (with
    predicted labels as CVAT masks), and a CVAT export back into
    ``VOL.zarr/labels/annotations`` at those slices (:mod:`dlpipe.annotations.slices`,
    :mod:`dlpipe.annotations.placement`).
"""

from dlpipe.annotations import cvat
from dlpipe.annotations.coco import read_coco
from dlpipe.annotations.cvat import *  # noqa: F403 (re-exports cvat.__all__)
from dlpipe.annotations.instance_dataset import write_instance_dataset
from dlpipe.annotations.instance_folders import read_instance_folders
from dlpipe.annotations.placement import place_annotations
from dlpipe.annotations.slices import export_slices
from dlpipe.annotations.targets import targets, targets_from_arrays
from dlpipe.stores.table import read_objects, table_path

__all__ = [
    *cvat.__all__,
    "export_slices",
    "place_annotations",
    "read_coco",
    "read_instance_folders",
    "read_objects",
    "table_path",
    "targets",
    "targets_from_arrays",
    "write_instance_dataset",
]
