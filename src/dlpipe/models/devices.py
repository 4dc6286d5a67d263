"""Where a network runs: the ``device`` setting (``auto``, ``cpu``, ``cuda``) as a torch device."""

from __future__ import annotations

import torch

from dlpipe.errors import UserError

__all__ = ["torch_device"]


def torch_device(name: str, option: str = "device") -> torch.device:
    """``auto``, ``cpu`` or ``cuda`` as a torch device (``auto`` picks CUDA when present).

    Parameters
    ----------
    name : the setting's value
    option : the setting's name in messages (``train.device``, ``predict.device``)

    Raises
    ------
    UserError
        ``cuda`` was asked for and no CUDA device is available.
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError(f"{option} is cuda but no CUDA device is available")
    return torch.device(name)
