"""The one training loop shared by every model family.

A *task* (``training/unet.py``, ``training/maskrcnn.py``) holds what is specific to a model:
building the network and its optimiser, the batches of an epoch, one training step
(a dict of named loss terms), validation (a score and a row of metrics), the plots and the
model-card fields. :func:`fit` holds everything else: epochs, checkpoints ``last``/``best``,
exact resume with the settings check, early stopping, the NaN stop, the time budget,
``metrics.csv``, MLflow metrics per epoch, the progress bar, and the card written last.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import shutil
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from tqdm.auto import tqdm

from dlpipe import __version__
from dlpipe.errors import UserError
from dlpipe.models import count_parameters
from dlpipe.stores.atomic import (
    atomic_path,
    is_leftover,
    json_safe,
    write_json_atomic,
    write_text_atomic,
)
from dlpipe.stores.card import RUN_ID
from dlpipe.stores.weights import load_weights
from dlpipe.training.optim import (
    OPTIMISERS,
    PER_STEP_SCHEDULES,
    SCHEDULES,
    autocast,
    check_shared,
    loader_workers,
    optimiser,
    scheduler,
)

log = logging.getLogger(__name__)

__all__ = [
    "OPTIMISERS",
    "PER_STEP_SCHEDULES",
    "RESUMABLE_CHANGES",
    "SCHEDULES",
    "NaNLossError",
    "Task",
    "autocast",
    "check_shared",
    "fit",
    "loader_workers",
    "optimiser",
    "prepare_out",
    "scheduler",
]

# Keys that may change between a run and its --resume.
RESUMABLE_CHANGES = {
    "strict",
    "epochs",
    "max_minutes",
    "workers",
    "device",
    "patience",
    "amp",
    "torch_threads",
}


class NaNLossError(UserError):
    """The training loss became NaN or infinite."""


class Task(Protocol):
    """What :func:`fit` needs from a model family.

    Attributes
    ----------
    name : model family as written in the card (``"unet"``, ``"maskrcnn"``)
    params : the ``train`` config section (checked)
    device : where the model runs
    monitor : the score that picks the best checkpoint (``val_...`` or ``train_loss``)
    """

    name: str
    params: dict[str, Any]
    device: torch.device
    monitor: str

    def build(self) -> tuple[torch.nn.Module, torch.optim.Optimizer, Any]:
        """Seeded model, optimiser and LR scheduler."""

    def describe(self, model: torch.nn.Module) -> str:
        """One log line about the run (architecture, data)."""

    def batches(self, epoch: int, rng: np.random.Generator) -> Iterable[Any]:
        """The ``steps_per_epoch`` training batches of epoch ``epoch`` (0-based)."""

    def step(self, model: torch.nn.Module, batch: Any) -> dict[str, torch.Tensor]:
        """Forward one batch; ``{"loss": total, <term>: value, ...}`` (total first)."""

    def validate(self, model: torch.nn.Module) -> tuple[float | None, dict[str, float]]:
        """Score (higher is better; None follows the training loss) and ``val_*`` metrics."""

    def summary(self, row: Mapping[str, Any]) -> str:
        """The validation part of the per-epoch log line."""

    def plots(
        self, folder: Path, history: list[dict[str, Any]], model: torch.nn.Module
    ) -> list[Path]:
        """Write the plots of the run into ``folder``; their paths."""

    def card(self, best_row: Mapping[str, Any]) -> dict[str, Any]:
        """The model-specific fields of ``card.json`` (model, architecture, classes, ...)."""


def _rng_state() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: Mapping[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


_CHECKPOINT_KEYS = (
    "params",
    "model",
    "optimizer",
    "scheduler",
    "rng",
    "epoch",
    "best_score",
    "best_epoch",
    "bad_epochs",
    "history",
)
"""What a training checkpoint (``last.pt``) holds."""


def _save(path: Path, obj: dict[str, Any]) -> None:
    buf = io.BytesIO()
    torch.save(obj, buf)
    with atomic_path(path, overwrite=True) as tmp:
        tmp.write_bytes(buf.getvalue())


def _write_csv(path: Path, history: list[dict[str, Any]]) -> None:
    if not history:
        return
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(history[0]))
    writer.writeheader()
    writer.writerows(history)
    write_text_atomic(path, out.getvalue(), overwrite=True)


def _comparable(params: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in params.items() if k not in RESUMABLE_CHANGES}


def prepare_out(out: Path, *, resume: bool, overwrite: bool) -> None:
    """Apply the ``--resume`` / ``--overwrite`` rules to the model folder ``out``."""
    ckpt_dir = out / "checkpoints"
    if resume:
        if not (ckpt_dir / "last.pt").exists():
            raise UserError("nothing to resume: no checkpoints/last.pt", path=out)
    elif out.exists() and any(out.iterdir()):
        if not overwrite and not is_leftover(out):
            raise UserError("model folder exists (use --overwrite or --resume)", path=out)
        if not ((out / "card.json").exists() or ckpt_dir.exists() or is_leftover(out)):
            raise UserError("refusing to overwrite a folder that is not a model folder", path=out)
        shutil.rmtree(out)


def fit(
    task: Task,
    store: str | Path,
    out_dir: str | Path,
    *,
    run: Any = None,
    resume: bool = False,
    progress: bool | None = None,
) -> dict[str, Any]:
    """Train ``task``'s model and write its model folder (the folder rules are already applied).

    Writes ``checkpoints/{last,best}.pt`` each epoch, ``metrics.csv``, ``weights.pt`` (the
    best epoch, a plain state dict), ``plots/`` and ``card.json`` last. Returns the card.
    """
    threads = torch.get_num_threads()
    if task.params.get("torch_threads"):
        torch.set_num_threads(int(task.params["torch_threads"]))
    try:
        return _fit(task, store, out_dir, run=run, resume=resume, progress=progress)
    finally:
        torch.set_num_threads(threads)


def _fit(
    task: Task,
    store: str | Path,
    out_dir: str | Path,
    *,
    run: Any,
    resume: bool,
    progress: bool | None,
) -> dict[str, Any]:
    out = Path(out_dir)
    ckpt_dir = out / "checkpoints"
    last_path, best_path = ckpt_dir / "last.pt", ckpt_dir / "best.pt"
    p = task.params
    torch.use_deterministic_algorithms(task.device.type == "cpu", warn_only=True)
    model, opt, sched = task.build()
    n_params = count_parameters(model)
    log.info("train: %s", task.describe(model))
    history: list[dict[str, Any]] = []
    start, best_score, best_epoch, bad_epochs = 0, -math.inf, -1, 0
    if resume:
        ck = load_weights(last_path, map_location=task.device, keys=_CHECKPOINT_KEYS)
        old = json.loads(ck["params"])
        if _comparable(old) != _comparable(p):
            diff = sorted(
                k
                for k in set(old) | set(p)
                if old.get(k) != p.get(k) and k not in RESUMABLE_CHANGES
            )
            raise UserError(
                f"--resume with different settings ({', '.join(diff)}); only "
                f"{', '.join(sorted(RESUMABLE_CHANGES))} may change",
                path=last_path,
            )
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        sched.load_state_dict(ck["scheduler"])
        _set_rng_state(ck["rng"])
        start, best_score, best_epoch = ck["epoch"], ck["best_score"], ck["best_epoch"]
        bad_epochs, history = ck["bad_epochs"], json.loads(ck["history"])
        log.info("train: resuming after epoch %d (best %.4f at %d)", start, best_score, best_epoch)
    out.mkdir(parents=True, exist_ok=True)
    ckpt_dir.mkdir(exist_ok=True)
    t_start = time.perf_counter()
    stop_reason = "epochs"
    steps = p["steps_per_epoch"]
    per_step = p["schedule"] in PER_STEP_SCHEDULES
    for epoch in range(start, p["epochs"]):
        t_epoch = time.perf_counter()
        rng = np.random.default_rng([p["seed"], epoch])
        batches = task.batches(epoch, rng)
        model.train()
        sums: dict[str, float] = {}
        seen = 0
        bar = tqdm(
            batches,
            total=steps,
            desc=f"epoch {epoch + 1}/{p['epochs']}",
            disable=None if progress is None else not progress,
            leave=False,
        )
        for step, batch in enumerate(bar):
            terms = task.step(model, batch)
            loss = terms["loss"]
            if not torch.isfinite(loss):
                kept = (
                    f"the last good checkpoint is {last_path} (epoch {epoch})"
                    if last_path.exists()
                    else "no checkpoint was written yet"
                )
                raise NaNLossError(
                    f"training loss is {float(loss.detach())} at epoch {epoch + 1}, "
                    f"step {step + 1}; "
                    f"stopped ({kept}); check the input values, lower train.lr or the loss weights",
                    path=out,
                )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if per_step:
                sched.step()
            for name, value in terms.items():
                sums[name] = sums.get(name, 0.0) + float(value.detach())
            seen += 1
            bar.set_postfix(loss=f"{sums['loss'] / seen:.4f}")
        bar.close()
        means = {name: total / max(seen, 1) for name, total in sums.items()} or {"loss": 0.0}
        train_loss = means["loss"]
        score, val_row = task.validate(model)
        if score is None:
            score = -train_loss
        if p["schedule"] == "plateau":
            sched.step(score)
        elif not per_step:
            sched.step()
        row: dict[str, Any] = {
            "epoch": epoch + 1,
            "lr": opt.param_groups[0]["lr"],
            "train_loss": train_loss,
        }
        row.update({f"train_{k}": v for k, v in means.items() if k != "loss"})
        row.update(val_row)
        row["seconds"] = time.perf_counter() - t_epoch
        history.append(row)
        # the first epoch is always a best (a NaN score, e.g. AP without true objects,
        # still leaves a best checkpoint); NaN never improves afterwards
        improved = best_epoch < 0 or score > best_score + p["min_delta"]
        if improved:
            best_score = score if math.isfinite(score) else -math.inf
            best_epoch, bad_epochs = epoch + 1, 0
        else:
            bad_epochs += 1
        state = {
            "epoch": epoch + 1,
            "model": model.state_dict(),
            "optimizer": opt.state_dict(),
            "scheduler": sched.state_dict(),
            "rng": _rng_state(),
            "best_score": best_score,
            "best_epoch": best_epoch,
            "bad_epochs": bad_epochs,
            "history": json.dumps(history),
            "params": json.dumps(p, sort_keys=True),
        }
        if improved:
            _save(best_path, state)
        _save(last_path, state)
        _write_csv(out / "metrics.csv", history)
        if run is not None:
            run.log_metrics(
                {k: v for k, v in row.items() if k != "epoch" and np.isfinite(v)}, step=epoch + 1
            )
        log.info(
            "epoch %d: loss %.4f, %s%s",
            epoch + 1,
            train_loss,
            task.summary(row),
            " (best)" if improved else "",
        )
        if bad_epochs >= p["patience"]:
            stop_reason = f"early stopping (no improvement of {task.monitor} in "
            stop_reason += f"{p['patience']} epochs)"
            break
        if p["max_minutes"] and (time.perf_counter() - t_start) / 60 >= p["max_minutes"]:
            stop_reason = f"time budget of {p['max_minutes']} min"
            break
    log.info("train: stopped after epoch %d: %s", len(history), stop_reason)
    best = load_weights(best_path, keys=("model",))
    model.load_state_dict(best["model"])
    buf = io.BytesIO()
    torch.save({k: v.cpu() for k, v in best["model"].items()}, buf)
    with atomic_path(out / "weights.pt", overwrite=True) as tmp:
        tmp.write_bytes(buf.getvalue())
    finish = getattr(task, "finish", None)
    if finish is not None:  # a family's work on the best weights (instance-unet: tuning)
        finish(model)
    figures = task.plots(out / "plots", history, model)
    best_row = history[best_epoch - 1] if 0 < best_epoch <= len(history) else {}
    card = task.card(best_row)
    card.update(
        parameters=n_params,
        weights="weights.pt",
        best_epoch=best_epoch,
        epochs_run=len(history),
        stop_reason=stop_reason,
        monitor=task.monitor,
        training_data=str(Path(store).resolve()),
        seed=p["seed"],
        device=str(task.device),
        dlpipe_version=__version__,
        params=p,
    )
    card[RUN_ID] = getattr(run, "run_id", None)  # evaluate runs link back to this one
    card = json_safe(card)
    write_json_atomic(out / "card.json", card, overwrite=True)
    if run is not None:
        run.log_metrics({"parameters": n_params, "best_epoch": best_epoch})
        run.log_artifact(out / "metrics.csv")
        for fig in figures:
            run.log_artifact(fig, "plots")
        run.log_artifact(out / "card.json")
    return card
