"""A trained model and a stage's dataset as MLflow entities (a logged model, a dataset input).

The model folder stays the hand-over format (``weights.pt`` + ``card.json``, loaded with
``torch.load(weights_only=True)``); MLflow gets a copy: the U-Net exported in the pt2
format (``torch.export``, no pickle) with a signature and an input example, registered
under the dataset's name. Mask R-CNN models are logged as their folder's files.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from dlpipe.tracking.runs import StageRun
from dlpipe.tracking.store import _retry

log = logging.getLogger(__name__)

__all__ = ["example_input", "log_dataset", "log_model_folder"]


def example_input(card: Mapping[str, Any], seed: int = 0) -> Any:
    """A small normalised input of the network a U-Net card describes.

    Returns
    -------
    numpy.ndarray
        float32, (1, C, Y, X) for 2D/2.5D (C the context slices) or (1, 1, Z, Y, X) for
        3D, of the card's patch size.
    """
    import numpy as np  # deferred with the rest of the model logging

    mode = card.get("input", "2d")
    arch = card.get("architecture", {})
    patch = [int(v) for v in card.get("patch_size") or [64, 64]]
    dim = 3 if mode == "3d" else 2
    patch = patch[-dim:]
    channels = int(arch.get("in_channels", 1))
    rng = np.random.default_rng(seed)
    return rng.standard_normal((1, channels, *patch)).astype(np.float32)


def log_model_folder(
    run: StageRun, model_dir: str | Path, card: Mapping[str, Any], registered_name: str
) -> str | None:
    """Log the model of ``model_dir`` to ``run`` and register it as ``registered_name``.

    A U-Net is rebuilt from its card and weights (weights-only loading) and logged with
    :func:`mlflow.pytorch.log_model` in the pt2 format, with an input example and the
    signature inferred from it. Any other family, or a U-Net whose export fails (a warning
    says why), is logged as the folder's files under ``model/``: tracking never fails a
    training whose model folder is written.

    Returns
    -------
    str or None
        The model URI (``models:/<id>``); None when tracking is off or nothing was logged.
    """
    if not run.active:
        return None
    model_dir = Path(model_dir)
    if card.get("model") == "unet":
        t0 = time.perf_counter()
        try:
            uri = _log_unet(run, model_dir, card, registered_name)
        except Exception as exc:
            log.warning(
                "could not log the model to MLflow (%s: %s); its files are logged instead",
                type(exc).__name__,
                str(exc).strip().splitlines()[0] if str(exc).strip() else "",
            )
        else:
            log.info(
                "logged model %s (registered as %r) in %.1f s",
                uri,
                registered_name,
                time.perf_counter() - t0,
            )
            return uri
    for name in ("weights.pt", "card.json"):
        if (model_dir / name).is_file():
            run.log_artifact(model_dir / name, "model")
    return None


def _log_unet(run: StageRun, model_dir: Path, card: Mapping[str, Any], registered_name: str) -> str:
    """:func:`mlflow.pytorch.log_model` of the folder's U-Net (pt2); its model URI."""
    # torch and mlflow.pytorch are slow to import: only a run that logs a model pays
    import mlflow.pytorch
    import torch
    from mlflow.models import infer_signature

    from dlpipe.prediction.model import load_model

    loaded = load_model(model_dir, card=card)
    example = example_input(loaded.card)
    with torch.no_grad():
        output = loaded.net(torch.from_numpy(example)).numpy()
    with _tracking_uri(run.client.tracking_uri), _experiment(run.experiment_id()):
        # not retried: a second attempt would log (and register) a second model
        info = mlflow.pytorch.log_model(
            loaded.net,
            name="model",
            run_id=run.run_id,
            signature=infer_signature(example, output),
            input_example=example,
            registered_model_name=registered_name or None,
            pip_requirements=[f"torch=={torch.__version__.split('+')[0]}"],
            serialization_format="pt2",
            extra_files=[str(model_dir / "card.json")],
            validate_serving_input=False,  # the test loads it back; here it doubles the time
        )
    return str(info.model_uri)


@contextlib.contextmanager
def _experiment(experiment_id: str | None) -> Iterator[None]:
    """Make ``experiment_id`` the fluent API's experiment for a block, then restore it.

    :func:`mlflow.pytorch.log_model` with a ``run_id`` and no active run creates the logged
    model in the fluent API's experiment (MLflow 3.17: "Default" unless set), not in the run's,
    and then the UI's Models column and the experiment's Models tab do not show it.
    """
    from mlflow.tracking import fluent  # the fluent API's experiment lives here

    previous = fluent._active_experiment_id
    if experiment_id is not None:
        fluent._active_experiment_id = experiment_id
    try:
        yield
    finally:
        fluent._active_experiment_id = previous


@contextlib.contextmanager
def _tracking_uri(uri: str) -> Iterator[None]:
    """Point MLflow's fluent API at ``uri`` for a block, then restore it as it was.

    :func:`mlflow.set_tracking_uri` also sets (or unsets) ``MLFLOW_TRACKING_URI`` in the
    environment; both are put back, so that later stages of this process and its
    subprocesses see the user's setting.
    """
    from mlflow.tracking._tracking_service import utils  # the fluent API's URI lives here

    env = os.environ.get("MLFLOW_TRACKING_URI")
    previous = utils._tracking_uri
    utils.set_tracking_uri(uri)
    try:
        yield
    finally:
        utils.set_tracking_uri(previous)
        if env is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = env


def _digest(path: Path) -> str:
    """A short digest of a store's metadata files (never its chunks): cheap and stable.

    A file is digested whole when small, else by its size. A store's root and the two levels
    below it hold its metadata (``zarr.json``, ``.zattrs``, ``.zarray``); chunks are never
    listed, so a store of a million chunks costs as little as a small one.
    """
    h = hashlib.sha256()
    if path.is_file():
        files = [path]
    else:
        names = ("zarr.json", ".zattrs", ".zarray", ".zgroup", "*.json")
        files = sorted(
            {f for level in ("", "*/", "*/*/") for n in names for f in path.glob(level + n)}
        )
    for f in files[:500]:
        h.update(f.name.encode() if path.is_file() else str(f.relative_to(path)).encode())
        size = f.stat().st_size
        h.update(f.read_bytes() if size < 1 << 20 else str(size).encode())
    return h.hexdigest()[:16]


def log_dataset(run: StageRun, path: str | Path, name: str, context: str = "training") -> None:
    """Log the store at ``path`` as the run's dataset input (its path and digest, no arrays).

    Parameters
    ----------
    run : the stage run
    path : the store (``VOL.zarr``, a dataset Zarr, a TIFF)
    name : the dataset's name (``demo``)
    context : the input's role (``training``, ``prediction``, ``evaluation``)
    """
    if not run.active:
        return
    from mlflow.entities import Dataset, DatasetInput, InputTag

    path = Path(path).resolve()
    if not path.exists():
        return
    source = json.dumps({"uri": str(path)})
    dataset = Dataset(
        name=name or path.stem,
        digest=_digest(path),
        source_type="local",
        source=source,
        schema=None,
        profile=None,
    )
    tags = [InputTag(key="mlflow.data.context", value=context)]
    _retry(lambda: run.client.log_inputs(run.run_id, [DatasetInput(dataset, tags)]))
