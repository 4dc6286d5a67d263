"""The one weights loader: ``weights.pt`` and training checkpoints (``last.pt``, ``best.pt``).

:func:`load_weights` never unpickles arbitrary objects (``torch.load(weights_only=True)``)
and maps every failure — a truncated, empty, hostile or foreign file — to one
:class:`~dlpipe.errors.UserError` naming the file.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from dlpipe.errors import UserError

__all__ = ["NOT_WEIGHTS", "load_weights"]

NOT_WEIGHTS = "not a dlpipe weights file"
"""The start of the message for a file that cannot be loaded as weights."""


def load_weights(path: str | Path, *, map_location: Any = "cpu", keys: tuple[str, ...] = ()) -> Any:
    """Load a weights file or checkpoint written by ``dlpipe train`` without unpickling code.

    Parameters
    ----------
    path : ``weights.pt`` (a state dict name -> tensor) or a checkpoint ``last.pt`` /
        ``best.pt`` (a dict holding at least ``keys``)
    map_location : as for :func:`torch.load`
    keys : keys a checkpoint must hold (empty: a state dict of tensors is expected)

    Returns
    -------
    dict
        What was saved: a state dict, or the checkpoint dict.

    Raises
    ------
    UserError
        Missing, empty, truncated or hostile file, or not the expected dict.
    """
    import torch  # heavy; only the model stages need it

    path = Path(path)
    if not path.is_file():
        raise UserError("weights file missing", path=path)
    if path.stat().st_size == 0:
        raise UserError(f"{NOT_WEIGHTS} (empty file)", path=path)
    try:
        with warnings.catch_warnings():  # torch warns about foreign pickles; we refuse them
            warnings.simplefilter("ignore", UserWarning)
            obj = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises many types for damaged or hostile files
        reason = str(exc).strip().splitlines()[0][:120] if str(exc).strip() else ""
        detail = f"{type(exc).__name__}" + (f": {reason}" if reason else "")
        if "Weights only load failed" in str(exc):
            detail = "it holds objects other than tensors (refused, never unpickled)"
        raise UserError(f"{NOT_WEIGHTS} ({detail})", path=path) from None
    if not isinstance(obj, dict):
        raise UserError(f"{NOT_WEIGHTS} (holds a {type(obj).__name__}, not a dict)", path=path)
    missing = [k for k in keys if k not in obj]
    if missing:
        raise UserError(f"{NOT_WEIGHTS} (checkpoint without {', '.join(missing)})", path=path)
    if not keys and not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise UserError(f"{NOT_WEIGHTS} (not a state dict of tensors)", path=path)
    return obj
