"""The benchmark harness itself: the report's arithmetic, the baseline's fidelity, the timing glue.

The benchmarks (``benchmarks/``) are not part of the test suite; these checks keep
the figures they print honest: ratios computed against the right baseline, a
baseline that is the recipe's model and really runs the discriminator step, and
rates derived from the rounds actually timed.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from benchmarks import report
from benchmarks.harness import PeakMemory, measure, step_runner, synthetic_batches
from benchmarks.reference_loop import (
    ReferenceLoop,
    mnist_dataloader,
    mnist_dataset,
    reference_discriminator,
    reference_generator,
)
from benchmarks.variants import BASELINE, VARIANTS, Plan, Variant, plan_for, variant_by_name
from torchgan_lite import Event
from torchgan_lite.data import mnist as data


def _case(kind: str, device: str, batch: int, variant: str, steps_per_s: float, mem: int) -> dict:
    return {
        "name": f"test_{kind}[{device}-{batch}-{variant}]",
        "stats": {"median": 1.0 / steps_per_s},
        "extra_info": {"kind": kind, "device": device, "device_name": "test cpu", "batch": batch,
                       "variant": variant, "steps_per_s": steps_per_s, "images_per_s": steps_per_s * batch,
                       "peak_mem_bytes": mem, "torch": torch.__version__},
    }


def _write(tmp_path: Path, cases: list[dict]) -> Path:
    path = tmp_path / "bench.json"
    path.write_text(json.dumps({"benchmarks": cases, "datetime": "now", "machine_info": {"system": "Linux"}}))
    return path


def test_report_ratios_are_to_the_baseline_of_the_same_group(tmp_path: Path, capsys) -> None:
    mib = 2**20
    fast = _case("step", "cpu", 128, "fast", 50.0, 80 * mib)
    fast["extra_info"]["paired_ratio"] = 2.4  # recorded by the case itself, shown as it is
    cases = [
        _case("step", "cpu", 128, "plain", 30.0, 100 * mib),
        _case("step", "cpu", 128, BASELINE, 20.0, 90 * mib),
        fast,
        _case("step", "cpu", 512, BASELINE, 4.0, 200 * mib),
        _case("step", "cpu", 512, "fast", 10.0, 250 * mib),
        _case("step", "cpu", 512, "plain", 5.0, 200 * mib),
        _case("end_to_end", "cpu", 128, BASELINE, 16.0, 90 * mib),
        _case("end_to_end", "cpu", 128, "fast", 40.0, 70 * mib),
    ]
    rows = report.add_ratios(report.load_rows([_write(tmp_path, cases)])[0])
    by = {(r.kind, r.batch, r.variant): r for r in rows}
    assert by["step", 128, "fast"].ratio == pytest.approx(2.5)
    assert by["step", 128, "plain"].ratio == pytest.approx(1.5)
    assert by["step", 128, BASELINE].ratio == pytest.approx(1.0)
    assert by["step", 512, "fast"].ratio == pytest.approx(2.5)
    assert by["end_to_end", 128, "fast"].ratio == pytest.approx(2.5)
    assert by["step", 128, "fast"].mem_vs_plain == pytest.approx(0.8)
    assert by["step", 512, "fast"].mem_vs_plain == pytest.approx(1.25)
    assert by["end_to_end", 128, "fast"].mem_vs_plain is None  # no plain row in that group
    # Sorted: step before end to end, batch ascending, baseline first in each group.
    assert [(r.kind, r.batch, r.variant) for r in rows][:4] == [
        ("step", 128, BASELINE), ("step", 128, "plain"), ("step", 128, "fast"), ("step", 512, BASELINE)]
    assert rows[-2].kind == "end_to_end"
    # Only the fast case above plain's memory is flagged.
    warnings = report.memory_warnings(rows)
    assert len(warnings) == 1 and "batch 512" in warnings[0] and "1.25x" in warnings[0]

    assert report.main([str(tmp_path / "bench.json")]) == 0
    out = capsys.readouterr().out
    assert "| step | cpu | 128 | fast | 50.00 | 6,400 | 2.50x | 20.0 | 80.0 | 0.80x | 2.40x |" in out
    assert "| step | cpu | 512 | plain | 5.00 | 2,560 | 1.25x | 200.0 | 200.0 | 1.00x | - |" in out


@settings(max_examples=30, deadline=None)
@given(base=st.floats(0.01, 1e4), others=st.lists(st.floats(0.01, 1e4), min_size=1, max_size=4))
def test_report_ratio_is_rate_over_baseline_rate(tmp_path_factory, base: float, others: list[float]) -> None:
    tmp = tmp_path_factory.mktemp("r")
    cases = [_case("step", "cpu", 128, BASELINE, base, 1)]
    cases += [_case("step", "cpu", 128, f"v{i}", v, 1) for i, v in enumerate(others)]
    rows = report.add_ratios(report.load_rows([_write(tmp, cases)])[0])
    assert rows[0].variant == BASELINE and rows[0].ratio == pytest.approx(1.0)
    for i, v in enumerate(others):
        (row,) = [r for r in rows if r.variant == f"v{i}"]
        assert row.ratio == pytest.approx(v / base)


def test_report_skips_untimed_cases_and_rejects_other_files(tmp_path: Path) -> None:
    case = _case("step", "cpu", 128, BASELINE, 2.0, 1)
    del case["extra_info"]["steps_per_s"]  # what --benchmark-disable leaves
    rows, _ = report.load_rows([_write(tmp_path, [case])])
    assert rows == []
    bad = tmp_path / "bad.json"
    bad.write_text('{"not": "benchmarks"}')
    with pytest.raises(ValueError, match=r"bad\.json"):
        report.load_rows([bad])


def test_reference_models_have_the_recipe_parameter_counts() -> None:
    assert sum(p.numel() for p in reference_generator().parameters()) == 1_486_352
    assert sum(p.numel() for p in reference_discriminator().parameters()) == 1_460_225
    assert isinstance(reference_discriminator()[-1], torch.nn.Sigmoid)


def test_reference_step_runs_the_discriminator_step() -> None:
    torch.manual_seed(0)
    loop = ReferenceLoop.create("cpu")
    d_before = [p.detach().clone() for p in loop.discriminator.parameters()]
    g_before = [p.detach().clone() for p in loop.generator.parameters()]
    real = torch.rand(16, 1, 28, 28) * 2 - 1  # (16, 1, 28, 28)
    d_loss, g_loss = loop.step(real)
    assert all(not torch.equal(a, p) for a, p in zip(d_before, loop.discriminator.parameters()))
    assert all(not torch.equal(a, p) for a, p in zip(g_before, loop.generator.parameters()))
    assert math.isfinite(d_loss) and math.isfinite(g_loss)
    assert loop.history == [(d_loss, g_loss)]
    # Faithful to the tutorial: the G step leaves gradients in D's weights (its wasted work).
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in loop.discriminator.parameters())


def test_variant_table_is_well_formed_and_skips_unknown_options() -> None:
    names = [v.name for v in VARIANTS]
    assert names[0] == BASELINE and len(set(names)) == len(names)
    assert variant_by_name("default").trainer_kwargs == {}
    assert variant_by_name("compiled").trainer_kwargs == {"compile": True}
    with pytest.raises(ValueError, match="no variant named"):
        variant_by_name("nope")
    assert "no option not_an_option" in (Variant("x", {"not_an_option": 1}).skip_reason("cpu") or "")
    assert "mlp_discriminator has no option nope" in (Variant("x", {}, d_kwargs={"nope": 1}).skip_reason("cpu") or "")
    assert Variant("x", {"amp": None}, devices=("cuda",)).skip_reason("cpu") is not None
    for name in ("plain", "default", "onednn", "fused_d", "compiled"):
        assert variant_by_name(name).skip_reason("cpu") is None, name


def test_plan_scaling_rounds_up_and_quick_is_one_round() -> None:
    plans = {("cpu", 128): Plan(steps=20, rounds=5, warmup=1)}
    assert plan_for(plans, "cpu", 128) == plans["cpu", 128]
    assert plan_for(plans, "cpu", 128, scale=0.4) == Plan(steps=8, rounds=2, warmup=1)
    assert plan_for(plans, "cpu", 128, scale=0.01) == Plan(steps=1, rounds=1, warmup=1)
    assert plan_for(plans, "cpu", 128, quick=True) == Plan(steps=2, rounds=1, warmup=1)


class _Stats:
    def __init__(self, times: list[float]) -> None:
        self.median = sorted(times)[len(times) // 2]


class _Benchmark:
    """pytest-benchmark's fixture, reduced to what ``measure`` uses."""

    def __init__(self) -> None:
        self.extra_info: dict = {}
        self.group = ""
        self.calls = 0
        self.stats = None

    def pedantic(self, fn, args=(), rounds=1, warmup_rounds=0, iterations=1):
        import time

        for _ in range(warmup_rounds):
            fn(*args)
        times = []
        for _ in range(rounds):
            t0 = time.perf_counter()
            fn(*args)
            times.append(time.perf_counter() - t0)
        self.calls += warmup_rounds + rounds
        self.stats = type("Meta", (), {"stats": _Stats(times)})()


