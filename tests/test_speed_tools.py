"""The speed tools of issue #27 measure what they say: benchmarks/floor.py, conv_step.py, profile_step.py.

Fast correctness checks, no timing asserted: the FLOPs and GEMMs counted in a real step against the
closed form, the floor's arithmetic, the GEMM operands rebuilt at the step's own shape, dtype and
layout, the plain conv loop training the same nets as the library's step, and bf16 autocast and
channels-last memory reaching the convolutions inside the library's step.
"""

from __future__ import annotations

import copy
import json
from collections import Counter
from typing import Any

import pytest
import torch
from torch import nn

from benchmarks import conv_step, floor, profile_step
from benchmarks.harness import step_runner, synthetic_batches
from benchmarks.step_anatomy import LayerSizes, analytic_flops
from benchmarks.variants import variant_by_name
from torchgan_lite import GANTrainer, NonSaturatingLoss, StepConfig, mlp_discriminator, mlp_generator

G_LAYERS = ((8, 16), (16, 32), (32, 16))  # (in, out): latent 8 -> 16 -> 32 -> 16 = 1x4x4
D_LAYERS = ((16, 32), (32, 16), (16, 1))


def _tiny_trainer(**step: Any) -> GANTrainer:
    """The tiny MLP pair of G_LAYERS/D_LAYERS; ``step``: StepConfig options (the one place they are given)."""
    torch.manual_seed(0)
    g = mlp_generator(latent_dim=8, hidden=(16, 32), out_shape=(1, 4, 4))
    d = mlp_discriminator(in_shape=(1, 4, 4), hidden=(32, 16))
    if not step:
        return GANTrainer(g, d, NonSaturatingLoss(), device="cpu")
    return GANTrainer(g, d, NonSaturatingLoss(), step=StepConfig(**step), device="cpu")


def _expected_products(b: int) -> Counter[tuple[str, int, int, int]]:
    """The closed form: each Linear(i, o) product of one library step, as (op, m, k, n), with its count.

    Forward ``addmm (B, i, o)``; weight gradient ``mm (o, B, i)``; input gradient ``mm (B, o, i)``.
    D update: G forward (no graph), D forward on ``cat([real, fake])`` (2B rows: the MLP D declares
    ``independent_samples``), its backward (no input gradient into data or detached fakes at D's
    first layer). G update: G and D forward, D input gradients (D frozen: no weight gradients), G
    weight gradients, G input gradients below its first layer. The FLOPs equal two D calls of B rows.
    """
    want: Counter[tuple[str, int, int, int]] = Counter()
    for j, (i, o) in enumerate(D_LAYERS):
        want["addmm", 2 * b, i, o] += 1  # D update
        want["mm", o, 2 * b, i] += 1
        if j > 0:
            want["mm", 2 * b, o, i] += 1
        want["addmm", b, i, o] += 1  # G update
        want["mm", b, o, i] += 1
    for j, (i, o) in enumerate(G_LAYERS):
        want["addmm", b, i, o] += 2
        want["mm", o, b, i] += 1
        if j > 0:
            want["mm", b, o, i] += 1
    return want


def test_counted_flops_of_a_tiny_mlp_step_equal_the_closed_form():
    b = 6
    trainer = _tiny_trainer()
    real = torch.rand(b, 1, 4, 4) * 2 - 1  # (B, 1, 4, 4)
    trainer.train_step(real)
    count = floor.count_step(lambda: trainer.train_step(real))
    seen = Counter({(g.op, g.m, g.k, g.n): c for g, c in count.gemms.items()})
    want = _expected_products(b)
    assert seen == want
    closed_form = sum(2 * m * k * n * c for (_, m, k, n), c in want.items())  # 2*B*i*o per product
    assert count.counted_flops == closed_form == count.gemm_flops
    assert closed_form == analytic_flops(b, tutorial=False, sizes=LayerSizes(G_LAYERS, D_LAYERS))
    assert count.dtypes == ["float32"]


@pytest.mark.parametrize(("name", "tutorial"), [("baseline", True), ("default", False)])
def test_counted_flops_of_the_reference_step_equal_the_closed_form(name, tutorial):
    runner = step_runner(variant_by_name(name), "cpu", synthetic_batches(4, "cpu", count=1))
    runner.run(1)
    count = floor.count_step(lambda: runner.run(1))
    assert count.counted_flops == count.gemm_flops == analytic_flops(4, tutorial=tutorial)


def test_bf16_products_are_recorded_in_bf16_and_rebuilt_at_their_shape_dtype_and_layout():
    trainer = _tiny_trainer(amp="bf16")
    real = torch.rand(4, 1, 4, 4) * 2 - 1  # (B, 1, 4, 4)
    trainer.train_step(real)
    count = floor.count_step(lambda: trainer.train_step(real))
    assert count.dtypes == ["bfloat16"]  # every product ran in bf16: no silent float32 product
    assert {g.layout for g in count.gemms if g.op == "addmm" and g.n > 1} == {"NT"}  # x @ W.t() (a (k, 1) is both)
    for g in count.gemms:
        fn, operands = floor.gemm_operands(g)
        a, b = operands[-2:]
        assert (a.shape, b.shape) == ((g.m, g.k), (g.k, g.n))
        assert a.dtype == b.dtype == torch.bfloat16
        assert floor._layout(a) + floor._layout(b) == g.layout or 1 in (g.m, g.k, g.n)
        assert fn().shape == (g.m, g.n)


