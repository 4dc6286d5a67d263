"""What every model family shares around its network: optimiser, LR schedule, autocast
and DataLoader workers, and the check of the shared ``train`` keys."""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping
from typing import Any

import torch

from dlpipe.errors import UserError

__all__ = [
    "OPTIMISERS",
    "PER_STEP_SCHEDULES",
    "SCHEDULES",
    "autocast",
    "check_shared",
    "loader_workers",
    "optimiser",
    "scheduler",
]

OPTIMISERS = ("adam", "adamw", "sgd")
SCHEDULES = ("constant", "cosine", "onecycle", "step", "plateau")
# Schedules stepped after every optimiser step (the others after every epoch).
PER_STEP_SCHEDULES = ("onecycle",)


def loader_workers(value: int | str, dev: torch.device) -> int:
    """DataLoader worker processes for ``train.workers``.

    An integer is taken as given. ``auto``: none when training on the CPU (reading in the
    main process, through the chunk cache, costs a few per cent of a step, while a worker
    takes a core from the step's own threads: on 2 cores 0.97 of the in-memory speed with
    none against 0.90 with one, ``benchmarks/RESULTS.md``); on a GPU one per spare core,
    at most 4.
    """
    if value != "auto":
        return int(value)
    if dev.type != "cuda":
        return 0
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(0, min(4, (cores or 1) - 1))


def check_shared(params: Mapping[str, Any]) -> None:
    """Check the keys every model family shares (optimiser, schedule)."""
    if params["optimizer"] not in OPTIMISERS:
        raise UserError(f"unknown optimizer {params['optimizer']!r} ({', '.join(OPTIMISERS)})")
    if params["schedule"] not in SCHEDULES:
        raise UserError(f"unknown schedule {params['schedule']!r} ({', '.join(SCHEDULES)})")


def optimiser(
    params: Mapping[str, Any], model_params: Iterable[torch.nn.Parameter]
) -> torch.optim.Optimizer:
    """The optimiser named by ``train.optimizer`` over ``model_params``."""
    lr, wd = params["lr"], params["weight_decay"]
    if params["optimizer"] == "adam":
        return torch.optim.Adam(model_params, lr=lr, weight_decay=wd)
    if params["optimizer"] == "adamw":
        return torch.optim.AdamW(model_params, lr=lr, weight_decay=wd)
    return torch.optim.SGD(
        model_params, lr=lr, momentum=params["momentum"], weight_decay=wd, nesterov=True
    )


def scheduler(params: Mapping[str, Any], opt: torch.optim.Optimizer) -> Any:
    """The LR schedule named by ``train.schedule``.

    ``onecycle`` is stepped after every optimiser step (:data:`PER_STEP_SCHEDULES`): a linear
    warm-up from ``lr / warmup steps`` to ``lr`` over the first ``train.warmup`` fraction of the
    ``epochs * steps_per_epoch`` steps, then a cosine decay to zero. The others are stepped
    after every epoch.
    """
    kind = params["schedule"]
    if kind == "onecycle":
        total = max(1, params["epochs"] * params["steps_per_epoch"])
        warm = max(1, round(params.get("warmup", 0.0) * total))
        return torch.optim.lr_scheduler.LambdaLR(opt, lambda s: _one_cycle(s, warm, total))
    if kind == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, params["epochs"]))
    if kind == "step":
        return torch.optim.lr_scheduler.StepLR(
            opt, step_size=params["step_size"], gamma=params["step_gamma"]
        )
    if kind == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(
            opt, mode="max", factor=params["step_gamma"], patience=params["step_size"]
        )
    return torch.optim.lr_scheduler.LambdaLR(opt, lambda _e: 1.0)


def _one_cycle(step: int, warm: int, total: int) -> float:
    """LR factor of ``onecycle`` at optimiser step ``step`` (0-based)."""
    if step < warm:
        return (step + 1) / warm
    t = min(1.0, (step - warm) / max(1, total - warm))
    return 0.5 * (1.0 + math.cos(math.pi * t))


def autocast(dev: torch.device, amp: bool) -> Any:
    """bfloat16 autocast on CUDA when ``amp``, else a disabled autocast context."""
    if amp and dev.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return torch.autocast(dev.type, enabled=False)
