"""What one training step costs, counted: matmul FLOPs, operator launches, host syncs, matmul speed.

Run from the repository root (CPU, about a minute)::

    .venv/bin/python -m benchmarks.step_anatomy [--batch 128] [--skip-matmul]

It prints, for the tutorial's loop (the baseline) and each library path:

- matmul FLOPs of one step, counted by ``torch.utils.flop_counter.FlopCounterMode``
  (every ``mm``/``addmm`` actually dispatched, forward and backward), next to the
  closed-form count of :func:`analytic_flops`;
- the operators dispatched per step that would each launch at least one kernel on a
  GPU (views and metadata-only operators left out), and the host reads
  of device values (``.item()``/``float()``: ``aten._local_scalar_dense``, the step
  counters of a non-fused Adam apart: they live on the host), a proxy for a GPU's
  launch-bound cost. Each is counted with its GPU defaults: the baseline with
  ``Adam(foreach=True)``, what PyTorch picks for CUDA tensors (for CPU tensors its
  default is a per-parameter loop, about ten operators per tensor), the library
  with ``nonfinite=100``, the trainer's default on an accelerator;
- fp32 and bf16 matmul throughput of this CPU at the model's largest layer shape
  and at a square 2048 matmul, the ceiling that bounds the step on a CPU;
- what :mod:`torchgan_lite.layers` changes, timed in interleaved turns: the step's
  float32 products through MKL (``nn.Linear``) against oneDNN (``layers.Linear``),
  and one dropout call's ``bernoulli_`` masks against ``MaskDropout``'s word masks.
"""

from __future__ import annotations

import argparse
import dataclasses
import random
import statistics
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode

from torchgan_lite.nets import layers

from .harness import device_name, make_trainer
from .reference_loop import ReferenceLoop
from .variants import VARIANTS

__all__ = ["LayerSizes", "OpCounter", "analytic_flops", "layer_costs", "main", "matmul_gflops", "step_functions"]

# Operators that allocate or re-describe memory without a compute kernel, and profiler marks.
_NO_KERNEL = {"detach", "alias", "empty", "empty_like", "empty_strided", "lift_fresh", "_local_scalar_dense",
              "_record_function_enter_new", "_record_function_exit"}


@dataclass(frozen=True)
class LayerSizes:
    """The Linear layers of the reference G and D as ``(in, out)`` pairs."""

    generator: tuple[tuple[int, int], ...] = ((100, 256), (256, 512), (512, 1024), (1024, 784))
    discriminator: tuple[tuple[int, int], ...] = ((784, 1024), (1024, 512), (512, 256), (256, 1))


def analytic_flops(batch: int, tutorial: bool, sizes: LayerSizes = LayerSizes()) -> int:
    """Matmul FLOPs of one step (2 per multiply-add), forward and backward.

    A Linear layer of ``(i, o)`` on ``B`` rows costs ``2*B*i*o`` forward, the same
    again for its weight gradient and the same for its input gradient; the input
    gradient of a layer whose input needs none (the first layer on data or noise) is
    not computed. With ``G``/``D`` the forward cost of a network and ``G1``/``D1``
    that of its first layer, one step is:

    - D update: G forward (fakes), 2 D forwards (real, fake), 2 D backwards with
      weight gradients and input gradients below the first layer: ``G + 2D + 2(2D - D1)``
      (the same when the library scores ``cat([real, fake])`` in one call of 2B rows);
    - G update: G forward, D forward, D input gradients ``D``, G weight and input
      gradients ``2G - G1``; the tutorial also computes D's weight gradients, ``+D``.

    Total ``4G - G1 + 8D - 2D1`` for the library, one ``D`` more for the tutorial.
    """

    def fwd(layers: tuple[tuple[int, int], ...]) -> int:
        return sum(2 * batch * i * o for i, o in layers)

    g, d = fwd(sizes.generator), fwd(sizes.discriminator)
    g1, d1 = fwd(sizes.generator[:1]), fwd(sizes.discriminator[:1])
    total = 4 * g - g1 + 8 * d - 2 * d1
    return total + d if tutorial else total


