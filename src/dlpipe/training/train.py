"""``train``: one entry point for every model family, dispatching on ``params["model"]``."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from dlpipe.errors import UserError
from dlpipe.results import StageResult


def train(
    store: str | Path,
    out_dir: str | Path,
    params: Mapping[str, Any],
    *,
    run: Any = None,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool | None = None,
) -> StageResult:
    """Train the model named by ``params["model"]`` (``unet`` or ``maskrcnn``).

    See :func:`dlpipe.training.train_unet` and :func:`dlpipe.training.train_maskrcnn`;
    both run the same loop (:mod:`dlpipe.training.loop`) and write the same model folder,
    logging to ``run`` as they go. Returns the model card, with one line for the user.
    """
    from dlpipe.training.maskrcnn import train_maskrcnn
    from dlpipe.training.unet import train_unet

    trainers = {"unet": train_unet, "maskrcnn": train_maskrcnn}
    if params["model"] not in trainers:
        raise UserError(f"unknown train.model {params['model']!r} ({', '.join(trainers)})")
    card = trainers[params["model"]](
        store, out_dir, params, run=run, resume=resume, overwrite=overwrite, progress=progress
    )
    return StageResult(card, summary=_summary(card, out_dir))


def _summary(card: Mapping[str, Any], out_dir: str | Path) -> str:
    """One line on the trained model."""
    if card["model"] == "maskrcnn":
        return (
            f"trained Mask R-CNN {card['architecture']['backbone']}-FPN "
            f"({card['parameters']} parameters), best epoch {card['best_epoch']}, "
            f"val loss {card['val_loss']}: {out_dir}"
        )
    return (
        f"trained {card['input']} U-Net ({card['parameters']} parameters), best epoch "
        f"{card['best_epoch']}, val mean Jaccard {card['val_mean_jaccard']}: {out_dir}"
    )
