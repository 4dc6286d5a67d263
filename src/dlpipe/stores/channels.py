"""The one channel rule: whatever a model was trained on, grey and colour images both predict.

A model takes either one channel (grey) or three (RGB); its card records which
(``channels``) and the rule (``channel_rule``, :data:`CHANNEL_RULE`). Every image a model
sees, in training and in prediction, goes through :func:`to_channels`:

* a trailing alpha channel is dropped (grey + alpha -> grey, RGBA -> RGB);
* grey for a three-channel model: the grey channel replicated to R, G and B;
* colour for a one-channel model: the luminance ``0.299 R + 0.587 G + 0.114 B``
  (ITU-R BT.601, as PIL's ``convert("L")``), in float32;
* otherwise the image is unchanged.

Training unifies a mixed set the same way: the importers store a set that mixes grey and
colour images as RGB (grey replicated), so a colour model is trained; a one-channel model
(the U-Net) reads colour images as their luminance (:class:`ChannelView`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from dlpipe.errors import UserError

__all__ = [
    "CHANNEL_RULE",
    "LUMINANCE",
    "ChannelView",
    "card_channels",
    "channels_of",
    "to_channels",
]

CHANNEL_RULE = "grey replicated to RGB; RGB(A) to luminance (BT.601); alpha dropped"
LUMINANCE = (0.299, 0.587, 0.114)


def channels_of(img: np.ndarray, *, channel_last: bool | None = None) -> int:
    """Channels of ``img`` without alpha: 1 (grey) or 3 (colour).

    ``channel_last`` says whether the last axis holds channels; None guesses it: an array
    of 3 or more dimensions whose last axis has 1 to 4 entries.
    """
    if channel_last is None:
        channel_last = img.ndim >= 3 and 1 <= img.shape[-1] <= 4
    if not channel_last:
        return 1
    c = int(img.shape[-1])
    return {1: 1, 2: 1, 3: 3, 4: 3}.get(c, c)


def to_channels(img: np.ndarray, channels: int, *, channel_last: bool | None = None) -> np.ndarray:
    """``img`` as ``channels`` (1 or 3) channels by :data:`CHANNEL_RULE`.

    Parameters
    ----------
    img : (..., H, W) grey or (..., H, W, C) with C 1 (grey), 2 (grey + alpha), 3 (RGB) or
        4 (RGBA)
    channels : what the model takes: 1 or 3
    channel_last : whether the last axis holds channels (None: see :func:`channels_of`)

    Returns
    -------
    numpy.ndarray
        (..., H, W) for ``channels == 1``, (..., H, W, 3) for 3. Grey is returned as it
        is (same dtype, no copy), replicated grey in its dtype, luminance as float32.

    Raises
    ------
    UserError
        ``channels`` other than 1 or 3, or a channel axis of more than 4 entries.
    """
    if channels not in (1, 3):
        raise UserError(f"a model takes 1 or 3 channels, not {channels}")
    img = np.asarray(img)
    if channel_last is None:
        channel_last = img.ndim >= 3 and 1 <= img.shape[-1] <= 4
    if channel_last:
        c = int(img.shape[-1])
        if c not in (1, 2, 3, 4):
            raise UserError(f"images need 1 to 4 channels (grey, grey+alpha, RGB, RGBA), got {c}")
        if c in (2, 4):  # alpha dropped
            img = img[..., :-1]
        if img.shape[-1] == 1:
            img = img[..., 0]
            channel_last = False
    if channels == 1:
        if not channel_last:
            return img
        w = np.asarray(LUMINANCE, np.float32)
        return img[..., 0] * w[0] + img[..., 1] * w[1] + img[..., 2] * w[2]
    if channel_last:
        return img
    return np.repeat(img[..., None], 3, axis=-1)


def card_channels(channels: int) -> dict[str, Any]:
    """What a card records about channels: ``{"channels": n, "channel_rule": ...}``."""
    return {"channels": int(channels), "channel_rule": CHANNEL_RULE}


class ChannelView:
    """A read-only (N, H, W[, C]) array (Zarr or numpy) seen with ``channels`` channels.

    Indexing takes the leading axes only (``view[i]``, ``view[i, y0:y1, x0:x1]``); the
    channel axis is read whole and converted by :func:`to_channels`. ``shape`` is
    (N, H, W) for one channel, (N, H, W, 3) for three; ``dtype`` float32 when colour is
    made grey, else the array's.
    """

    def __init__(self, array: Any, channels: int) -> None:
        self.array, self.channels = array, int(channels)
        self.channel_last = array.ndim == 4
        lead = tuple(int(s) for s in array.shape[:3])
        self.shape = lead if self.channels == 1 else (*lead, 3)
        self.ndim = len(self.shape)
        chunks = getattr(array, "chunks", None)
        if chunks is not None:  # whole channels per chunk: the leading axes' chunks
            self.chunks = tuple(chunks[:3]) if self.channels == 1 else (*chunks[:3], 3)
        colour = self.channel_last and array.shape[-1] in (3, 4)
        self.dtype = np.dtype(np.float32) if (colour and self.channels == 1) else array.dtype

    def __getitem__(self, sel: Any) -> np.ndarray:
        if not isinstance(sel, tuple):
            sel = (sel,)
        if len(sel) > 3:
            raise IndexError("index the (N, H, W) axes only")
        data = np.asarray(self.array[sel])
        return to_channels(data, self.channels, channel_last=self.channel_last)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.array, name)

    def __len__(self) -> int:
        return self.shape[0]
