"""The test z-range of a volume from its ``dlpipe.split`` attributes.

Opening and writing label volumes lives in :mod:`dlpipe.stores.volume`.
"""

from __future__ import annotations

from pathlib import Path

from dlpipe.stores.volume import dlpipe_attrs

__all__ = ["test_range"]


def test_range(*paths: str | Path) -> tuple[int, int] | None:
    """The half-open test z-range from the ``dlpipe.split`` attributes of the first path
    that has one, else None."""
    for p in paths:
        split = dlpipe_attrs(p).get("split") or {}
        test = split.get("test")
        if test is not None:
            return int(test[0]), int(test[1])
    return None


test_range.__test__ = False  # not a pytest test
