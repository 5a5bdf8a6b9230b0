"""Ablation of the recipe parts: each part added alone to the reference recipe, trained and scored.

Every run trains the reference MLP networks on MNIST (batches of 128, 468 steps an epoch)
with one :class:`torchgan_lite.recipes.RecipeSpec`, then scores the generator (and its EMA,
where the recipe has one) with ``torchgan_lite.metrics.evaluator.evaluate_mnist`` (n samples, noise
seed 0; docs/evaluation.md). The reference run also carries a passive half-life EMA and is
scored with truncated noise, since neither changes training. One process, one thread
(``torch.set_num_threads(1)``), runs one after another; each result is appended to
``--out`` as one JSON line as soon as it exists, so an interrupted ablation keeps what it had.

    TORCHGAN_LITE_DATA=/work/shared/data python benchmarks/recipes_ablation.py --epochs 3 \\
        --out benchmarks/results/recipes_ablation_cpu.jsonl
    python benchmarks/recipes_ablation.py --configs improved improved-r1 --epochs 50 --eval-at 10,20,30,40 \\
        --run-dir runs/recipes --out benchmarks/results/recipes_long/improved.jsonl
    python benchmarks/recipes_ablation.py --configs rpgan-r1r2 --epochs 20 --eval-at 10 \
        --out benchmarks/results/recipes_images/mnist_rpgan-r1r2_s0.jsonl   # any recipe of torchgan_lite.recipes
    python benchmarks/recipes_ablation.py --time --rounds 5      # paired step times, no training run

``--eval-at`` scores a run at several epochs on its way to ``--epochs``; ``--run-dir`` keeps each
run's checkpoint (``<config>_seed<S>/checkpoint.pt``, rewritten at every scored epoch) and an 8x8
grid of the same 64 noise vectors at each scored epoch (``epochNNN.png``: the EMA where the recipe
has one; ``epochNNN_trained.png``: the trained weights). Run again with a larger ``--epochs`` and the
same ``--run-dir``, a run continues from its checkpoint (bit for bit, as any resume) instead of
starting over.

``--time`` measures the step time of each recipe against the reference in paired,
interleaved rounds (``--steps`` steps of each recipe in turn, per round, the order rotated
by one config every round) and prints the median ratio and its quartiles: a recipe part's
cost, separated from the machine's drift.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import time
from pathlib import Path

import torch

from torchgan_lite import Event, GANTrainer, TensorLoader, seed_everything
from torchgan_lite.data import mnist as data
from torchgan_lite.nets import mlp as models
from torchgan_lite.nets import spectral
from torchgan_lite.nets.sampling import truncated_noise
from torchgan_lite.recipes import SPECS, RecipeSpec, build_parts

REF = SPECS["reference"]

#: name -> the spec trained. Each ablation is the reference plus one part.
ABLATIONS: dict[str, RecipeSpec] = {
    "reference": REF,
    "+diffaugment": dataclasses.replace(REF, description="DiffAugment color,translation,cutout, p = 1",
                                        augment_policy="color,translation,cutout"),
    "+ada": dataclasses.replace(REF, description="DiffAugment's transforms, p by ADA (target 0.6, 500k images)",
                                augment_policy="color,translation,cutout", ada_target=0.6),
    "+lecam": dataclasses.replace(REF, description="LeCam, weight 0.3, decay 0.99", lecam_weight=0.3),
    "+lazy-r1": dataclasses.replace(REF, description="R1 gamma 10 every 16 D updates, Adam corrected",
                                    r1_gamma=10.0, r1_every=16),
    "+ttur": dataclasses.replace(REF, description="TTUR: G lr 1e-4, D lr 4e-4", g_lr=1e-4, d_lr=4e-4),
    "+spectral-norm": dataclasses.replace(REF, description="spectral norm on every D layer", spectral_norm=True),
    # the same part through torch's parametrization (W / sigma on every call) instead of the output: its cost
    "+spectral-norm-torch": dataclasses.replace(REF, description="spectral norm on every D layer, torch's "
                                                "parametrization", spectral_norm=True),
    "improved": SPECS["improved"],
    "improved-r1": SPECS["improved-r1"],  # = improved+lazy-r1, the recipe named in torchgan_lite.recipes
}


def spec_for(name: str) -> RecipeSpec:
    """An ABLATIONS entry, or a combination of them written ``+a+b`` (each one's changes to the reference, merged)."""
    if name in ABLATIONS:
        return ABLATIONS[name]
    if name in SPECS:  # any named recipe of torchgan_lite.recipes (e.g. rpgan-r1r2, dcgan)
        return SPECS[name]
    parts = [part if part in ABLATIONS else "+" + part for part in name.split("+") if part]
    if len(parts) < 2 or any(part not in ABLATIONS for part in parts):
        raise ValueError(f"unknown config {name!r}: a name from {list(ABLATIONS)} or a combination such as "
                         "'+diffaugment+lecam' or 'improved+lecam'")
    changes: dict[str, object] = {}
    for part in parts:
        spec = ABLATIONS[part]
        changes |= {f.name: getattr(spec, f.name) for f in dataclasses.fields(spec)
                    if f.name != "description" and getattr(spec, f.name) != getattr(REF, f.name)}
    return dataclasses.replace(REF, description=" + ".join(ABLATIONS[p].description for p in parts), **changes)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--configs", nargs="*", default=[n for n in ABLATIONS if n != "+spectral-norm-torch"],
                   help="names from ABLATIONS, or combinations such as +diffaugment+lecam (default: all of "
                        "ABLATIONS but +spectral-norm-torch, which trains as +spectral-norm does)")
    p.add_argument("--epochs", type=int, default=3, help="epochs of each training run (default: %(default)s)")
    p.add_argument("--eval-at", type=str, default=None,
                   help="comma-separated epochs at which to score (and write a grid), e.g. 10,20,50 "
                        "(default: --epochs only)")
    p.add_argument("--run-dir", type=Path, default=None,
                   help="folder for each run's checkpoint (kept at every scored epoch, so that a longer run "
                        "continues from it) and sample grids (default: none written)")
    p.add_argument("--seed", type=int, default=0, help="seeds weights, noise and data order (default: %(default)s)")
    p.add_argument("--n", type=int, default=10000, help="samples scored")
    p.add_argument("--subset", type=int, default=None, help="train on the first N images only (smoke runs)")
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/recipes_ablation_cpu.jsonl"),
                   help="JSON-lines file the results are appended to (default: %(default)s)")
    p.add_argument("--machine", default="2-core machine shared with other jobs",
                   help="what else ran on the machine, recorded with each row")
    p.add_argument("--init-from", type=Path, default=None,
                   help="start each run from this checkpoint of the same config (when its --run-dir has none)")
    p.add_argument("--lr-decay-from", type=int, default=None, metavar="EPOCH",
                   help="from this epoch on, both networks' learning rates fall linearly to 0 at --epochs "
                        "(set from the step count at every step, so it needs no state)")
    p.add_argument("--extra-ema", type=str, default=None, metavar="H1,H2",
                   help="passive generator EMAs by half-life in images (no ramp-up), started from the run's EMA "
                        "(or its generator) when this process starts training; scored beside the others, "
                        "not saved in checkpoints")
    p.add_argument("--variant", type=str, default="",
                   help="a suffix of the config's name in the rows and the run folder, e.g. '-decay50'")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                   help="where the runs train and are scored (default: %(default)s; the CPU uses one thread)")
    p.add_argument("--time", action="store_true", help="paired step timing instead of training runs")
    p.add_argument("--rounds", type=int, default=5, help="timed rounds per config (--time; default: %(default)s)")
    p.add_argument("--steps", type=int, default=20, help="steps per config and round (--time)")
    return p.parse_args(argv)


