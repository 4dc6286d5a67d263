"""The per-step ``onecycle`` LR schedule: linear warm-up, then cosine decay to zero."""

from __future__ import annotations

import itertools

import torch

from dlpipe.config import defaults
from dlpipe.training.loop import PER_STEP_SCHEDULES, scheduler


def test_onecycle_warms_up_then_decays() -> None:
    params = defaults()["train"] | {
        "schedule": "onecycle",
        "lr": 0.01,
        "warmup": 0.25,
        "epochs": 2,
        "steps_per_epoch": 10,
    }
    assert "onecycle" in PER_STEP_SCHEDULES
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=params["lr"])
    sched = scheduler(params, opt)
    lrs = []
    for _ in range(20):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    # 5 warm-up steps rising to lr, then a strictly falling cosine that stays above zero
    assert lrs[:5] == sorted(lrs[:5]) and abs(lrs[0] - 0.002) < 1e-12
    assert abs(lrs[5] - 0.01) < 1e-12
    assert all(a > b for a, b in itertools.pairwise(lrs[5:])) and lrs[-1] > 0
    assert opt.param_groups[0]["lr"] < 1e-12
