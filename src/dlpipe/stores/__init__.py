"""dlpipe's hand-over formats: what one stage writes and another reads.

Every stage imports down into this package; it imports no stage (only
:mod:`dlpipe.errors` and third-party libraries).

Modules
-------
marker
    The completion marker written last into every store (``is_complete``,
    ``mark_complete``, ``require_complete``).
atomic
    Atomic writes (``atomic_path``, ``write_text_atomic``, ``write_json_atomic``,
    ``staged_dir``).
ngff
    OME-Zarr attributes: one builder, one palette, class names as label ``properties``.
volume
    The tiled volume (``open_volume``) and label volumes (``open_labels``,
    ``write_labels``) carrying units and voxel size.
dataset
    The dataset Zarr of ``dlpipe cvat`` / ``dlpipe import`` (``open_dataset``,
    ``DatasetWriter``, ``create_dataset_array``, ``finish_dataset``).
table
    The objects table of a dataset (``ObjectsTable``, ``read_objects``, ``table_path``).
card
    The model card (``read_card``, ``model_family``, ``write_card``).
"""

from dlpipe.stores.atomic import (
    atomic_path,
    json_safe,
    staged_dir,
    write_json_atomic,
    write_text_atomic,
)
from dlpipe.stores.card import model_family, read_card, write_card
from dlpipe.stores.dataset import Dataset, DatasetWriter, open_dataset
from dlpipe.stores.marker import MARKER, is_complete, mark_complete, require_complete
from dlpipe.stores.table import ObjectsTable, read_objects, table_path
from dlpipe.stores.volume import Volume, dlpipe_attrs, open_labels, open_volume, write_labels

__all__ = [
    "MARKER",
    "Dataset",
    "DatasetWriter",
    "ObjectsTable",
    "Volume",
    "atomic_path",
    "dlpipe_attrs",
    "is_complete",
    "json_safe",
    "mark_complete",
    "model_family",
    "open_dataset",
    "open_labels",
    "open_volume",
    "read_card",
    "read_objects",
    "require_complete",
    "staged_dir",
    "table_path",
    "write_card",
    "write_json_atomic",
    "write_labels",
    "write_text_atomic",
]