def make_trainer(name: str, seed: int, batch_size: int = 128, device: str = "cpu") -> tuple[GANTrainer, list]:
    seed_everything(seed)
    generator, discriminator = models.mlp_generator(), models.mlp_discriminator()
    if name.endswith("spectral-norm-torch"):  # build_parts then leaves the normalised layers as they are
        spectral.apply_spectral_norm(discriminator, method="parametrization")
    parts = build_parts(spec_for(name), generator, discriminator, batch_size=batch_size)
    trainer = GANTrainer(generator, discriminator, parts.loss, g_optimizer=parts.g_optimizer,
                         d_optimizer=parts.d_optimizer, step=parts.step_config(), device=device)
    for callback in parts.callbacks:
        callback.attach(trainer)
    return trainer, parts.callbacks


def score(source, n: int, device: str = "cpu", seed: int = 0) -> dict[str, float]:
    from torchgan_lite.metrics.evaluator import evaluate_mnist

    result = evaluate_mnist(source, n=n, device=device, seed=seed)
    return {k: round(float(v), 4) for k, v in result.items()}


def eval_epochs(args: argparse.Namespace) -> list[int]:
    """The epochs at which a run is scored, ascending, ending at ``--epochs``."""
    try:
        wanted = {int(e) for e in args.eval_at.split(",") if e.strip()} if args.eval_at else set()
    except ValueError:
        sys.exit(f"error: --eval-at must be comma-separated epochs such as 10,20,50, got {args.eval_at!r}")
    if any(e < 1 or e > args.epochs for e in wanted):
        sys.exit(f"error: --eval-at epochs must lie in [1, --epochs={args.epochs}], got {args.eval_at!r}")
    return sorted(wanted | {args.epochs})


