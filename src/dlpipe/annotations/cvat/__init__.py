"""CVAT for images / video 1.1: read, rasterise, convert to a dataset Zarr, and write.

Public API
----------
convert
    CVAT XML or export zip -> Zarr group (images, semantic, instances) + objects table.
CvatReader
    Streaming, hardened reader yielding one :class:`Frame` per image.
rasterise_frame, DrawOptions
    One frame's shapes -> semantic map, instance map, objects.
decode_rle
    CVAT's mask RLE -> bool array.
write_cvat_xml
    Shapes (masks as RLE, polygons, ellipses, boxes, ...) as CVAT XML: the one writer.
Frame, Meta, Shape, Counts
    What the reader yields and tallies.
"""

from dlpipe.annotations.cvat._model import Counts, Frame, Meta, Shape
from dlpipe.annotations.cvat.convert import DEFAULTS, convert
from dlpipe.annotations.cvat.rasterise import DrawOptions, rasterise_frame
from dlpipe.annotations.cvat.reader import CvatReader, decode_rle
from dlpipe.annotations.cvat.write import write_cvat_xml

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
    "write_cvat_xml",
]
