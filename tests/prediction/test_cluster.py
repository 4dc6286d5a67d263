"""predict.scheduler: local threads, a LocalCluster started by the job, or an address."""

from __future__ import annotations

import pytest

from dlpipe.errors import UserError
from dlpipe.prediction.schedulers import dask_scheduler


def test_scheduler_specs() -> None:
    with dask_scheduler(None) as address:
        assert address is None
    with dask_scheduler("tcp://10.0.0.1:8786") as address:
        assert address == "tcp://10.0.0.1:8786"
    for bad in ("local-cluster:0", "local-cluster:x", "local-cluster:"):
        with pytest.raises(UserError, match="expected local-cluster:N"), dask_scheduler(bad):
            pass


def test_local_cluster_has_worker_processes() -> None:
    from distributed import Client

    with dask_scheduler("local-cluster:2") as address, Client(address) as client:
        workers = client.scheduler_info()["workers"]
        assert len(workers) == 2
        pids = client.run(lambda: __import__("os").getpid())
        assert len(set(pids.values())) == 2
