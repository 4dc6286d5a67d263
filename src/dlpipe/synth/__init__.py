"""The built-in demo data: a synthetic X-ray CT scan of a glass-fibre composite.

Public API
----------
make_demo
    Write ``volume.tif``, ``labels.tif``, ``cvat/`` and ``metadata.json`` to a folder.
fibre_composite, ct_image
    The phantom (phases) and the imaging model, as arrays.
"""

from dlpipe.synth.demo import annotated_slices, make_demo
from dlpipe.synth.imaging import ct_image
from dlpipe.synth.phantom import PHASES, fibre_composite

__all__ = ["PHASES", "annotated_slices", "ct_image", "fibre_composite", "make_demo"]
