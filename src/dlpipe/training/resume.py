"""Whether a model folder's last checkpoint can be resumed with given settings."""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from dlpipe.errors import UserError
from dlpipe.stores.weights import load_weights
from dlpipe.training.loop import RESUMABLE_CHANGES

log = logging.getLogger(__name__)


def can_resume(out_dir: str | Path, params: Mapping[str, Any]) -> bool:
    """True when ``OUT/checkpoints/last.pt`` exists, loads, and was written with ``params``
    (the ``train`` section) up to the keys that may change on resume (epochs, workers, ...).

    Used by ``dlpipe train --resume-or-start`` (the workflow's train rule): a job killed
    mid-training continues from its last epoch; changed settings start again.
    """
    last = Path(out_dir) / "checkpoints" / "last.pt"
    if not last.is_file():
        return False
    try:
        old = json.loads(load_weights(last, keys=("params",))["params"])
    except (UserError, ValueError) as exc:  # a damaged checkpoint: start again
        log.warning("train: cannot read %s (%s); starting again", last, exc)
        return False
    new = json.loads(json.dumps(dict(params), sort_keys=True))
    diff = sorted(
        k for k in set(old) | set(new) if k not in RESUMABLE_CHANGES and old.get(k) != new.get(k)
    )
    if diff:
        log.info("train: settings differ from the checkpoint (%s); starting again", ", ".join(diff))
    return not diff


def resume_or_start(out_dir: str | Path, params: Mapping[str, Any]) -> bool:
    """Decide between resuming and starting again in ``out_dir``; return True to resume.

    Starting again, a folder that holds only empty folders (Snakemake creates the parents
    of a rule's outputs, such as ``OUT/plots/``, before the job) is removed so that
    training may write there; anything else is left for ``train(overwrite=True)``.
    """
    out = Path(out_dir)
    if can_resume(out, params):
        return True
    if out.is_dir() and not any(p.is_file() or p.is_symlink() for p in out.rglob("*")):
        shutil.rmtree(out)
    return False
