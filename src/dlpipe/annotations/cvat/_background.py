"""The CVAT reader in a child process: parsing overlaps painting and writing on two cores.

Parsing (libxml2 with a Python target, the columns of each image) and rasterising both hold
the GIL, so a thread does not overlap them (measured: slower than one thread); a spawned
process does. Frames travel through a bounded queue (pickled: columns are a few small
arrays per image), so memory stays flat. Worth its start (about half a second: a new
interpreter importing the reader) for large exports only: see :data:`MIN_BYTES`.
"""

from __future__ import annotations

import ctypes
import multiprocessing as mp
import os
import queue
import signal
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from dlpipe.annotations.cvat._model import Counts, Frame, Meta
from dlpipe.annotations.cvat.reader import CvatReader

#: XML size from which ``dlpipe cvat`` parses in a child process.
MIN_BYTES = 8 << 20


_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def _die_with_parent(parent: int) -> None:
    """Make this child process end when ``parent`` does (a ``kill -9`` of ``dlpipe cvat``).

    On Linux the kernel sends SIGKILL on the parent's death (``PR_SET_PDEATHSIG``);
    elsewhere, or if that call fails, a daemon thread polls the parent's pid every 0.2 s.
    """
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) == 0:
                if os.getppid() != parent:  # the parent died before the call
                    os._exit(1)
                return
        except (OSError, AttributeError):
            pass

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.2)
        os._exit(1)

    threading.Thread(target=watch, name="dlpipe-parent-watch", daemon=True).start()


def _produce(path: str, name: str, lenient: bool, q: Any, parent: int = 0) -> None:
    """Child process: read the export and put ("frame", frame, meta or None) items, then
    ("end", counts, (n_images, meta)), or ("error", exception, None). Ends with
    ``parent`` (:func:`_die_with_parent`)."""
    from dlpipe.annotations.cvat._sources import open_annotations

    if parent:
        _die_with_parent(parent)

    try:
        with open_annotations(Path(path)) as (stream, _):
            reader = CvatReader(stream, name=name, lenient=lenient)
            sent = None
            for frame in reader.frames():
                q.put(("frame", frame, reader.meta if reader.meta is not sent else None))
                sent = reader.meta
            q.put(("end", reader.counts, (reader.n_images, reader.meta)))
    except BaseException as exc:  # raised again in the parent
        try:
            q.put(("error", exc, None))
        except Exception:  # an exception that does not pickle
            q.put(("error", RuntimeError(repr(exc)), None))


class BackgroundReader:
    """:class:`CvatReader`'s interface (``meta``, ``counts``, ``n_images``, ``frames()``)
    over a child process that parses ``path`` (an XML file or an export zip).

    ``counts`` is the caller's to update while painting; the parser's own tallies (invalid
    shapes, skeletons, padded RLEs) are added to it when the frames are exhausted.
    """

    def __init__(
        self, path: str | Path, *, name: str, lenient: bool = False, depth: int = 16
    ) -> None:
        self.path, self.name, self.lenient, self.depth = str(path), name, lenient, depth
        self.meta = Meta()
        self.counts = Counts()
        self.n_images = 0

    def frames(self) -> Iterator[Frame]:
        ctx = mp.get_context("spawn")  # never fork a process that holds zarr's I/O thread
        q = ctx.Queue(self.depth)
        proc = ctx.Process(
            target=_produce,
            args=(self.path, self.name, self.lenient, q, os.getpid()),
            name="dlpipe-cvat-parser",
            daemon=True,
        )
        proc.start()
        try:
            while True:
                try:
                    kind, value, extra = q.get(timeout=1.0)
                except queue.Empty:
                    if not proc.is_alive():
                        raise RuntimeError(
                            f"the CVAT parser process ended without a result "
                            f"(exit code {proc.exitcode})"
                        ) from None
                    continue
                if kind == "frame":
                    if extra is not None:
                        self.meta = extra
                    yield value
                elif kind == "error":
                    raise value
                else:
                    self.counts.merge(value)
                    self.n_images, self.meta = extra
                    return
        finally:
            if proc.is_alive():
                proc.terminate()
            proc.join()
            q.close()
