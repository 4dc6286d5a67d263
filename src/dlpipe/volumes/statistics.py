"""Intensity statistics in one streaming pass, slab by slab.

Integer volumes (uint8, uint16, int16) keep one histogram bin per grey value, so min,
max and every percentile are exact (NumPy's default linear interpolation between the
two nearest ranks). float32 volumes keep an adaptive histogram of 65 536 bins whose
width doubles (merging neighbour bins, no loss) when a slab falls outside the range;
percentiles are then exact to one bin width. Mean and std are exact in float64 (Chan's
parallel update).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

FLOAT_BINS = 65536
SUMMARY_BINS = 256


class StreamingStats:
    """Accumulates statistics of the slabs given to :meth:`update`.

    Parameters
    ----------
    dtype : numpy.dtype
        uint8, uint16, int16 or float32.
    """

    def __init__(self, dtype: np.dtype | str) -> None:
        self.dtype = np.dtype(dtype)
        self.integer = self.dtype.kind in "iu"
        self.n = 0
        self.mean = 0.0
        self.m2 = 0.0
        self.vmin = math.inf
        self.vmax = -math.inf
        if self.integer:
            info = np.iinfo(self.dtype)
            self.lo = float(info.min)
            self.width = 1.0
            self.counts = np.zeros(int(info.max) - int(info.min) + 1, dtype=np.int64)
        else:
            self.lo = 0.0
            self.width = 0.0  # set by the first slab
            self.counts = np.zeros(FLOAT_BINS, dtype=np.int64)

    # -- accumulation -------------------------------------------------------------------
    def update(self, slab: np.ndarray) -> None:
        """Add the voxels of ``slab`` (any shape, finite values)."""
        flat = slab.reshape(-1)
        step = 1 << 22  # bounded float64 temporaries
        for i in range(0, flat.size, step):
            self._update(flat[i : i + step])

    def _update(self, flat: np.ndarray) -> None:
        if flat.size == 0:
            return
        smin, smax = flat.min(), flat.max()
        self.vmin = min(self.vmin, float(smin))
        self.vmax = max(self.vmax, float(smax))
        n = flat.size
        if self.integer:
            c = _integer_counts(flat)
            self.counts += c
            s = float(np.dot(c.astype(np.float64), np.arange(c.size, dtype=np.float64) + self.lo))
            smean = s / n
            ss = float(
                np.dot(
                    c.astype(np.float64),
                    (np.arange(c.size, dtype=np.float64) + self.lo - smean) ** 2,
                )
            )
        else:
            x = flat.astype(np.float64)
            smean = float(x.mean())
            ss = float(np.square(x - smean).sum())
            self._float_hist(flat, float(smin), float(smax))
        delta = smean - self.mean
        tot = self.n + n
        self.mean += delta * n / tot
        self.m2 += ss + delta * delta * self.n * n / tot
        self.n = tot

    def _float_hist(self, flat: np.ndarray, smin: float, smax: float) -> None:
        if self.width == 0.0:
            span = max(smax - smin, abs(smin) * 1e-6, 1e-30)
            # power-of-two width so that doubling keeps bin edges on one grid
            self.width = 2.0 ** math.ceil(math.log2(span / (FLOAT_BINS - 1)))
            self.lo = math.floor(smin / self.width) * self.width
        while smin < self.lo or smax >= self.lo + FLOAT_BINS * self.width:
            self._double()
        idx = ((flat.astype(np.float64) - self.lo) / self.width).astype(np.intp)
        np.clip(idx, 0, FLOAT_BINS - 1, out=idx)
        self.counts += np.bincount(idx, minlength=FLOAT_BINS)

    def _double(self) -> None:
        """Double the bin width, keeping the range centred on the data seen so far."""
        w2 = 2 * self.width
        counts = self.counts
        if round(self.lo / self.width) % 2:  # align the lower edge to the coarser grid
            counts = np.concatenate([[0], counts, [0]])
            self.lo -= self.width
        merged = counts.reshape(-1, 2).sum(axis=1)
        # put the merged half in the middle so that the range grows both ways
        shift_bins = FLOAT_BINS // 4
        new = np.zeros(FLOAT_BINS, dtype=np.int64)
        new[shift_bins : shift_bins + merged.size] = merged
        self.counts = new
        self.lo -= shift_bins * w2
        self.width = w2

    # -- results ------------------------------------------------------------------------
    def _value_at_rank(self, cum: np.ndarray, k: int) -> float:
        """The k-th smallest voxel (0-based); bin centre for float volumes."""
        b = int(np.searchsorted(cum, k, side="right"))
        if self.integer:
            return self.lo + b
        below = cum[b - 1] if b > 0 else 0
        frac = (k - below + 0.5) / max(int(self.counts[b]), 1)
        return self.lo + (b + frac) * self.width

    def percentile(self, q: float) -> float:
        """The q-th percentile (0-100), NumPy's 'linear' method."""
        cum = np.cumsum(self.counts)
        pos = (self.n - 1) * q / 100.0
        k0 = math.floor(pos)
        k1 = min(k0 + 1, self.n - 1)
        v0, v1 = self._value_at_rank(cum, k0), self._value_at_rank(cum, k1)
        v = v0 + (v1 - v0) * (pos - k0)
        return float(min(max(v, self.vmin), self.vmax))

    def result(self) -> dict[str, Any]:
        """``{"min","max","mean","std","p0_1","p99_9","count","exact_percentiles","histogram"}``.

        The histogram is a 256-bin summary over [min, max] (``edges``, ``counts``).
        """
        if self.n == 0:
            raise ValueError("no voxels")
        std = math.sqrt(self.m2 / self.n)
        return {
            "min": _num(self.vmin, self.integer),
            "max": _num(self.vmax, self.integer),
            "mean": self.mean,
            "std": std,
            "p0_1": self.percentile(0.1),
            "p99_9": self.percentile(99.9),
            "count": self.n,
            "exact_percentiles": self.integer,
            "histogram": self.summary_histogram(),
        }

    def summary_histogram(self, bins: int = SUMMARY_BINS) -> dict[str, Any]:
        """At most ``bins`` bins spanning [min, max]; integer bins have integer edges."""
        lo_b = round((self.vmin - self.lo) / self.width) if self.width else 0
        hi_b = int(np.nonzero(self.counts)[0].max()) + 1
        lo_b = min(lo_b, int(np.nonzero(self.counts)[0].min()))
        used = self.counts[lo_b:hi_b]
        group = max(1, math.ceil(used.size / bins))
        pad = (-used.size) % group
        grouped = np.concatenate([used, np.zeros(pad, np.int64)]).reshape(-1, group).sum(axis=1)
        edges = self.lo + (lo_b + np.arange(grouped.size + 1) * group) * self.width
        return {
            "edges": [_num(e, self.integer) for e in edges],
            "counts": [int(c) for c in grouped],
        }

    # -- persistence (resume) -----------------------------------------------------------
    def save(self, path: Path, **extra: np.ndarray) -> None:
        """Write the accumulator state and ``extra`` arrays (``.npz``)."""
        with open(path, "wb") as f:
            np.savez(
                f,
                counts=self.counts,
                scalars=np.array(
                    [self.n, self.mean, self.m2, self.vmin, self.vmax, self.lo, self.width],
                    dtype=np.float64,
                ),
                **extra,
            )

    @classmethod
    def load(cls, path: Path, dtype: np.dtype | str) -> tuple[StreamingStats, dict[str, Any]]:
        """Accumulator and extra arrays saved by :meth:`save`."""
        st = cls(dtype)
        with np.load(path) as z:
            st.counts = z["counts"].astype(np.int64)
            n, st.mean, st.m2, st.vmin, st.vmax, st.lo, st.width = (float(v) for v in z["scalars"])
            st.n = int(n)
            extra = {k: z[k] for k in z.files if k not in ("counts", "scalars")}
        return st, extra


def _integer_counts(flat: np.ndarray) -> np.ndarray:
    """Voxel count of each grey value, index 0 = the dtype's minimum."""
    if flat.dtype == np.uint8:
        even = flat.size - flat.size % 2
        # two voxels per uint16 index: half the elements for bincount, then fold
        pairs = np.bincount(flat[:even].view(np.uint16), minlength=65536).reshape(256, 256)
        c = pairs.sum(axis=0) + pairs.sum(axis=1)
        if even < flat.size:
            c[flat[-1]] += 1
        return c
    if flat.dtype == np.int16:
        return np.bincount(flat.view(np.uint16) ^ np.uint16(0x8000), minlength=65536)
    return np.bincount(flat, minlength=65536)


def _num(v: float, integer: bool) -> float | int:
    return round(v) if integer else float(v)
