"""Learning-rate schedule: linear warmup, then cosine decay to ``min_lr``, stepped every iteration."""

from __future__ import annotations

import math

import torch
from torch.optim.lr_scheduler import LambdaLR


def warmup_cosine(
    optimizer: torch.optim.Optimizer, total_steps: int, warmup_steps: int, base_lr: float, min_lr: float
) -> LambdaLR:
    """LambdaLR whose factor rises linearly over ``warmup_steps`` then follows a cosine to min_lr/base_lr.

    Step 0 uses a small non-zero factor so the first update is not wasted.
    """
    floor = min(min_lr / base_lr, 1.0)
    total_steps = max(total_steps, 1)
    warmup_steps = min(max(warmup_steps, 0), total_steps - 1)

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / (warmup_steps + 1)
        progress = (step - warmup_steps) / max(total_steps - warmup_steps, 1)
        return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))

    return LambdaLR(optimizer, factor)
