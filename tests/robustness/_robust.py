"""Helpers of the robustness tests (imported by conftest.py and the tests)."""

from __future__ import annotations

import json
import resource
import signal
import subprocess
from collections.abc import Callable

import numpy as np

__all__ = ["UNTRACKED", "file_size_limit", "one_line", "phantom"]

UNTRACKED = json.dumps({"tracking": {"enabled": False}})


def file_size_limit(nbytes: int) -> Callable[[], None]:
    """A ``preexec_fn``: files of the child may not grow past ``nbytes`` (a full disk).

    SIGXFSZ is ignored, so that a write past the limit fails with EFBIG.
    """

    def limit() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (nbytes, nbytes))

    return limit


def one_line(proc: subprocess.CompletedProcess) -> str:
    """The error line of a failed command; asserts there is exactly one (no traceback)."""
    lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("dlpipe: error: "), proc.stderr
    return lines[0]


def phantom(shape: tuple[int, int, int], seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A uint8 image with 3 phases (z, y, x) and its labels."""
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    field = ndimage.gaussian_filter(rng.normal(size=shape), sigma=(1.5, 3.0, 3.0))
    field = (field - field.mean()) / field.std()
    labels = np.digitize(field, [-0.4, 0.6]).astype(np.uint8)
    image = np.clip(100 + 40 * field + rng.normal(0, 6, size=shape), 0, 255).astype(np.uint8)
    return image, labels