def train_and_score(name: str, args: argparse.Namespace, images: torch.Tensor):
    """Train one config, yielding its result rows at each scored epoch (written as they come)."""
    from torchgan_lite.callbacks.ema import GeneratorEMA
    from torchgan_lite.callbacks.reporting import fixed_noise, save_grid

    trainer, callbacks = make_trainer(name, args.seed, device=args.device)
    observer = None
    if name == "reference":  # a passive EMA: it reads the weights, draws no random numbers
        observer = GeneratorEMA.from_half_life(10_000, 128, rampup=0.05)
        observer.attach(trainer)
    loader = TensorLoader(images, batch_size=128, shuffle=True, drop_last=True)  # images on args.device
    run_dir = None if args.run_dir is None else args.run_dir / f"{name}{args.variant}_seed{args.seed}"
    ckpt = None if run_dir is None else run_dir / "checkpoint.pt"
    # the decay sets the learning rates from the step count, so the saved (decayed) ones are not checked
    hyperparameters = "check" if args.lr_decay_from is None else "current"
    start = ckpt if ckpt is not None and ckpt.exists() else args.init_from
    if start is not None:  # continue a shorter run of the same config (bitwise, as resume is)
        trainer.load_checkpoint(start, data=loader, hyperparameters=hyperparameters)
        print(f"{name}{args.variant} seed {args.seed}: continuing from epoch {trainer.state.epoch} of {start}",
              flush=True)
    if args.lr_decay_from is not None:
        attach_lr_decay(trainer, args.lr_decay_from * len(loader), args.epochs * len(loader))
    extra = attach_extra_emas(trainer, args.extra_ema)
    train_s = 0.0
    for epoch in eval_epochs(args):
        if trainer.state.epoch >= epoch:
            continue
        t0 = time.perf_counter()
        trainer.fit(loader, epochs=epoch)
        train_s += time.perf_counter() - t0
        if ckpt is not None:
            trainer.save_checkpoint(ckpt)
            z = fixed_noise(64, trainer.latent_dim, seed=0)  # (64, 100): the same noise for every run
            save_grid(trainer.sample(64, z=z), run_dir / f"epoch{epoch:03d}.png")
            if trainer.ema_generator is not None:
                save_grid(trainer.sample(64, z=z, use_ema=False), run_dir / f"epoch{epoch:03d}_trained.png")
        yield from score_rows(name, args, trainer, callbacks, observer, epoch, train_s, extra)


def attach_lr_decay(trainer: GANTrainer, start_step: int, end_step: int) -> None:
    """Scale both optimizers' learning rates by ``clamp((end - step) / (end - start), 0, 1)``, set at every step."""
    if not 0 <= start_step < end_step:
        sys.exit(f"error: --lr-decay-from must lie before --epochs (steps {start_step} and {end_step})")
    step = trainer.gan_step
    bases = [[group["lr"] for group in opt.param_groups] for opt in (step.g_optimizer, step.d_optimizer)]

    def set_lr(trainer: GANTrainer) -> None:
        factor = min(1.0, max(0.0, (end_step - trainer.state.step) / (end_step - start_step)))
        for opt, base in zip((trainer.gan_step.g_optimizer, trainer.gan_step.d_optimizer), bases):
            for group, lr in zip(opt.param_groups, base):
                group["lr"] = lr * factor

    set_lr(trainer)  # for the first step after a continued checkpoint
    trainer.add_callback(Event.STEP_END, set_lr)


def attach_extra_emas(trainer: GANTrainer, spec: str | None) -> dict[str, object]:
    """Passive EMAs by half-life (images), started now from the run's EMA or generator: label -> GeneratorEMA."""
    from torchgan_lite.callbacks.ema import GeneratorEMA

    emas: dict[str, object] = {}
    for text in (spec or "").split(","):
        if not text.strip():
            continue
        try:
            half_life = float(text)
        except ValueError:
            sys.exit(f"error: --extra-ema must be comma-separated half-lives in images, got {spec!r}")
        ema = GeneratorEMA.from_half_life(half_life, 128, rampup=None)
        ema.reset(trainer.generator)
        start = trainer.ema_generator if trainer.ema_generator is not None else trainer.generator
        ema.generator.load_state_dict(start.state_dict())
        trainer.add_callback(Event.STEP_END, lambda t, ema=ema: ema.update())
        emas[f"ema half-life {half_life / 1000:g}k images from epoch {trainer.state.epoch}"] = ema
    return emas


