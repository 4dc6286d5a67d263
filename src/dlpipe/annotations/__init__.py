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
"""

from dlpipe.annotations._model import Frame, Meta, Shape
from dlpipe.annotations._parse import Counts, CvatReader, decode_rle
from dlpipe.annotations.convert import DEFAULTS, convert
from dlpipe.annotations.rasterise import DrawOptions, rasterise_frame
from dlpipe.annotations.table import read_objects, table_path
from dlpipe.annotations.targets import targets, targets_from_arrays
from dlpipe.annotations.write import write_cvat_xml

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
    "read_objects",
    "table_path",
    "targets",
    "targets_from_arrays",
    "write_cvat_xml",
]
