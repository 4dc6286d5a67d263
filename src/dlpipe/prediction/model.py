"""A U-Net from its model card: load, check, hash.

Public API
----------
LoadedModel, load_model
    A U-Net rebuilt from ``card.json`` + ``weights.pt`` and checked.
fully_convolutional, receptive_reach, size_multiple
    Whether a card's network takes any input size with the same result per voxel (so that
    a prediction may use windows as large as memory allows), how far a voxel's result
    reaches into its neighbours, and the multiple every input side must be.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from dlpipe.errors import UserError
from dlpipe.models import build_unet
from dlpipe.stores.card import read_card
from dlpipe.stores.weights import load_weights

__all__ = [
    "INPUTS",
    "LoadedModel",
    "fully_convolutional",
    "load_model",
    "receptive_reach",
    "size_multiple",
]

INPUTS = ("2d", "2.5d", "3d")


@dataclass
class LoadedModel:
    """A model rebuilt from its card, in eval mode on the CPU.

    ``window`` is the sliding-window shape: (y, x) for 2D/2.5D, (z, y, x) for 3D;
    ``context`` the number of z-slices one 2D input holds (k for 2.5D, else 1).
    """

    card: dict[str, Any]
    net: torch.nn.Module
    mode: str
    context: int
    window: tuple[int, ...]
    classes: list[str]
    digest: str


def _check_card(model_dir: Path, card: dict[str, Any]) -> dict[str, Any]:
    path = model_dir / "card.json"
    for key in ("model", "architecture", "input", "classes"):
        if key not in card:
            raise UserError(f"model card has no {key!r}", path=path)
    if card["model"] != "unet":
        raise UserError(
            f"`dlpipe predict` runs U-Net models; this card is {card['model']!r}", path=path
        )
    if card["input"] not in INPUTS:
        raise UserError(f"model card input {card['input']!r} is not one of {INPUTS}", path=path)
    return card


def load_model(
    model_dir: str | Path,
    window: list[int] | None = None,
    card: Mapping[str, Any] | None = None,
) -> LoadedModel:
    """Rebuild the network of ``MODEL_DIR/card.json`` and load ``MODEL_DIR/weights.pt``.

    Parameters
    ----------
    model_dir : folder written by ``dlpipe train``
    window : sliding-window shape overriding the card's ``patch_size`` (None = card's)
    card : the model card when the caller has read it already (None: read it here)

    Raises
    ------
    UserError
        Missing or inconsistent card, weights that do not fit the architecture, or
        channels that do not match the input kind.
    """
    model_dir = Path(model_dir)
    card = _check_card(model_dir, dict(card) if card is not None else read_card(model_dir))
    mode = card["input"]
    arch = dict(card["architecture"])
    context = int(card.get("context_slices", 1)) if mode == "2.5d" else 1
    if mode == "2.5d" and context % 2 == 0:
        raise UserError(f"context_slices must be odd, got {context}", path=model_dir / "card.json")
    dim = 3 if mode == "3d" else 2
    if int(arch.get("dim", 2)) != dim:
        raise UserError(
            f"model card input {mode!r} needs a {dim}D network, architecture has dim "
            f"{arch.get('dim', 2)}",
            path=model_dir / "card.json",
        )
    in_ch = int(arch.get("in_channels", 1))
    if in_ch != context:
        raise UserError(
            f"channels do not fit: the network takes {in_ch} input channels but a {mode} "
            f"input of this volume gives {context} (one-channel volume"
            + (f", {context} slices" if mode == "2.5d" else "")
            + ")",
            path=model_dir / "card.json",
        )
    n_classes = int(arch.get("n_classes", 2))
    if n_classes != len(card["classes"]):
        raise UserError(
            f"the network has {n_classes} outputs but the card lists {len(card['classes'])} "
            "classes",
            path=model_dir / "card.json",
        )
    if n_classes > 255:
        raise UserError(f"{n_classes} classes do not fit uint8 labels", path=model_dir)
    weights = model_dir / card.get("weights", "weights.pt")
    if not weights.is_file():
        raise UserError("weights file missing", path=weights)
    patch = [int(v) for v in (window or card.get("patch_size") or [])]
    if len(patch) < dim:
        raise UserError(
            f"a {mode} model needs a window of {dim} sides, got {patch}", path=model_dir
        )
    patch = patch[-dim:]
    mult = 2 ** (int(arch.get("depth", 4)) - 1)
    if any(p % mult for p in patch):
        raise UserError(f"window {patch} must be multiples of {mult} (2^(depth-1))")
    net = build_unet(arch, source=model_dir / "card.json")
    try:
        state = load_weights(weights)
        net.load_state_dict(state)
    except (RuntimeError, KeyError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0]
        raise UserError(
            f"weights do not fit the card's architecture: {first}", path=weights
        ) from None
    net.eval()
    h = hashlib.sha256()
    h.update(weights.read_bytes())
    h.update(
        json.dumps(
            {k: card[k] for k in ("architecture", "input", "classes")} | {"context": context},
            sort_keys=True,
        ).encode()
    )
    return LoadedModel(card, net, mode, context, tuple(patch), list(card["classes"]), h.hexdigest())


def fully_convolutional(card: Mapping[str, Any]) -> bool:
    """Whether the card's U-Net gives each voxel the same result in any window holding its
    receptive field (up to the pooling grid), so that windows may be as large as memory
    allows: every layer is a convolution, pooling, up-sampling or a per-channel affine map
    in eval mode (batch norm, none). Group norm normalises over the window, so its output
    depends on the window's size: such a card asks for windows of its training patch, as
    does a card with ``"sliding_window": true``.
    """
    arch = card.get("architecture") or {}
    return arch.get("norm", "batch") in ("batch", "none") and not card.get("sliding_window")


def size_multiple(card: Mapping[str, Any]) -> int:
    """The multiple every input side must be: 2^(depth - 1) (one per pooling)."""
    return 2 ** (int((card.get("architecture") or {}).get("depth", 4)) - 1)


def receptive_reach(card: Mapping[str, Any]) -> int:
    """Voxels from a voxel to the farthest input voxel its result depends on (per axis).

    Encoder level i (scale 2^i): two 3-wide convolutions, 2^i each; each 2-wide pooling
    2^i; decoder level i: two convolutions, 2^i each, and a linear up-sampling (``interp``)
    one voxel of the coarser level, 2^(i+1) (a 2-wide stride-2 transposed convolution maps
    each output voxel to one input voxel: nothing). The f16-d4 2D U-Net of the demo
    reaches 51 voxels.
    """
    arch = card.get("architecture") or {}
    depth = int(arch.get("depth", 4))
    reach = sum(2 * 2**i for i in range(depth))  # encoder convolutions
    reach += sum(2**i for i in range(depth - 1))  # poolings
    reach += sum(2 * 2**i for i in range(depth - 1))  # decoder convolutions
    if arch.get("upsampling", "transpose") == "interp":
        reach += sum(2 ** (i + 1) for i in range(depth - 1))
    return reach
