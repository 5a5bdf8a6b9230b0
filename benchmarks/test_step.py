"""Step rate: the training step alone, on synthetic device-resident batches (no data loading).

Each case times ``plan.steps`` steps per round with one synchronisation at the end,
after untimed warm-up rounds; steps/s, images/s and peak memory go to ``extra_info``.
Each library case then runs ``plan.rounds`` more rounds alternating with the
baseline's and records the median of the per-pair ratios (``paired_ratio``).
"""

from __future__ import annotations

import pytest

from .harness import measure, step_runner, synthetic_batches
from .variants import BASELINE, BATCH_SIZES, DEVICES, STEP_PLAN, VARIANTS, plan_for, variant_by_name


@pytest.mark.parametrize("variant_name", [v.name for v in VARIANTS])
@pytest.mark.parametrize("batch", BATCH_SIZES)
@pytest.mark.parametrize("device", DEVICES)
def test_step(benchmark, device: str, batch: int, variant_name: str, quick: bool, scale: float) -> None:
    variant = variant_by_name(variant_name)
    reason = variant.skip_reason(device)
    if reason is not None:
        pytest.skip(reason)
    # (batch, 1, 28, 28) each, made before memory is measured; a captured variant runs fit over them,
    # so it gets enough for epochs of a realistic length (an epoch end reads the means once).
    count = 64 if variant.trainer_kwargs is not None and variant.trainer_kwargs.get("capture") else 4
    batches = synthetic_batches(batch, device, count=count)
    # Every library case also runs rounds paired with the baseline's (paired_ratio): a
    # ratio that a machine's drift between cases cannot move.
    pair_with = None if variant.is_baseline else (lambda: step_runner(variant_by_name(BASELINE), device, batches))
    info = measure(benchmark, kind="step", variant=variant, device=device, batch=batch,
                   plan=plan_for(STEP_PLAN, device, batch, quick, scale),
                   build=lambda: step_runner(variant, device, batches), pair_with=pair_with)
    assert info["peak_mem_bytes"] >= 0
