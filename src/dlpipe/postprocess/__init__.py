"""Connected components across chunks, the blob table and rule-based clean-up.

Public API
----------
label_chunked
    Connected components of each phase, block by block, merged across block borders
    (the same partition as ``scipy.ndimage.label`` on the whole array).
blob_table
    Size, bounding box, centroid, principal axes, elongation, orientation per component.
postprocess
    Apply per-phase rules (size, elongation, area, ring artefacts, holes, opening/closing)
    and write the cleaned volume, the blob table and the change table.
"""

from dlpipe.postprocess.blobs import blob_table, write_csv
from dlpipe.postprocess.clean import contacts, decide, postprocess, present_phases
from dlpipe.postprocess.components import Components, blocks, label_chunked, structure

__all__ = [
    "Components",
    "blob_table",
    "blocks",
    "contacts",
    "decide",
    "label_chunked",
    "postprocess",
    "present_phases",
    "structure",
    "write_csv",
]
