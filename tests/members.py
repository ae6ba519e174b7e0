"""Test helper: one-member trainers that follow the members of a group trainer (a MemberList of UNets)."""

from __future__ import annotations

from typing import Sequence

import torch

from mogsim.training import RuntimeOptions, TrainConfig, Trainer


def trainers_alone(group: Trainer, configs: Sequence[TrainConfig], sets: Sequence[torch.Tensor],
                   runtime: RuntimeOptions) -> list[Trainer]:
    """One one-member Trainer per member m of ``group``: ``configs[m]`` on ``sets[m]``, started from member m's
    weights and EMA and fed row m of every step's draws of ``group``."""
    alone = []
    for m, (config, data) in enumerate(zip(configs, sets, strict=True)):
        one = Trainer(config, [data], runtime=runtime)
        with torch.no_grad():
            for dst, src in zip(one.net.parameters(), group.net.member(m).parameters()):
                dst.copy_(src)
            for dst, src in zip(one.ema.module.parameters(), group.ema.module.member(m).parameters()):
                dst.copy_(src)
        one.batch_for_step = (lambda step, m=m: tuple(t[m:m + 1] for t in group.batch_for_step(step)))
        alone.append(one)
    return alone
