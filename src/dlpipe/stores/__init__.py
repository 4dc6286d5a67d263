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
    ``staged_dir``) and the one rule for an existing output (``check_output``,
    ``is_leftover``).
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
instance_table
    The instance table of an instance prediction (``write_instance_table``,
    ``read_instance_scores``): every instance model writes it, evaluation reads it.
card
    The model card (``read_card``, ``model_family``, ``write_card``).
weights
    The one weights loader (``load_weights``): weights and checkpoints, never unpickled.
chunks
    Chunk reads that name a damaged or missing chunk (``read_checked``, ``CheckedArray``,
    ``check_missing_chunks``).
guards
    The one size guard (``check_allocation``) for sizes read from a user's file.
"""

from __future__ import annotations

import importlib
from typing import Any

_HOME = {
    "atomic_path": "atomic",
    "check_output": "atomic",
    "check_outputs": "atomic",
    "is_leftover": "atomic",
    "json_safe": "atomic",
    "staged_dir": "atomic",
    "write_json_atomic": "atomic",
    "write_text_atomic": "atomic",
    "model_family": "card",
    "read_card": "card",
    "write_card": "card",
    "Dataset": "dataset",
    "DatasetWriter": "dataset",
    "open_dataset": "dataset",
    "MARKER": "marker",
    "is_complete": "marker",
    "mark_complete": "marker",
    "require_complete": "marker",
    "read_instance_scores": "instance_table",
    "write_instance_table": "instance_table",
    "ObjectsTable": "table",
    "read_objects": "table",
    "table_path": "table",
    "Volume": "volume",
    "dlpipe_attrs": "volume",
    "open_labels": "volume",
    "open_volume": "volume",
    "require_finished": "volume",
    "write_labels": "volume",
}
"""Where each public name lives; submodules load on first use, so that importing
``dlpipe.stores.atomic`` or ``.marker`` does not import zarr."""


def __getattr__(name: str) -> Any:
    if name in _HOME:
        return getattr(importlib.import_module(f"dlpipe.stores.{_HOME[name]}"), name)
    raise AttributeError(f"module 'dlpipe.stores' has no attribute {name!r}")


__all__ = [
    "MARKER",
    "Dataset",
    "DatasetWriter",
    "ObjectsTable",
    "Volume",
    "atomic_path",
    "check_output",
    "check_outputs",
    "dlpipe_attrs",
    "is_complete",
    "is_leftover",
    "json_safe",
    "mark_complete",
    "model_family",
    "open_dataset",
    "open_labels",
    "open_volume",
    "read_card",
    "read_instance_scores",
    "read_objects",
    "require_complete",
    "require_finished",
    "staged_dir",
    "table_path",
    "write_card",
    "write_instance_table",
    "write_json_atomic",
    "write_labels",
    "write_text_atomic",
]