def test_paired_ratios_alternate_and_divide_within_each_pair(monkeypatch) -> None:
    from benchmarks import harness

    now = [0.0]
    log: list[str] = []

    class Fake:
        def __init__(self, name: str, cost: list[float]) -> None:
            self.name, self.cost = name, cost

        def run(self, k: int) -> None:
            log.append(self.name)
            now[0] += self.cost.pop(0) * k

    monkeypatch.setattr(harness.time, "perf_counter", lambda: now[0])
    # The machine slows down 10x between the pairs; each pair's ratio stays 2.
    base, fast = Fake("base", [2.0, 20.0, 20.0]), Fake("fast", [1.0, 10.0, 10.0])
    assert harness.paired_ratios(fast, base, steps=3, rounds=3) == pytest.approx([2.0, 2.0, 2.0])
    assert log == ["base", "fast", "fast", "base", "base", "fast"]


@pytest.mark.parametrize("name", [BASELINE, "default", "plain"])
def test_measure_records_rates_from_the_timed_rounds(name: str) -> None:
    bench = _Benchmark()
    batches = synthetic_batches(8, "cpu", count=2)
    plan = Plan(steps=2, rounds=2, warmup=1)
    info = measure(bench, kind="step", variant=variant_by_name(name), device="cpu", batch=8, plan=plan,
                   build=lambda: step_runner(variant_by_name(name), "cpu", batches))
    assert bench.calls == 3
    assert info["first_step_s"] > 0 and info["compile_s"] >= 0
    assert info["steps_per_s"] == pytest.approx(2 / bench.stats.stats.median)
    assert info["images_per_s"] == pytest.approx(8 * info["steps_per_s"])
    assert bench.extra_info["variant"] == name and bench.group == "step cpu batch=8"
    assert info["peak_mem_bytes"] >= 0 and info["mem_method"]
    assert "paired_ratio" not in info  # only with pair_with
    paired = measure(_Benchmark(), kind="step", variant=variant_by_name(name), device="cpu", batch=8, plan=plan,
                     build=lambda: step_runner(variant_by_name(name), "cpu", batches),
                     pair_with=lambda: step_runner(variant_by_name(BASELINE), "cpu", batches))
    assert paired["paired_rounds"] == 2 and paired["paired_ratio_min"] <= paired["paired_ratio"] > 0


