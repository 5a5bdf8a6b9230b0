"""End-to-end rate: training steps with their data loading, over real MNIST.

The baseline draws its batches from the tutorial's torchvision ``DataLoader`` (each
image converted from PIL and normalised on every access); the library variants run
``GANTrainer.fit`` on a :class:`~torchgan_lite.TensorLoader` over MNIST decoded once.
Each round is ``plan.steps`` steps of an epoch already started by the warm-up round,
so the library's one-time decode is left out while the tutorial's per-image cost,
paid on every batch, is in (``docs/benchmarks.md`` explains the choice). Each library
case then runs rounds alternating with a fresh baseline's (``paired_ratio``).
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch.utils.data import Dataset

from .harness import end_to_end_runner, measure
from .variants import BASELINE, BATCH_SIZES, DEVICES, END_TO_END_PLAN, VARIANTS, plan_for, variant_by_name


@pytest.mark.parametrize("variant_name", [v.name for v in VARIANTS if v.end_to_end])
@pytest.mark.parametrize("batch", BATCH_SIZES)
@pytest.mark.parametrize("device", DEVICES)
def test_end_to_end(benchmark, device: str, batch: int, variant_name: str, quick: bool, scale: float,
                    reference_dataset: Dataset, library_images: Callable[[str], torch.Tensor]) -> None:
    variant = variant_by_name(variant_name)
    reason = variant.skip_reason(device)
    if reason is not None:
        pytest.skip(reason)
    images = None if variant.is_baseline else library_images(device)  # decoded before memory is measured
    baseline = variant_by_name(BASELINE)
    pair_with = None if variant.is_baseline else (
        lambda: end_to_end_runner(baseline, device, batch, None, reference_dataset))
    info = measure(benchmark, kind="end_to_end", variant=variant, device=device, batch=batch,
                   plan=plan_for(END_TO_END_PLAN, device, batch, quick, scale),
                   build=lambda: end_to_end_runner(variant, device, batch, images, reference_dataset),
                   pair_with=pair_with)
    assert info["peak_mem_bytes"] >= 0
