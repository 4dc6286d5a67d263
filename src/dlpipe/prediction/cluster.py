"""The Dask scheduler a prediction runs on: local threads, a LocalCluster, or an address."""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Iterator

from dlpipe.errors import UserError

log = logging.getLogger(__name__)

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
    from distributed import LocalCluster

    with LocalCluster(
        n_workers=n,
        threads_per_worker=1,
        processes=True,
        dashboard_address=None,
        silence_logs=logging.WARNING,
    ) as cluster:
        log.info("predict: LocalCluster of %d worker processes at %s", n, cluster.scheduler_address)
        yield cluster.scheduler_address