def test_peak_memory_sees_a_large_allocation() -> None:
    with PeakMemory("cpu") as mem:
        x = torch.ones(64 * 2**20 // 4)  # 64 MiB, every page touched
        del x
    if not mem.method.startswith("peak RSS"):
        pytest.skip(f"/proc/self/clear_refs cannot reset the RSS peak here ({mem.method})")
    assert mem.peak_bytes >= 60 * 2**20


@pytest.mark.mnist
def test_reference_loader_yields_the_library_images(mnist_dir: Path) -> None:
    ds = mnist_dataset(mnist_dir)
    images = data.mnist(mnist_dir)  # (60000, 1, 28, 28)
    for i in (0, 1234, 59999):
        assert torch.allclose(ds[i][0], images[i], atol=1e-6)
    loader = mnist_dataloader(ds, batch_size=128)
    assert len(loader) == 468
    batch, _ = next(iter(loader))
    assert batch.shape == (128, 1, 28, 28) and batch.min() >= -1 and batch.max() <= 1


def test_interleaved_ratios_divide_by_the_baseline_of_the_same_turn(monkeypatch) -> None:
    from benchmarks import interleaved

    with pytest.raises(ValueError, match="must start with 'baseline'"):
        interleaved.interleaved_ratios(["default", BASELINE])
    # A clock that advances 2 s per baseline round and 1 s per default round: every
    # per-turn ratio is exactly 2, whatever order the turns run in.
    now = [0.0]
    cost = {"baseline": 2.0, "default": 1.0}
    running: list[str] = []

    class FakeRunner:
        def __init__(self, name: str) -> None:
            self.name = name

        def run(self, k: int) -> None:
            running.append(self.name)
            now[0] += cost[self.name] * k

    monkeypatch.setattr(interleaved, "step_runner", lambda v, device, batches: FakeRunner(v.name))
    monkeypatch.setattr(interleaved.time, "perf_counter", lambda: now[0])
    figures = interleaved.interleaved_ratios([BASELINE, "default"], batch=2, turns=6, steps=3)
    assert figures["baseline"]["ratio"] == 1.0
    assert figures["default"]["ratio"] == pytest.approx(2.0)
    assert figures["default"]["ms_per_step"] == pytest.approx(1000.0)
    assert figures["default"]["warmup_s"] == pytest.approx(3.0)  # 3 warm-up steps, timed apart from the turns
    assert running.count("default") == 1 + 6  # one warm-up call, then one round a turn


def test_plain_variant_is_the_tutorials_step_on_library_models() -> None:
    from benchmarks.harness import make_trainer
    from benchmarks.plain_step import TutorialLiteralStep

    torch.manual_seed(0)
    trainer = make_trainer(variant_by_name("plain"), "cpu")
    step = trainer.gan_step
    assert isinstance(step, TutorialLiteralStep)
    assert any(type(m) is torch.nn.Dropout for m in trainer.discriminator.modules())  # nn.Dropout, not MaskDropout
    d_opt = trainer.gan_step.d_optimizer
    assert not d_opt.defaults["fused"] and d_opt.defaults["foreach"] is False
    trainer.train_step(torch.rand(8, 1, 28, 28) * 2 - 1)
    # Like the tutorial's G step, its G update leaves gradients in D's weights; the default step does not.
    d_grads = [p.grad.clone() for p in trainer.discriminator.parameters()]
    step.generator_update(8)
    assert any(not torch.equal(a, p.grad) for a, p in zip(d_grads, trainer.discriminator.parameters()))


def test_onednn_variant_opts_in_and_default_does_not() -> None:
    from benchmarks.harness import make_trainer
    from torchgan_lite.nets import layers

    opted = make_trainer(variant_by_name("onednn"), "cpu")
    default = make_trainer(variant_by_name("default"), "cpu")
    assert any(isinstance(m, layers.Linear) for m in opted.generator.modules())
    assert not any(isinstance(m, layers.Linear) for m in default.generator.modules())
    assert not any(isinstance(m, layers.Linear) for m in default.discriminator.modules())


def test_report_lists_compile_time_apart(tmp_path: Path, capsys) -> None:
    compiled = _case("step", "cpu", 128, "compiled", 20.0, 1)
    compiled["extra_info"]["compile_s"] = 40.0
    quick = _case("step", "cpu", 128, "default", 10.0, 1)
    quick["extra_info"]["compile_s"] = 0.01
    rows = report.add_ratios(report.load_rows([_write(tmp_path, [_case("step", "cpu", 128, BASELINE, 5.0, 1),
                                                                  compiled, quick])])[0])
    lines = report.compile_lines(rows)
    assert lines == ["step cpu batch 128: compiled first step +40.0 s (= 800 steady steps)"]


@pytest.mark.mnist
@pytest.mark.filterwarnings("ignore:the samples' smallest value:RuntimeWarning")  # a generator after 2 steps
def test_recipes_ablation_continues_a_shorter_run_to_the_same_result(mnist_dir: Path, tmp_path: Path,
                                                                     monkeypatch) -> None:
    # The 100-epoch figure of docs/recipes.md continues the 50-epoch run: that must equal one long run.
    from benchmarks import recipes_ablation, recipes_grids

    monkeypatch.setenv(data.DATA_ENV_VAR, str(mnist_dir))
    threads = torch.get_num_threads()
    common = ["--configs", "+ttur", "--subset", "256", "--eval-at", "1", "--n", "200"]
    try:
        with torch.random.fork_rng(devices=[]):
            recipes_ablation.main([*common, "--epochs", "3", "--run-dir", str(tmp_path / "a"),
                                   "--out", str(tmp_path / "a.jsonl")])
            for epochs in ("2", "3"):  # stopped at 2, then continued from its checkpoint to 3
                recipes_ablation.main([*common, "--epochs", epochs, "--run-dir", str(tmp_path / "b"),
                                       "--out", str(tmp_path / "b.jsonl")])
    finally:
        torch.set_num_threads(threads)
    rows = {name: [json.loads(line) for line in (tmp_path / f"{name}.jsonl").read_text().splitlines()]
            for name in ("a", "b")}
    assert [r["epochs"] for r in rows["a"]] == [1, 3]
    assert [r["epochs"] for r in rows["b"]] == [1, 2, 3]
    assert [r["steps"] for r in rows["b"]] == [2, 4, 6]  # 256 images, batches of 128
    assert rows["b"][-1]["fd"] == rows["a"][-1]["fd"]  # the same weights, so the same samples and score
    assert rows["b"][-1]["fd"] != rows["b"][0]["fd"]
    run = tmp_path / "b" / "+ttur_seed0"
    assert sorted(p.name for p in run.glob("*.png")) == ["epoch001.png", "epoch002.png", "epoch003.png"]
    out = tmp_path / "side.png"
    assert recipes_grids.main([str(tmp_path / "b"), "--epoch", "3", "--runs", "+ttur_seed0", "+ttur_seed0",
                               "--out", str(out)]) == 0
    from PIL import Image

    single = Image.open(run / "epoch003.png")
    assert Image.open(out).size == (2 * single.width + recipes_grids.GAP, single.height + recipes_grids.LABEL_H)
    assert recipes_grids.main([str(tmp_path / "b"), "--epoch", "4", "--runs", "+ttur_seed0",
                               "--out", str(out)]) == 2  # no such epoch: an error line, not a traceback


def test_recipes_ablation_lr_decay_reaches_zero_linearly_and_extra_emas_follow() -> None:
    from benchmarks import recipes_ablation

    trainer, _ = recipes_ablation.make_trainer("improved-r1", 0)
    g_base = trainer.gan_step.g_optimizer.param_groups[0]["lr"]
    d_base = trainer.gan_step.d_optimizer.param_groups[0]["lr"]  # lazy R1's corrected lr, kept as the base
    recipes_ablation.attach_lr_decay(trainer, start_step=4, end_step=8)
    emas = recipes_ablation.attach_extra_emas(trainer, "1000")
    (label, ema), = emas.items()
    assert label == "ema half-life 1k images from epoch 0"
    # started from the run's own EMA, not from the generator
    start = next(iter(trainer.ema_generator.parameters())).clone()
    assert torch.equal(next(iter(ema.generator.parameters())), start)
    batch = torch.rand(128, 1, 28, 28) * 2 - 1
    seen = []
    for _ in range(9):
        seen.append(trainer.gan_step.g_optimizer.param_groups[0]["lr"] / g_base)
        assert trainer.gan_step.d_optimizer.param_groups[0]["lr"] / d_base == pytest.approx(seen[-1])
        trainer.train_step(batch)  # counts the step; the events are fit()'s, fired here by hand
        trainer.fire(Event.STEP_END)
    assert seen == pytest.approx([1, 1, 1, 1, 1, 0.75, 0.5, 0.25, 0.0])  # (8 - step) / (8 - 4), clamped
    # the passive EMA moved towards the generator: beta = 0.5 ** (128 / 1000) per step
    assert not torch.equal(next(iter(ema.generator.parameters())), start)
    assert ema.current_decay() == pytest.approx(0.5 ** (128 / 1000))


def test_recipes_ablation_spectral_norm_configs_differ_only_in_the_implementation() -> None:
    from benchmarks import recipes_ablation

    output = recipes_ablation.make_trainer("+spectral-norm", 0)[0].discriminator
    torch_sn = recipes_ablation.make_trainer("+spectral-norm-torch", 0)[0].discriminator
    linears = [[m for m in d.modules() if isinstance(m, torch.nn.Linear)] for d in (output, torch_sn)]
    assert len(linears[0]) == len(linears[1]) == 4
    assert all(hasattr(m, "weight_u") and not hasattr(m, "parametrizations") for m in linears[0])
    assert all(hasattr(m, "parametrizations") and not hasattr(m, "weight_u") for m in linears[1])
    x = torch.rand(8, 1, 28, 28) * 2 - 1
    output.eval()
    torch_sn.eval()
    with torch.no_grad():
        torch.testing.assert_close(output(x), torch_sn(x), rtol=1e-4, atol=1e-5)  # the same function


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_recipes_ablation_refuses_cuda_without_a_gpu_by_name() -> None:
    from benchmarks import recipes_ablation

    with pytest.raises(SystemExit, match=r"--device cuda, but torch\.cuda\.is_available\(\) is False"):
        recipes_ablation.main(["--device", "cuda", "--configs", "reference"])


def test_recipes_table_means_over_seeds_and_lists_each_row(tmp_path: Path, capsys) -> None:
    from benchmarks import recipes_table

    base = {"config": "improved", "epochs": 20, "weights": "ema", "kid_mean": 40.0, "classifier_score": 6.0,
            "coverage_kl": 0.1, "classes_at_1pct": 10, "precision": 0.7, "recall": 0.2}
    rows = [{**base, "seed": 0, "fd": 100.0}, {**base, "seed": 1, "fd": 200.0, "kid_mean": 50.0},
            {**base, "seed": 0, "fd": 300.0, "epochs": 10}]
    path = tmp_path / "r.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert recipes_table.main(["--summary", str(path)]) == 0
    out = capsys.readouterr().out
    assert "| improved | 20 | ema | 0,1 | 150.0 (100.0-200.0) | 45.0 (40.0-50.0) |" in out
    assert "| improved | 10 | ema | 0 | 300.0 | 40.0 |" in out
    assert recipes_table.main(["--epochs", "10", str(path)]) == 0
    assert capsys.readouterr().out.count("| improved |") == 1
    assert recipes_table.main([str(tmp_path / "missing.jsonl")]) == 2
