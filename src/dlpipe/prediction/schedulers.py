"""Where the blocks of a U-Net run are computed: Dask's local threads or a distributed cluster.

Public API
----------
dask_scheduler
    The scheduler address of a ``predict.scheduler`` spec (starts a LocalCluster if asked).
run_local
    One block at a time with the next block's read and the previous block's writes
    overlapped with the network (threads); several at once on Dask's threaded scheduler.
run_distributed
    Block tasks on a ``dask.distributed`` scheduler.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor

from tqdm.auto import tqdm

from dlpipe.errors import UserError
from dlpipe.prediction.block import Job, compute_block, predict_block, read_block, write_block

log = logging.getLogger(__name__)

__all__ = ["dask_scheduler", "run_distributed", "run_local"]

_LOCAL = re.compile(r"local-cluster(?::(\d+))?")


@contextlib.contextmanager
def dask_scheduler(spec: str | None) -> Iterator[str | None]:
    """Yield the scheduler address for ``predict_volume(scheduler=...)``.

    ``spec`` is None or "" (the local threaded scheduler: yields None), ``"local-cluster:N"``
    (starts a ``dask.distributed.LocalCluster`` of N single-threaded worker processes for
    the duration of the block, default N = 2), or the address of a running scheduler
    (``tcp://host:8786``), yielded as is.
    """
    if not spec:
        yield None
        return
    match = _LOCAL.fullmatch(spec)
    if match is None:
        if spec.startswith("local-cluster"):
            raise UserError(f"predict.scheduler {spec!r}: expected local-cluster:N (N >= 1)")
        yield spec
        return
    n = int(match.group(1) or 2)
    if n < 1:
        raise UserError(f"predict.scheduler {spec!r}: expected local-cluster:N (N >= 1)")
    from distributed import LocalCluster  # optional and heavy: a LocalCluster run only

    with LocalCluster(
        n_workers=n,
        threads_per_worker=1,
        processes=True,
        dashboard_address=None,
        silence_logs=logging.WARNING,
    ) as cluster:
        log.info("predict: LocalCluster of %d worker processes at %s", n, cluster.scheduler_address)
        yield cluster.scheduler_address


def run_pipelined(job: Job, todo: list, progress: bool) -> list[dict]:
    """One block at a time through the network, its neighbours' I/O overlapped with it.

    While block k runs through the network (torch's threads), one thread reads and
    normalises block k + 1 and another takes block k - 1's argmax and uncertainty and
    writes its chunks and marker: at most three blocks in flight, one of them computing.
    """
    bar = tqdm(total=len(todo), desc="predict", unit="block", disable=None if progress else True)
    results: list[dict] = []
    try:
        with (
            ThreadPoolExecutor(1, thread_name_prefix="dlpipe-read") as reader,
            ThreadPoolExecutor(1, thread_name_prefix="dlpipe-write") as writer,
        ):
            ahead: Future = reader.submit(read_block, job, todo[0])
            pending: Future | None = None
            for k in range(len(todo)):
                prep = ahead.result()
                if k + 1 < len(todo):
                    ahead = reader.submit(read_block, job, todo[k + 1])
                probs, windows = compute_block(job, prep)
                if pending is not None:
                    results.append(pending.result())
                    bar.update(1)
                pending = writer.submit(write_block, job, prep, probs, windows)
                del probs, prep
            if pending is not None:
                results.append(pending.result())
                bar.update(1)
        return results
    finally:
        bar.close()


def run_local(
    job: Job, todo: list, workers: int, progress: bool, *, pipelined: bool = True
) -> list[dict]:
    """``workers`` blocks at once: one (:func:`run_pipelined` unless not ``pipelined``: a
    memory budget that fits one block only), or Dask's threaded scheduler in waves.

    The graph is built one wave (``max(32, 8 * workers)`` blocks) at a time, so that the
    scheduler's memory does not grow with the number of blocks (the volume's size).
    """
    if workers == 1 and pipelined and todo:
        return run_pipelined(job, todo, progress)
    # Dask is imported by a run only (its import costs resident memory to every user of
    # dlpipe.prediction).
    import dask
    from dask.callbacks import Callback

    bar = tqdm(total=len(todo), desc="predict", unit="block", disable=None if progress else True)

    class _Bar(Callback):
        def _posttask(self, key, result, dsk, state, worker_id):
            if isinstance(result, dict) and "windows" in result:
                bar.update(1)

    wave = max(32, 8 * workers)
    results: list[dict] = []
    try:
        with _Bar():
            for i in range(0, len(todo), wave):
                tasks = [
                    dask.delayed(predict_block, pure=False)(job, idx) for idx in todo[i : i + wave]
                ]
                results.extend(dask.compute(*tasks, scheduler="threads", num_workers=workers))
        return results
    finally:
        bar.close()


def run_distributed(job: Job, todo: list, address: str, progress: bool) -> list[dict]:
    """Block tasks of ``todo`` submitted to the ``dask.distributed`` scheduler at ``address``.

    Raises
    ------
    UserError
        The scheduler cannot be reached.
    """
    from distributed import Client, as_completed  # optional and heavy: a distributed run only

    try:
        client = Client(address, timeout="20s")
    except OSError as exc:
        raise UserError(f"cannot reach the Dask scheduler at {address}: {exc}") from None
    try:
        futures = [client.submit(predict_block, job, idx, pure=False) for idx in todo]
        results = []
        with tqdm(
            total=len(todo), desc="predict", unit="block", disable=None if progress else True
        ) as bar:
            for fut in as_completed(futures):
                results.append(fut.result())
                bar.update(1)
        return results
    finally:
        client.close()
