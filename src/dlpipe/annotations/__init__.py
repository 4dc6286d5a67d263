"""CVAT annotations to U-Net masks and Mask R-CNN targets.

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
read_coco, read_instance_folders
    COCO instances JSON + images, or one folder per image with one mask PNG per object
    (DSB2018), to a dataset Zarr in the same layout as :func:`convert`.
write_instance_dataset
    Images with semantic and instance maps to that layout (padded, atomic).
"""

from dlpipe.annotations._model import Frame, Meta, Shape
from dlpipe.annotations._parse import Counts, CvatReader, decode_rle
from dlpipe.annotations.coco import read_coco
from dlpipe.annotations.convert import DEFAULTS, convert
from dlpipe.annotations.instance_dataset import write_instance_dataset
from dlpipe.annotations.instance_folders import read_instance_folders
from dlpipe.annotations.rasterise import DrawOptions, rasterise_frame
from dlpipe.annotations.targets import targets, targets_from_arrays
from dlpipe.annotations.write import write_cvat_xml
from dlpipe.stores.table import read_objects, table_path

__all__ = [
    "DEFAULTS",
    "Counts",
    "CvatReader",
    "DrawOptions",
    "Frame",
    "Meta",
    "Shape",
    "convert",
    "decode_rle",
    "rasterise_frame",
    "read_coco",
    "read_instance_folders",
    "read_objects",
    "table_path",
    "targets",
    "targets_from_arrays",
    "write_cvat_xml",
    "write_instance_dataset",
]