def test_the_floor_sums_flops_over_rate_for_each_product_in_its_own_dtype():
    mm = floor.Gemm("mm", 10, 20, 30)  # 12,000 FLOP
    addmm = floor.Gemm("addmm", 4, 5, 6, "bfloat16", "NT")  # 240 FLOP
    rates = {mm: 2.0, addmm: 0.5, mm.with_dtype("bfloat16"): 1000.0}  # GFLOP/s
    got = floor.floor_ms({mm: 3, addmm: 2}, rates)
    assert got == pytest.approx((3 * 12_000 / 2.0e9 + 2 * 240 / 0.5e9) * 1e3)
    assert floor.fraction_of_floor(5.0, 20.0) == 0.25
    with pytest.raises(ValueError, match="gflops"):  # a bf16 product never borrows the float32 rate
        floor.floor_ms({addmm.with_dtype("float32"): 1}, {addmm: 1.0})
    with pytest.raises(ValueError, match="gflops"):
        floor.floor_ms({mm: 1}, {mm: 0.0})
    with pytest.raises(ValueError, match="measured"):
        floor.fraction_of_floor(1.0, 0.0)


def test_a_gemm_timing_gives_its_median_and_best_per_call():
    median, best = floor.time_gemm(floor.Gemm("addmm", 8, 16, 8, "float32", "NT"), min_time=0.01, min_blocks=3)
    assert 0 < best <= median


def test_the_profile_table_names_the_operators_a_step_runs_with_their_calls_and_share():
    a, b = torch.randn(64, 64), torch.randn(64, 64)
    top, total = profile_step.operator_shares(lambda: torch.mm(a, b).relu_(), steps=4, rows=5, warmup=1)
    by_name = {s.name: s for s in top}
    assert by_name["aten::mm"].calls_per_step == 1.0
    assert by_name["aten::relu_"].calls_per_step == 1.0
    assert total > 0 and 0 < sum(s.share for s in top) <= 1.0 + 1e-9
    assert [s.ms_per_step for s in top] == sorted((s.ms_per_step for s in top), reverse=True)