def device_label(args: argparse.Namespace) -> str:
    if args.device == "cuda":
        return f"{torch.cuda.get_device_name()} ({args.machine})"
    return f"cpu, 1 thread ({args.machine})"


def score_rows(name, args, trainer, callbacks, observer, epoch, train_s, extra=None) -> list[dict]:
    common = {"config": name + args.variant, "description": spec_for(name).description
              + (f"; lr decayed linearly to 0 from epoch {args.lr_decay_from}" if args.lr_decay_from else ""),
              "epochs": epoch,
              "steps": trainer.state.step, "seed": args.seed, "n": args.n, "train_s": round(train_s, 1),
              "torch": torch.__version__, "device": device_label(args)}
    dev = args.device
    rows = [{**common, "weights": "trained", **score(trainer.generator, args.n, dev)}]
    if trainer.ema_generator is not None:
        tag = "ema half-life 10k images, ramp-up 0.05" if observer is not None else "ema"
        rows.append({**common, "weights": tag, **score(trainer.ema_generator, args.n, dev)})
    for tag, ema in (extra or {}).items():
        rows.append({**common, "weights": tag, **score(ema.generator, args.n, dev)})
    if name == "reference":
        for threshold in (1.0,):
            z = truncated_noise(args.n, trainer.latent_dim, threshold, generator=torch.Generator().manual_seed(0))
            gen = trainer.generator.eval()
            with torch.no_grad():
                samples = torch.cat([gen(chunk.to(dev)) for chunk in z.split(500)])  # (n, 1, 28, 28)
            rows.append({**common, "weights": f"trained, truncated noise {threshold}",
                         **score(samples, args.n, dev)})
        for eval_seed in (1,):  # the evaluator's own spread: other noise for the same weights
            rows.append({**common, "weights": f"trained, evaluator seed {eval_seed}",
                         **score(trainer.generator, args.n, dev, seed=eval_seed)})
    for callback in callbacks:
        if hasattr(callback, "augment"):
            for row in rows:
                row["ada_p"] = round(callback.augment.p, 4)
    return rows


def time_steps(args: argparse.Namespace, images: torch.Tensor) -> None:
    names = [n for n in args.configs]
    trainers = {name: make_trainer(name, args.seed, device=args.device)[0] for name in names}
    sync = torch.cuda.synchronize if args.device == "cuda" else (lambda: None)
    batch = images[:128]
    for trainer in trainers.values():  # warm-up
        for _ in range(3):
            trainer.train_step(batch)
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(args.rounds):
        for name in names[r % len(names):] + names[: r % len(names)]:  # each round starts one config later
            trainer = trainers[name]
            sync()
            t0 = time.perf_counter()
            for _ in range(args.steps):
                trainer.train_step(batch)
            sync()
            times[name].append((time.perf_counter() - t0) / args.steps)
    ref = times["reference"]
    for name in names:
        ratios = [t / r for t, r in zip(times[name], ref)]
        q1, _, q3 = statistics.quantiles(ratios, n=4, method="inclusive") if len(ratios) > 1 else (ratios[0],) * 3
        print(f"{name:16s} median step {statistics.median(times[name]) * 1e3:7.1f} ms   "
              f"ratio to reference: median {statistics.median(ratios):.3f}, quartiles {q1:.3f}-{q3:.3f}, "
              f"range {min(ratios):.3f}-{max(ratios):.3f}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(1)
    try:
        for name in args.configs:
            spec_for(name)
    except ValueError as err:
        sys.exit(str(err))
    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("error: --device cuda, but torch.cuda.is_available() is False")
    images = data.mnist(None, device=args.device)[: args.subset]  # (60000, 1, 28, 28) in [-1, 1]
    if args.time:
        time_steps(args, images)
        return 0
    args.out.parent.mkdir(parents=True, exist_ok=True)
    for name in args.configs:
        for row in train_and_score(name, args, images):
            with args.out.open("a") as f:
                f.write(json.dumps(row) + "\n")
            print(json.dumps({k: row[k] for k in ("config", "weights", "fd", "kid_mean", "classifier_score",
                                                  "coverage_kl", "precision", "recall", "train_s")}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
