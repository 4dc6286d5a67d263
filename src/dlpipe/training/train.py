"""``train``: one entry point for every model family, dispatching on ``params["model"]``."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from dlpipe.errors import UserError


def train(
    store: str | Path,
    out_dir: str | Path,
    params: Mapping[str, Any],
    *,
    run: Any = None,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool | None = None,
) -> dict[str, Any]:
    """Train the model named by ``params["model"]`` (``unet`` or ``maskrcnn``).

    See :func:`dlpipe.training.train_unet` and :func:`dlpipe.training.train_maskrcnn`;
    both run the same loop (:mod:`dlpipe.training.loop`) and write the same model folder.
    """
    from dlpipe.training.maskrcnn import train_maskrcnn
    from dlpipe.training.unet import train_unet

    trainers = {"unet": train_unet, "maskrcnn": train_maskrcnn}
    if params["model"] not in trainers:
        raise UserError(f"unknown train.model {params['model']!r} ({', '.join(trainers)})")
    return trainers[params["model"]](
        store, out_dir, params, run=run, resume=resume, overwrite=overwrite, progress=progress
    )
