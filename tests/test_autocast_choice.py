"""``StepConfig(amp="auto")``: bfloat16 where the device has bf16 instructions, float32 elsewhere."""

from __future__ import annotations

import pytest
import torch

from torchgan_lite import GANTrainer, NonSaturatingLoss, StepConfig, cpu_bf16_instructions, fast_autocast
from torchgan_lite.utils import runtime

from .conftest import tiny_models


def test_the_cpu_flags_are_read_from_cpuinfo(tmp_path):
    amx = tmp_path / "amx"
    amx.write_text("processor\t: 0\nflags\t\t: fpu sse avx2 avx512f avx512_bf16 amx_tile amx_bf16\n\n")
    avx2 = tmp_path / "avx2"
    avx2.write_text("processor\t: 0\nflags\t\t: fpu sse avx2 fma\n")
    assert cpu_bf16_instructions(str(amx)) == ["amx_bf16", "avx512_bf16"]
    assert cpu_bf16_instructions(str(avx2)) == []
    assert cpu_bf16_instructions(str(tmp_path / "missing")) == []


@pytest.mark.parametrize(("flags", "expected"), [([], None), (["avx512_bf16"], "bf16"), (["amx_bf16"], "bf16")])
def test_auto_autocast_follows_the_cpu(monkeypatch, flags, expected):
    monkeypatch.setattr(runtime, "cpu_bf16_instructions", lambda: flags)
    assert fast_autocast("cpu") == expected
    g, d = tiny_models()
    trainer = GANTrainer(g, d, NonSaturatingLoss(), step=StepConfig(amp="auto"))
    assert trainer.gan_step.amp == expected
    assert trainer.gan_step.config()["amp"] == expected  # the checkpoint records what ran, not "auto"


def test_auto_autocast_trains(monkeypatch):
    monkeypatch.setattr(runtime, "cpu_bf16_instructions", lambda: ["amx_bf16"])
    torch.manual_seed(0)
    g, d = tiny_models()
    trainer = GANTrainer(g, d, NonSaturatingLoss(), step=StepConfig(amp="auto"))
    result = trainer.train_step(torch.rand(8, 1, 4, 4) * 2 - 1)
    assert torch.isfinite(result.d_loss) and torch.isfinite(result.g_loss)


def test_other_amp_values_are_refused_by_name():
    with pytest.raises(ValueError, match="amp"):
        StepConfig(amp="fp16")
