"""Small real volumes and small real trained U-Nets for the prediction tests."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
import zarr
from scipy import ndimage

from dlpipe.models import UNet


def phantom(shape: tuple[int, int, int], seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A smooth random field as a uint8 image (noisy) and its 3-class threshold labels."""
    rng = np.random.default_rng(seed)
    field = ndimage.gaussian_filter(rng.normal(size=shape), sigma=(1.5, 3.0, 3.0))
    field = (field - field.mean()) / field.std()
    labels = np.digitize(field, [-0.4, 0.6]).astype(np.uint8)
    image = np.clip(100 + 40 * field + rng.normal(0, 6, size=shape), 0, 255).astype(np.uint8)
    return image, labels


def write_volume(
    path: Path,
    image: np.ndarray,
    *,
    chunks=(8, 32, 32),
    stats: bool = True,
    axes: list[str] | None = None,
    complete: bool = True,
) -> Path:
    """A tiled volume as `dlpipe tile` writes it: VOL.zarr/0, ome + dlpipe attrs, marker."""
    root = zarr.open_group(path, mode="w")
    axes = axes or ["z", "y", "x"][-image.ndim :]
    root.create_array("0", data=image, chunks=chunks[-image.ndim :])
    attrs = {
        "ome": {
            "version": "0.5",
            "multiscales": [
                {
                    "axes": [{"name": a, "type": "channel" if a == "c" else "space"} for a in axes],
                    "datasets": [
                        {
                            "path": "0",
                            "coordinateTransformations": [
                                {"type": "scale", "scale": [1.0] * image.ndim}
                            ],
                        }
                    ],
                }
            ],
        }
    }
    meta: dict = {"source": "test", "complete": True}
    if stats:
        meta["statistics"] = {
            "min": float(image.min()),
            "max": float(image.max()),
            "p0_1": float(np.percentile(image, 0.1)),
            "p99_9": float(np.percentile(image, 99.9)),
        }
    attrs["dlpipe"] = meta
    root.attrs.update(attrs)
    if complete:
        (path / ".dlpipe_complete").write_text("")
    return path


def train_model(out: Path, mode: str, *, seed: int = 0, steps: int | None = None) -> Path:
    """Train a tiny U-Net for a few steps on a phantom; write card.json + weights.pt.

    The 2.5D model is the 2D one widened to 3 input slices (first-layer weights split
    0.15 / 0.7 / 0.15 over the slices): a few steps of 2.5D training from scratch give
    degenerate argmaxes, and this still makes the output depend on the neighbours.
    """
    if mode == "2.5d":
        flat = train_model(out.parent / (out.name + "_2d"), "2d", seed=seed, steps=steps)
        card = json.loads((flat / "card.json").read_text())
        state = torch.load(flat / "weights.pt", weights_only=True)
        for key, w in state.items():
            if w.ndim == 4 and w.shape[1] == 1 and key.startswith("down.0"):
                state[key] = torch.cat([0.15 * w, 0.7 * w, 0.15 * w], dim=1)
        card["input"], card["context_slices"] = "2.5d", 3
        card["architecture"]["in_channels"] = 3
        net = UNet(**card["architecture"])
        net.load_state_dict(state)
        out.mkdir(parents=True, exist_ok=True)
        torch.save(net.state_dict(), out / "weights.pt")
        (out / "card.json").write_text(json.dumps(card, indent=2))
        return out
    steps = steps if steps is not None else {"2d": 40, "2.5d": 40, "3d": 30}[mode]
    torch.manual_seed(seed)
    image, labels = phantom((24, 64, 64), seed=seed + 100)
    p0, p1 = float(np.percentile(image, 0.1)), float(np.percentile(image, 99.9))
    x = torch.from_numpy((image.astype(np.float32) - p0) / (p1 - p0))
    y = torch.from_numpy(labels.astype(np.int64))
    context = 3 if mode == "2.5d" else 1
    dim = 3 if mode == "3d" else 2
    arch = {
        "dim": dim,
        "in_channels": context,
        "n_classes": 3,
        "depth": 3,
        "base_filters": 4,
        "norm": "none",
    }
    net = UNet(**arch)
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    patch = [16, 16, 16] if dim == 3 else [32, 32]
    g = torch.Generator().manual_seed(seed)
    half = context // 2
    for _ in range(steps):
        xs, ys = [], []
        for _ in range(2 if dim == 3 else 4):
            if dim == 3:
                z, r, c = (int(torch.randint(0, n - 16 + 1, (1,), generator=g)) for n in x.shape)
                xs.append(x[z : z + 16, r : r + 16, c : c + 16][None])
                ys.append(y[z : z + 16, r : r + 16, c : c + 16])
            else:
                z = int(torch.randint(half, x.shape[0] - half, (1,), generator=g))
                r, c = (int(torch.randint(0, 64 - 32 + 1, (1,), generator=g)) for _ in "rc")
                xs.append(x[z - half : z + half + 1, r : r + 32, c : c + 32])
                ys.append(y[z, r : r + 32, c : c + 32])
        loss = torch.nn.functional.cross_entropy(net(torch.stack(xs)), torch.stack(ys))
        opt.zero_grad()
        loss.backward()
        opt.step()
    out.mkdir(parents=True, exist_ok=True)
    torch.save(net.state_dict(), out / "weights.pt")
    card = {
        "model": "unet",
        "architecture": arch,
        "input": mode,
        "context_slices": context,
        "patch_size": patch,
        "classes": ["matrix", "fibre", "pore"],
        "normalisation": {"p0_1": p0, "p99_9": p1},
        "ignore_index": 255,
        "weights": "weights.pt",
    }
    (out / "card.json").write_text(json.dumps(card, indent=2))
    return out
