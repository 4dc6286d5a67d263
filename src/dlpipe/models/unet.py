"""A modular U-Net for 2D, 2.5D (neighbouring slices as channels) and 3D segmentation."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from dlpipe.errors import UserError
from dlpipe.stores.guards import check_allocation

BLOCKS = ("plain", "residual")
NORMS = ("batch", "group", "none")
UPSAMPLING = ("transpose", "interp")


def _conv(dim: int) -> type[nn.Module]:
    return nn.Conv2d if dim == 2 else nn.Conv3d


def _norm(kind: str, dim: int, channels: int, groups: int) -> nn.Module:
    if kind == "batch":
        return (nn.BatchNorm2d if dim == 2 else nn.BatchNorm3d)(channels)
    if kind == "group":
        g = max(1, min(groups, channels))
        while channels % g:
            g -= 1
        return nn.GroupNorm(g, channels)
    return nn.Identity()


class ConvBlock(nn.Module):
    """Two 3×3(×3) convolutions with normalisation and ReLU; residual adds a 1×1 skip."""

    def __init__(
        self, dim: int, cin: int, cout: int, *, block: str, norm: str, groups: int, dropout: float
    ) -> None:
        super().__init__()
        conv = _conv(dim)
        bias = norm == "none"
        self.conv1 = conv(cin, cout, 3, padding=1, bias=bias)
        self.norm1 = _norm(norm, dim, cout, groups)
        self.conv2 = conv(cout, cout, 3, padding=1, bias=bias)
        self.norm2 = _norm(norm, dim, cout, groups)
        drop = nn.Dropout2d if dim == 2 else nn.Dropout3d
        self.dropout = drop(dropout) if dropout > 0 else nn.Identity()
        self.residual = block == "residual"
        self.skip = (
            conv(cin, cout, 1, bias=False) if self.residual and cin != cout else nn.Identity()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.norm1(self.conv1(x)))
        y = self.dropout(y)
        y = self.norm2(self.conv2(y))
        if self.residual:
            y = y + self.skip(x)
        return F.relu(y)


class GaussianNoise(nn.Module):
    """Adds N(0, sigma²) noise to the input while training (identity in eval mode)."""

    def __init__(self, sigma: float) -> None:
        super().__init__()
        self.sigma = float(sigma)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and self.sigma > 0:
            return x + self.sigma * torch.randn_like(x)
        return x


class UNet(nn.Module):
    """A U-Net whose every design choice is a keyword argument (kept in the model card).

    Parameters
    ----------
    dim : 2 or 3
        Spatial dimensions of the convolutions (2 for 2D and 2.5D, 3 for 3D).
    in_channels : int
        Input channels (1 in 2D/3D; k neighbouring slices in 2.5D).
    n_classes : int
        Output channels (one logit per class).
    depth : int
        Number of resolution levels (``depth - 1`` poolings); patch sides must be
        multiples of ``2 ** (depth - 1)``.
    base_filters : int
        Filters at the first level.
    growth : float
        Filter multiplier per level (2 doubles).
    block : "plain" or "residual"
    norm : "batch", "group" or "none"
    groups : int
        Groups of group normalisation.
    dropout : float
        Channel dropout inside each block (0 = none).
    upsampling : "transpose" or "interp"
        Transposed convolution, or (bi/tri)linear interpolation followed by a 1×1 conv.
    input_noise : float
        Standard deviation of a Gaussian-noise input layer (training only; 0 = none).

    Input ``(N, in_channels, Y, X)`` or ``(N, in_channels, Z, Y, X)`` float32; output the same
    spatial shape with ``n_classes`` channels (logits).
    """

    def __init__(
        self,
        dim: int = 2,
        in_channels: int = 1,
        n_classes: int = 2,
        depth: int = 4,
        base_filters: int = 32,
        growth: float = 2.0,
        block: str = "plain",
        norm: str = "batch",
        groups: int = 8,
        dropout: float = 0.0,
        upsampling: str = "transpose",
        input_noise: float = 0.0,
    ) -> None:
        super().__init__()
        if dim not in (2, 3):
            raise UserError(f"unet: dim must be 2 or 3, got {dim}")
        if depth < 1:
            raise UserError(f"unet: depth must be at least 1, got {depth}")
        for name, value, allowed in (
            ("block", block, BLOCKS),
            ("norm", norm, NORMS),
            ("upsampling", upsampling, UPSAMPLING),
        ):
            if value not in allowed:
                raise UserError(f"unet: unknown {name} {value!r} (one of {', '.join(allowed)})")
        self.dim, self.depth = dim, depth
        widths = [max(1, round(base_filters * growth**i)) for i in range(depth)]
        kw = {"block": block, "norm": norm, "groups": groups, "dropout": dropout}
        self.noise = GaussianNoise(input_noise)
        self.down = nn.ModuleList()
        cin = in_channels
        for w in widths:
            self.down.append(ConvBlock(dim, cin, w, **kw))
            cin = w
        self.pool = (nn.MaxPool2d if dim == 2 else nn.MaxPool3d)(2)
        self.up = nn.ModuleList()
        self.dec = nn.ModuleList()
        conv = _conv(dim)
        for i in range(depth - 2, -1, -1):
            if upsampling == "transpose":
                tconv = nn.ConvTranspose2d if dim == 2 else nn.ConvTranspose3d
                self.up.append(tconv(widths[i + 1], widths[i], 2, stride=2))
            else:
                mode = "bilinear" if dim == 2 else "trilinear"
                self.up.append(
                    nn.Sequential(
                        nn.Upsample(scale_factor=2, mode=mode, align_corners=False),
                        conv(widths[i + 1], widths[i], 1),
                    )
                )
            self.dec.append(ConvBlock(dim, 2 * widths[i], widths[i], **kw))
        self.head = conv(widths[0], n_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.noise(x)
        skips = []
        for i, block in enumerate(self.down):
            if i:
                x = self.pool(x)
            x = block(x)
            skips.append(x)
        for up, dec, skip in zip(self.up, self.dec, reversed(skips[:-1]), strict=True):
            x = dec(torch.cat([up(x), skip], dim=1))
        return self.head(x)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def estimate_parameters(architecture: dict[str, Any]) -> int:
    """Number of weights a :class:`UNet` of ``architecture`` holds (convolutions only,
    within a few per cent), computed without building it."""
    dim = int(architecture.get("dim", 2))
    depth = max(1, int(architecture.get("depth", 4)))
    base, growth = (
        float(architecture.get("base_filters", 32)),
        float(architecture.get("growth", 2.0)),
    )
    widths = [max(1, round(base * growth**i)) for i in range(depth)]
    k = 3**dim
    total, cin = 0, int(architecture.get("in_channels", 1))
    for w in widths:
        total += (cin + w) * w * k
        cin = w
    for i in range(depth - 1):
        total += widths[i + 1] * widths[i] * 2**dim + 3 * widths[i] * widths[i] * k
    return total + widths[0] * int(architecture.get("n_classes", 2))


def build_unet(
    architecture: dict[str, Any], *, source: str | Path | None = None, prefix: str = "architecture"
) -> UNet:
    """A :class:`UNet` from the ``architecture`` mapping of a model card.

    The size of its weights is checked first (:func:`dlpipe.stores.guards.check_allocation`);
    ``source`` (the card or config file) and ``prefix`` (``architecture``,
    ``train.architecture``) name
    the culprit in the error.

    Raises
    ------
    UserError
        An unknown option, or weights that would not fit in memory.
    """
    allowed = set(UNet.__init__.__code__.co_varnames[1 : UNet.__init__.__code__.co_argcount])
    unknown = sorted(set(architecture) - allowed)
    if unknown:
        raise UserError(f"unet: unknown architecture option {unknown[0]!r}")
    try:
        n_params = estimate_parameters(architecture)
    except (TypeError, ValueError, OverflowError):
        raise UserError(f"unet: {prefix} values must be numbers", path=source) from None
    check_allocation(
        4 * n_params,
        f"a U-Net of {n_params:.3g} float32 weights",
        path=source,
        field=f"{prefix}.base_filters/depth",
    )
    return UNet(**architecture)