class OpCounter(TorchDispatchMode):
    """Counts the aten operators dispatched inside it (views and allocations apart).

    Args:
        host_scalars: Tensors that live on the host even when training on a GPU (the
            step counters of a non-fused Adam): reading them is not a device sync.
    """

    def __init__(self, host_scalars: list[torch.Tensor] = ()) -> None:  # type: ignore[assignment]
        super().__init__()
        self.kernels: Counter[str] = Counter()
        self.host_reads = 0
        self._host_ids = {id(t) for t in host_scalars}

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        name = func.overloadpacket.__name__
        if name == "_local_scalar_dense":
            self.host_reads += id(args[0]) not in self._host_ids
        elif not (getattr(func, "is_view", False) or name in _NO_KERNEL):
            self.kernels[name] += 1
        return func(*args, **(kwargs or {}))


def step_functions(batch: int) -> dict[str, tuple[Callable[[], Any], list[torch.optim.Optimizer]]]:
    """One CPU training step per variant, on a fixed synthetic batch ``(batch, 1, 28, 28)``, and its optimizers."""
    real = torch.rand(batch, 1, 28, 28) * 2 - 1  # (B, 1, 28, 28)
    steps: dict[str, tuple[Callable[[], Any], list[torch.optim.Optimizer]]] = {}
    for v in VARIANTS:
        if v.skip_reason("cpu") is not None:
            continue
        if v.is_baseline:
            loop = ReferenceLoop.create("cpu")
            # PyTorch's default Adam for CUDA tensors is foreach: count what a GPU would launch.
            loop.d_optimizer = torch.optim.Adam(loop.discriminator.parameters(), lr=2e-4, foreach=True)
            loop.g_optimizer = torch.optim.Adam(loop.generator.parameters(), lr=2e-4, foreach=True)
            steps[v.name] = (lambda loop=loop: loop.step(real)), [loop.d_optimizer, loop.g_optimizer]
        else:
            # Count with the trainer's accelerator default: the loss checked every 100 steps
            # (on a CPU it is checked every update, which costs nothing there). And with
            # nn.Linear/nn.Dropout: on a GPU the fast layers *are* F.linear/F.dropout, while
            # on this CPU MaskDropout would be counted as its word-mask operators.
            nn_layers = {"fast_layers": False}
            v = dataclasses.replace(v, d_kwargs={**v.d_kwargs, **nn_layers}, g_kwargs={**v.g_kwargs, **nn_layers})
            trainer = make_trainer(v, "cpu", nonfinite=100)
            steps[v.name] = ((lambda trainer=trainer: trainer.train_step(real)),
                             [trainer.gan_step.d_optimizer, trainer.gan_step.g_optimizer])
    return steps


def matmul_gflops(m: int, k: int, n: int, dtype: torch.dtype, seconds: float = 0.5) -> float:
    """Best-of throughput of ``(m, k) @ (k, n)`` in ``dtype`` on the CPU, in GFLOP/s."""
    a, b = torch.randn(m, k).to(dtype), torch.randn(k, n).to(dtype)
    for _ in range(3):
        a @ b
    best, t_end = float("inf"), time.perf_counter() + seconds
    while time.perf_counter() < t_end:
        t0 = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t0)
    return 2 * m * k * n / best / 1e9


