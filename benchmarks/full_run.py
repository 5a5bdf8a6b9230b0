"""Time a whole reference run (200 epochs, 93,600 steps by default) in one mode, then score it.

    python -m benchmarks.full_run --device cuda --capture cuda_graph --json full.json

The recipe of ``docs/reference-recipe.md`` through the public API: seeded reference
networks, ``NonSaturatingLoss``, Adam(2e-4), batches of 128 from a TensorLoader
over MNIST on the device. Reports the wall time of ``fit`` (data already decoded),
the stepping time summed over epochs, and the evaluator's figures beside the
real-data floor (docs/evaluation.md).
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import torch

import torchgan_lite
from torchgan_lite import GANTrainer, StepConfig, TensorLoader, seed_everything
from torchgan_lite.data import mnist as data
from torchgan_lite.losses import adversarial as losses
from torchgan_lite.nets import mlp as models


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=200, help="epochs of 468 steps (default 200, the recipe)")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default auto)")
    p.add_argument("--capture", choices=("none", "cuda_graph"), default="none",
                   help="cuda_graph: the step as one CUDA graph (GANTrainer(capture=...))")
    p.add_argument("--amp", choices=("none", "bf16"), default="none", help="bf16: bfloat16 autocast of the forwards")
    p.add_argument("--compile", action="store_true", help="the step through torch.compile (GANTrainer(compile=True))")
    p.add_argument("--data-root", default=None, help="folder holding MNIST/raw/ (default: $TORCHGAN_LITE_DATA)")
    p.add_argument("--eval-n", type=int, default=10000, help="samples to score at the end (0: skip)")
    p.add_argument("--seed", type=int, default=0, help="seed_everything seed: weights, noise, data order")
    p.add_argument("--json", default=None, help="write the figures here too")
    args = p.parse_args(argv)

    seed_everything(args.seed)
    trainer = GANTrainer(models.mlp_generator(), models.mlp_discriminator(), losses.NonSaturatingLoss(),
                         device=args.device,
                         step=StepConfig(amp=None if args.amp == "none" else args.amp,
                                         implementation="compiled" if args.compile else "eager"))
    images = data.mnist(args.data_root, device=trainer.device)  # (60000, 1, 28, 28) in [-1, 1]
    loader = TensorLoader(images, batch_size=128)
    sync = torch.cuda.synchronize if trainer.device.type == "cuda" else (lambda: None)
    sync()
    t0 = time.perf_counter()
    trainer.fit(loader, epochs=args.epochs)
    sync()
    wall = time.perf_counter() - t0
    st = trainer.state
    result = {
        "device": torch.cuda.get_device_name() if trainer.device.type == "cuda" else platform.processor() or "cpu",
        "torch": torch.__version__, "torchgan_lite": torchgan_lite.__version__,
        "mode": {"capture": args.capture, "amp": args.amp, "compile": args.compile},
        "epochs": st.epoch, "steps": st.step, "fit_wall_s": wall, "steps_per_s": st.step / wall,
        "last_epoch": {k: getattr(st.history[-1], k) for k in ("d_loss", "g_loss", "d_real", "d_fake")},
    }
    print(f"{st.epoch} epochs, {st.step} steps in {wall:.1f} s ({st.step / wall:.0f} steps/s) on {result['device']}")
    if args.eval_n:
        from torchgan_lite.metrics.evaluator import evaluate_mnist

        figures = evaluate_mnist(trainer.generator, n=args.eval_n, data_root=args.data_root, device=trainer.device)
        result["metrics"] = figures
        print(" ".join(f"{k}={v:.4g}" for k, v in figures.items()))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
