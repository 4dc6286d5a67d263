"""The model card: ``MODEL_DIR/card.json``, written last by ``dlpipe train``.

The card names the model family (``"model"``: ``"unet"``, ``"maskrcnn"`` or
``"instance-unet"``), its
architecture, input kind, classes, normalisation and training settings; prediction
rebuilds the network from it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from dlpipe.errors import UserError
from dlpipe.stores.atomic import write_json_atomic

__all__ = ["CARD", "FAMILIES", "RUN_ID", "model_family", "read_card", "train_run_id", "write_card"]

CARD = "card.json"
"""File name of the model card inside a model folder."""
FAMILIES = ("unet", "maskrcnn", "instance-unet")
"""The model families a card can name."""
RUN_ID = "mlflow_run_id"
"""Card field: the id of the MLflow run that trained the model (null when tracking was off)."""


def read_card(model_dir: str | Path) -> dict[str, Any]:
    """``MODEL_DIR/card.json`` as a dict (any model family).

    Raises
    ------
    UserError
        No ``card.json`` (not a model folder), invalid JSON, or not a JSON object.
    """
    model_dir = Path(model_dir)
    path = model_dir / CARD
    if not path.is_file():
        raise UserError("no card.json: not a model folder from `dlpipe train`", path=model_dir)
    try:
        card = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise UserError(f"card.json is not valid JSON ({exc.msg})", path=path) from None
    if not isinstance(card, dict):
        raise UserError("card.json is not a JSON object", path=path)
    return card


def model_family(card: Mapping[str, Any], path: str | Path | None = None) -> str:
    """The model family a card names: ``"unet"``, ``"maskrcnn"`` or ``"instance-unet"``.

    Parameters
    ----------
    card : the card (see :func:`read_card`)
    path : named in the error

    Raises
    ------
    UserError
        The card has no ``model`` or names another family.
    """
    family = card.get("model")
    if family not in FAMILIES:
        raise UserError(
            f"model card names model {family!r}; expected one of {', '.join(FAMILIES)}",
            path=path,
        )
    return str(family)


def write_card(model_dir: str | Path, card: Mapping[str, Any]) -> Path:
    """Write ``MODEL_DIR/card.json`` (indented strict JSON, atomically); call it last."""
    path = Path(model_dir) / CARD
    write_json_atomic(path, dict(card), overwrite=True)  # its model folder was checked
    return path


def train_run_id(model_dir: str | Path | None) -> str:
    """The MLflow run id recorded in ``MODEL_DIR/card.json`` ("" if none or no card)."""
    if not model_dir:
        return ""
    path = Path(model_dir) / CARD
    try:
        card = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return ""
    value = card.get(RUN_ID) if isinstance(card, dict) else None
    return str(value) if value else ""