def test_the_floor_tool_writes_its_figures(tmp_path):
    out = tmp_path / "floor.json"
    floor.main(["--quick", "--batch", "8", "--variants", "default", "--json", str(out)])
    fig = json.loads(out.read_text())
    assert set(fig["variants"]) == {"baseline", "default"}
    for name, tutorial in (("baseline", True), ("default", False)):
        row = fig["variants"][name]
        assert row["counted_flops"] == analytic_flops(8, tutorial=tutorial)
        assert row["fraction_of_floor"] == pytest.approx(row["floor_ms"] / row["ms_per_step"])
    assert fig["machine"]["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert {r["dtype"] for r in fig["gemm_rates"]} == {"float32", "bfloat16"}
    assert fig["profiles"]["default"]["top"]


def _same_state(a: nn.Module, b: nn.Module, skip: frozenset[str] = frozenset()) -> float:
    """The largest absolute difference between two modules' parameters and buffers (same structure)."""
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    return max((sa[k].double() - sb[k].double()).abs().max().item() for k in sa
               if sa[k].is_floating_point() and k not in skip)


def _gradient_free(g: nn.Module, d: nn.Module, latent_dim: int) -> frozenset[str]:
    """G's parameters whose gradient is zero in exact arithmetic: a conv bias that feeds a batch norm.

    Their computed gradient is rounding noise (about 1e-12, its sign depending on the summation
    order), and Adam's first steps move a weight by about ``lr * sign(gradient)`` whatever its size,
    so two correct implementations can move them apart by 2 * lr a step. Found, not listed: the
    largest gradient entry of one G loss is below 1e-6 of the largest over all of G.
    """
    g, d = copy.deepcopy(g), copy.deepcopy(d)
    torch.manual_seed(2)
    d(g(torch.randn(4, latent_dim))).sum().backward()
    peak = {n: p.grad.abs().max().item() for n, p in g.named_parameters()}
    top = max(peak.values())
    return frozenset(n for n, v in peak.items() if v < 1e-6 * top)


@pytest.mark.parametrize("net", ["dcgan32", "resnet32"])
def test_the_plain_conv_loop_and_the_library_step_train_the_same_nets(net):
    spec = conv_step.NETS[net]
    torch.manual_seed(0)
    g0, d0 = spec.build(base_width=4)
    trainer = conv_step.library_trainer(copy.deepcopy(g0), copy.deepcopy(d0), spec.library_loss(), None, "cpu")
    g, d = copy.deepcopy(g0), copy.deepcopy(d0)
    loop = conv_step.PlainConvLoop(g, d, spec.loss, trainer.gan_step.latent_dim)
    real = torch.rand(4, 3, 32, 32) * 2 - 1  # (B, 3, 32, 32)
    torch.manual_seed(1)
    lib_losses = [trainer.train_step(real) for _ in range(2)]
    torch.manual_seed(1)
    plain_losses = [loop.step(real) for _ in range(2)]
    for r, (d_loss, g_loss) in zip(lib_losses, plain_losses):
        assert float(r.d_loss) == pytest.approx(float(d_loss), rel=1e-5)
        assert float(r.g_loss) == pytest.approx(float(g_loss), rel=1e-5)
    assert _same_state(trainer.gan_step.generator, g0) > 1e-5  # they trained (not a vacuous match)
    free = _gradient_free(g0, d0, trainer.gan_step.latent_dim)
    # ResNet G: each block's conv2 and shortcut biases feed the next batch norm; DCGAN G has none.
    assert all(n.endswith(("conv2.bias", "shortcut.bias")) for n in free) and (net == "resnet32") == bool(free)
    assert _same_state(trainer.gan_step.generator, g, skip=free) < 1e-6
    assert _same_state(trainer.gan_step.generator, g) <= 2 * 2 * 2e-4 * 1.01  # the rest: Adam's 2 steps of +-lr at most
    assert _same_state(trainer.gan_step.discriminator, d) < 1e-6


def _formats_in_library_step(net: str) -> tuple[Counter[tuple[str, str]], list[str]]:
    spec = conv_step.NETS[net]
    torch.manual_seed(0)
    g, d = spec.build(base_width=4)
    g, d = g.to(memory_format=torch.channels_last), d.to(memory_format=torch.channels_last)
    trainer = conv_step.library_trainer(g, d, spec.library_loss(), "bf16", "cpu")
    first = next(m for m in trainer.gan_step.discriminator.modules() if isinstance(m, nn.Conv2d))
    inputs: list[str] = []
    handle = first.register_forward_pre_hook(lambda m, args: inputs.append(conv_step._format(args[0])))
    real = (torch.rand(4, 3, 32, 32) * 2 - 1).contiguous(memory_format=torch.channels_last)  # (B, 3, 32, 32)
    with conv_step.conv_formats(trainer.gan_step.generator, trainer.gan_step.discriminator) as seen:
        result = trainer.train_step(real)
    handle.remove()
    assert torch.isfinite(result.d_loss) and torch.isfinite(result.g_loss)
    return seen, inputs


def test_bf16_and_channels_last_reach_every_dcgan_convolution_in_the_library_step():
    seen, inputs = _formats_in_library_step("dcgan32")
    assert sum(seen.values()) > 0
    assert {dtype for dtype, _ in seen} == {"bfloat16"}  # no convolution silently ran in float32
    assert {fmt for _, fmt in seen} <= {"channels_last", "either"}  # none fell back to contiguous
    assert inputs == ["channels_last"] * 3  # D's first conv: real and fake (D update), fake (G update)


def test_bf16_and_channels_last_reach_every_resnet_convolution_in_the_library_step():
    seen, inputs = _formats_in_library_step("resnet32")
    assert {dtype for dtype, _ in seen} == {"bfloat16"}
    assert {fmt for _, fmt in seen} <= {"channels_last", "either"}
    assert inputs == ["channels_last"] * 3


def test_the_conv_tool_writes_its_figures(tmp_path):
    out = tmp_path / "conv.json"
    conv_step.main(["--quick", "--nets", "dcgan32", "--batch", "2", "--configs", "fp32,bf16+cl", "--force-bf16",
                    "--json", str(out)])
    rows = json.loads(out.read_text())["nets"]["dcgan32"]
    assert set(rows) == {"fp32", "bf16+cl"}
    for row in rows.values():
        assert row["ratio_q1"] <= row["ratio"] <= row["ratio_q3"]
        assert row["library"]["gflop_per_step"] > 0 and len(row["library_s"]) == 3
    assert set(rows["fp32"]["library"]["conv_outputs"]) <= {"float32 contiguous", "float32 either"}
    assert set(rows["bf16+cl"]["library"]["conv_outputs"]) <= {"bfloat16 channels_last", "bfloat16 either"}


def test_the_plain_loop_refuses_unknown_options_by_name():
    g, d = conv_step.NETS["dcgan32"].build(base_width=4)
    with pytest.raises(ValueError, match="loss"):
        conv_step.PlainConvLoop(g, d, "wasserstein", 100)
    with pytest.raises(ValueError, match="amp"):
        conv_step.PlainConvLoop(g, d, "bce", 100, amp="fp16")


def test_interleaving_runs_every_runner_once_a_turn():
    calls: list[tuple[str, int]] = []

    class Fake:
        def __init__(self, name: str) -> None:
            self.name = name

        def run(self, k: int) -> None:
            calls.append((self.name, k))

    times = conv_step.interleave({"a": Fake("a"), "b": Fake("b"), "c": Fake("c")}, turns=4, steps=2)  # type: ignore[dict-item]
    assert {n: len(t) for n, t in times.items()} == {"a": 4, "b": 4, "c": 4}
    assert all(sorted(n for n, _ in calls[i:i + 3]) == ["a", "b", "c"] for i in range(0, 12, 3))
    assert {k for _, k in calls} == {2}
