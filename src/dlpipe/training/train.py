"""``train``: the one entry point; the task table maps ``params["model"]`` to its task."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from dlpipe.errors import UserError
from dlpipe.results import StageResult, score
from dlpipe.training.instance_unet import InstanceUNetTask
from dlpipe.training.loop import fit, prepare_out
from dlpipe.training.maskrcnn import MaskRCNNTask
from dlpipe.training.unet import UNetTask

__all__ = ["TASKS", "train"]

TASKS: dict[str, type] = {
    "unet": UNetTask,
    "maskrcnn": MaskRCNNTask,
    "instance-unet": InstanceUNetTask,
}
"""Model family (``train.model``, the card's ``model``) -> its task class."""


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
    """Train the model named by ``params["model"]`` and write its model folder.

    Every family runs the one loop (:func:`dlpipe.training.loop.fit`) and writes the same
    layout.

    Parameters
    ----------
    store : for ``unet``, ``VOL.zarr`` (image ``0``, labels ``labels/<name>/0``, split and
        statistics in the ``dlpipe`` attribute) or a CVAT dataset Zarr (``images``,
        ``semantic``); for ``maskrcnn``, a dataset Zarr from ``dlpipe cvat`` or
        ``dlpipe import`` (``images``, ``semantic``, ``instances``, attribute ``classes``),
        whose last ``val_fraction`` of images validate
    out_dir : model folder: ``weights.pt``, ``card.json`` (written last), ``metrics.csv``,
        ``plots/``, ``checkpoints/{last,best}.pt``
    params : the ``train`` config section (``model``: a key of :data:`TASKS`; Mask R-CNN's
        own keys in ``maskrcnn``)
    run : a :class:`dlpipe.tracking.StageRun` (metrics per epoch, plots, card as artifacts)
    resume : continue from ``checkpoints/last.pt`` (same settings; ``epochs`` may grow)
    overwrite : replace an existing model folder
    progress : show a progress bar (None: when the output is a terminal)

    Returns
    -------
    StageResult
        The model card (a Mask R-CNN rebuilds with :func:`dlpipe.models.maskrcnn_from_card`),
        with one line for the user.

    Raises
    ------
    UserError
        Unknown model or bad input (see docs/training.md);
        :class:`~dlpipe.training.NaNLossError` when the loss stops being finite (the last
        good checkpoint stays in place).
    """
    if params["model"] not in TASKS:
        raise UserError(f"unknown train.model {params['model']!r} ({', '.join(TASKS)})")
    prepare_out(Path(out_dir), resume=resume, overwrite=overwrite)
    task = TASKS[params["model"]](store, params)
    card = fit(task, store, out_dir, run=run, resume=resume, progress=progress)
    return StageResult(card, summary=_summary(card, out_dir))


def _summary(card: Mapping[str, Any], out_dir: str | Path) -> str:
    """One line on the trained model."""
    if card["model"] == "instance-unet":
        ws = card["watershed"]
        tuned = (
            f"watershed tuned on validation: F1@0.5 {score(ws.get('val_f1'))}"
            if ws.get("tuned")
            else "watershed not tuned"
        )
        return (
            f"trained {card['input']} instance U-Net ({card['parameters']} parameters), best "
            f"epoch {card['best_epoch']}, val loss {score(card['val_loss'])}, {tuned}: {out_dir}"
        )
    if card["model"] == "maskrcnn":
        return (
            f"trained Mask R-CNN {card['architecture']['backbone']}-FPN "
            f"({card['parameters']} parameters), best epoch {card['best_epoch']}, "
            f"val loss {score(card['val_loss'])}: {out_dir}"
        )
    return (
        f"trained {card['input']} U-Net ({card['parameters']} parameters), best epoch "
        f"{card['best_epoch']}, val mean Jaccard {score(card['val_mean_jaccard'])}: {out_dir}"
    )
