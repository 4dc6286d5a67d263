"""dlpipe: deep-learning segmentation of microscopy and X-ray tomography volumes."""

__version__ = "0.1.0"