def layer_costs(batch: int, turns: int = 15, sizes: LayerSizes = LayerSizes()) -> dict[str, float]:
    """Median milliseconds of the pieces :mod:`torchgan_lite.layers` replaces, timed in interleaved turns.

    ``mkl_*``/``onednn_*``: the forward (``x @ W.T + b``), input-gradient (``g @ W``) and
    weight-gradient (``g.T @ x``) products of every Linear layer of G and D at ``batch``
    rows, summed, through ``torch.mm``/``addmm`` (MKL) and through oneDNN.
    ``bernoulli_mask``/``word_mask``: one ``(batch, 1024)`` dropout call, ``F.dropout``
    against ``layers.MaskDropout``. Empty where this torch has no oneDNN linear.
    """
    if not layers.onednn_linear_available():
        return {}
    onednn = layers._onednn_linear
    shapes = sizes.generator + sizes.discriminator
    mats = [(torch.randn(batch, i), torch.randn(o, i), torch.randn(o), torch.randn(batch, o)) for i, o in shapes]
    x_drop = torch.randn(batch, 1024)
    drop = layers.MaskDropout(0.3)
    pieces = {
        "mkl_forward": lambda: [torch.addmm(b, x, w.t()) for x, w, b, _ in mats],
        "onednn_forward": lambda: [onednn(x, w, b) for x, w, b, _ in mats],
        "mkl_input_grad": lambda: [torch.mm(g, w) for _, w, _, g in mats],
        "onednn_input_grad": lambda: [onednn(g, w.t(), None) for _, w, _, g in mats],
        "mkl_weight_grad": lambda: [torch.mm(g.t(), x) for x, _, _, g in mats],
        "onednn_weight_grad": lambda: [onednn(g.t(), x.t(), None) for x, _, _, g in mats],
        "bernoulli_mask": lambda: F.dropout(x_drop, 0.3, training=True),
        "word_mask": lambda: drop(x_drop),
    }
    for fn in pieces.values():
        fn()
    times: dict[str, list[float]] = {k: [] for k in pieces}
    order = random.Random(0)
    for _ in range(turns):
        names = list(pieces)
        order.shuffle(names)
        for name in names:
            t0 = time.perf_counter()
            pieces[name]()
            times[name].append(time.perf_counter() - t0)
    return {k: statistics.median(v) * 1e3 for k, v in times.items()}


def main(argv: list[str] | None = None) -> None:
    """Print the step anatomy at one batch size."""
    parser = argparse.ArgumentParser(description="FLOPs, launches and matmul speed of one training step")
    parser.add_argument("--batch", type=int, default=128, help="images per step (default 128)")
    parser.add_argument("--skip-matmul", action="store_true", help="do not time the matmuls")
    args = parser.parse_args(argv)
    b = args.batch
    torch.manual_seed(0)
    print(f"{device_name('cpu')}, torch {torch.__version__}, batch {b}")
    print(f"closed form: tutorial {analytic_flops(b, True) / 1e9:.3f} GFLOP, "
          f"library {analytic_flops(b, False) / 1e9:.3f} GFLOP per step")
    print()
    print("| variant | matmul GFLOP/step (counted) | kernels/step | host reads/step | top operators |")
    print("|---|---:|---:|---:|---|")
    for name, (step, optimizers) in step_functions(b).items():
        step()  # optimizer state is created on the first step: count a steady one
        with FlopCounterMode(display=False) as flops:
            step()
        host_scalars = [s["step"] for opt in optimizers for s in opt.state.values()
                        if isinstance(s.get("step"), torch.Tensor) and not opt.defaults.get("fused")
                        and not opt.defaults.get("capturable")]
        counter = OpCounter(host_scalars)
        with counter:
            step()
        top = ", ".join(f"{k} {v}" for k, v in counter.kernels.most_common(5))
        print(f"| {name} | {flops.get_total_flops() / 1e9:.3f} | {sum(counter.kernels.values())} "
              f"| {counter.host_reads} | {top} |")
    if args.skip_matmul:
        return
    print()
    print("| matmul (m, k, n) | fp32 GFLOP/s | bf16 GFLOP/s |")
    print("|---|---:|---:|")
    for m, k, n in ((b, 784, 1024), (2048, 784, 1024), (2048, 2048, 2048)):
        f32 = matmul_gflops(m, k, n, torch.float32)
        bf16 = matmul_gflops(m, k, n, torch.bfloat16)
        print(f"| ({m}, {k}, {n}) | {f32:.0f} | {bf16:.0f} |")
    costs = layer_costs(b)
    if costs:
        print()
        print(f"| what torchgan_lite.layers replaces (batch {b}, all 8 layers) | torch (ms) | layers (ms) | ratio |")
        print("|---|---:|---:|---:|")
        for label, old, new in (("forward products", "mkl_forward", "onednn_forward"),
                                ("input-gradient products", "mkl_input_grad", "onednn_input_grad"),
                                ("weight-gradient products (layers keep mm)", "mkl_weight_grad",
                                 "onednn_weight_grad"),
                                ("one dropout call, (B, 1024)", "bernoulli_mask", "word_mask")):
            print(f"| {label} | {costs[old]:.2f} | {costs[new]:.2f} | {costs[old] / costs[new]:.2f}x |")


if __name__ == "__main__":
    main()
