"""Run reports: sample grids from a fixed noise bank, the loss history as CSV and as a plot, run.json.

The callbacks here follow :mod:`torchgan_lite.callbacks`: a small object whose
``attach(trainer)`` registers handlers ``fn(trainer)`` and returns their handles.
They read the trainer only at epoch ends and at the end of ``fit`` (or when it is
interrupted), so they add nothing to the training step, and only the main process
(rank 0 of a data-parallel run) writes files.

- :class:`SampleGrid`: ``samples_epoch_NNN.png`` every N epochs and ``samples_final.png``,
  an 8x8 grid from one fixed noise bank (:func:`fixed_noise`), so epochs can be compared;
  for a conditional generator with fixed labels too (the CLI's ``digits_*.png``: row d, digit d).
- :class:`HistoryCSV`: ``history.csv``, one row per completed epoch, rewritten each epoch.
- :class:`LossPlot`: ``losses.png``, mean D and G loss per epoch (needs matplotlib, the
  ``[plot]`` extra; without it the plot is skipped with one printed note).

Every file is written atomically by :func:`torchgan_lite.utils.atomic.atomic_open` (a temporary
file renamed over the target), so a run killed mid-write never leaves a torn PNG or CSV.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import logging
import os
import platform
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO, cast

import torch

from torchgan_lite.training.events import Event, RemovableHandle
from torchgan_lite.utils.atomic import atomic_open
from torchgan_lite.utils.checks import check_bool, check_int, check_path, check_stream, describe
from torchgan_lite.utils.cycles import collect_own_cycles

if TYPE_CHECKING:
    from torchgan_lite.training.state import EpochStats
    from torchgan_lite.training.trainer import GANTrainer

__all__ = [
    "HISTORY_COLUMNS", "HistoryCSV", "LossPlot", "SampleGrid", "fixed_noise", "plot_losses", "run_info",
    "save_grid", "write_history_csv", "write_json"
]

#: The first columns of ``history.csv``: the fields of :class:`~torchgan_lite.EpochStats`.
HISTORY_COLUMNS: tuple[str, ...] = ("epoch", "step", "d_loss", "g_loss", "d_real", "d_fake", "seconds",
                                    "steps_per_s")


# --------------------------------------------------------------------------- helpers


def _check_path(name: str, value: object) -> Path:
    return check_path(name, value)


def _check_str(name: str, value: object) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str, got {describe(value)}")
    return value


def _check_noise(name: str, z: object) -> torch.Tensor:
    if not isinstance(z, torch.Tensor):
        raise TypeError(f"{name} must be a noise tensor (n, latent_dim), got {describe(z)}")
    if z.dim() != 2 or z.shape[0] < 1 or z.shape[1] < 1 or not z.is_floating_point() or z.is_sparse \
            or z.is_meta or not bool(torch.isfinite(z).all()):
        raise ValueError(f"{name} must be a finite float noise tensor (n, latent_dim) with n, latent_dim >= 1, "
                         f"got {z.dtype} of shape {tuple(z.shape)}")
    return z


def _check_labels(name: str, labels: object, n: int) -> torch.Tensor:
    if not isinstance(labels, torch.Tensor):
        raise TypeError(f"{name} must be an int64 tensor of classes (n,), got {describe(labels)}")
    if labels.dtype != torch.int64 or tuple(labels.shape) != (n,) or (n and int(labels.min()) < 0):
        raise ValueError(f"{name} must be an int64 tensor of shape ({n},) (one class >= 0 per noise row), "
                         f"got {labels.dtype} of shape {tuple(labels.shape)}")
    return labels


def _check_history(history: object) -> None:
    if isinstance(history, (str, bytes)) or not isinstance(history, Sequence):
        raise TypeError(f"history must be a sequence of EpochStats (trainer.state.history), got {describe(history)}")


def _is_main(trainer: GANTrainer) -> bool:
    # Data-parallel runs: only rank 0 writes files (the trainer says which process it is).
    return bool(getattr(trainer, "is_main_process", True))


def _row_dict(entry: EpochStats | Mapping[str, Any]) -> dict[str, Any]:
    if dataclasses.is_dataclass(entry) and not isinstance(entry, type):
        return dataclasses.asdict(entry)
    if isinstance(entry, Mapping):
        return dict(entry)
    raise TypeError(f"history entries must be EpochStats or mappings, got {type(entry).__name__}")


# --------------------------------------------------------------------------- functions


def fixed_noise(n: int, latent_dim: int, seed: int = 0, device: torch.device | str = "cpu",
                dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """A noise bank ``(n, latent_dim)`` ~ N(0, I) that depends on ``seed`` only.

    Drawn on the CPU from its own ``torch.Generator``, so it is the same on every
    device, after a resume, and whatever else drew from torch's global RNG.

    Args:
        n: Number of noise vectors (64 for an 8x8 grid).
        latent_dim: Size of each vector.
        seed: Seed of the bank's own generator.
        device: Where the returned tensor lives.
        dtype: Its dtype.
    """
    check_int("n", n)
    check_int("latent_dim", latent_dim)
    check_int("seed", seed, minimum=0)
    if seed >= 2**64:
        raise ValueError(f"seed must be < 2**64, got {seed}")
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"dtype must be a floating torch.dtype (torch.float32...), got {describe(dtype)}")
    if not isinstance(device, (str, torch.device)):
        raise TypeError(f"device must be a str or torch.device, got {describe(device)}")
    try:
        device = torch.device(device)
    except RuntimeError as err:
        raise ValueError(f"device must name a torch device ('cpu', 'cuda:0'...), got {device!r}") from err
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(n, latent_dim, generator=gen).to(device=device, dtype=dtype)  # (n, latent_dim)


def save_grid(images: torch.Tensor, path: str | os.PathLike[str], nrow: int = 8) -> Path:
    """Write images ``(B, C, H, W)`` as one PNG grid, as the recipe shows its samples.

    ``torchvision.utils.make_grid(images, nrow=nrow, normalize=True)`` (min-max scaled over
    the batch, 2-pixel padding), so 64 MNIST samples make a 242x242 image. One-channel
    images are written as a greyscale PNG (a third of the size of make_grid's RGB copy).

    Returns:
        ``path`` as a ``Path``.
    """
    from PIL import Image
    from torchvision.utils import make_grid, save_image

    path = _check_path("path", path)
    if not isinstance(images, torch.Tensor):
        raise TypeError(f"images must be a torch.Tensor (B, C, H, W), got {describe(images)}")
    if images.dim() != 4 or images.shape[0] < 1:
        raise ValueError(f"images must have shape (B, C, H, W) with B >= 1, got {tuple(images.shape)}")
    check_int("nrow", nrow)
    grid = make_grid(images.detach().float().cpu(), nrow=nrow, normalize=True)  # (3, H', W') in [0, 1]
    with atomic_open(path, "wb") as f:
        if images.shape[1] == 1:  # grey images: make_grid copied them into 3 equal channels; keep one
            pixels = grid[0].mul(255).add_(0.5).clamp_(0, 255).to(torch.uint8).numpy()  # (H', W')
            Image.fromarray(pixels).save(f, format="png")
        else:
            save_image(grid, f, format="png")
    return path


def write_history_csv(history: Sequence[EpochStats | Mapping[str, Any]], path: str | os.PathLike[str],
                      metrics_by_epoch: Mapping[int, Mapping[str, float]] | None = None) -> Path:
    """Write the per-epoch history as CSV: :data:`HISTORY_COLUMNS`, then one column per metric.

    Args:
        history: ``trainer.state.history`` (or dicts with the same keys).
        path: The CSV file; the header is written even when ``history`` is empty.
        metrics_by_epoch: Optional ``{epoch: {name: value}}``; a metric not measured at an
            epoch leaves its cell empty.

    Returns:
        ``path`` as a ``Path``.
    """
    path = _check_path("path", path)
    _check_history(history)
    if metrics_by_epoch is not None and not isinstance(metrics_by_epoch, Mapping):
        raise TypeError(f"metrics_by_epoch must be None or a mapping {{epoch: {{name: value}}}}, "
                        f"got {describe(metrics_by_epoch)}")
    metrics_by_epoch = dict(metrics_by_epoch or {})
    metric_names: list[str] = []
    for values in metrics_by_epoch.values():
        metric_names += [k for k in values if k not in metric_names and k not in HISTORY_COLUMNS]
    with atomic_open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow([*HISTORY_COLUMNS, *metric_names])
        for entry in history:
            row = _row_dict(entry)
            measured = metrics_by_epoch.get(int(row["epoch"]), {})
            writer.writerow([row.get(c, "") for c in HISTORY_COLUMNS] + [measured.get(k, "") for k in metric_names])
    return path


def plot_losses(history: Sequence[EpochStats | Mapping[str, Any]], path: str | os.PathLike[str],
                title: str = "GAN losses") -> Path:
    """The recipe's plot: mean D loss and mean G loss against the epoch (one plot, two curves).

    Uses matplotlib's object API with the Agg canvas (no pyplot, no global backend change).

    Raises:
        ModuleNotFoundError: matplotlib is not installed (``pip install 'torchgan_lite[plot]'``).

    Returns:
        ``path`` as a ``Path``.
    """
    path = _check_path("path", path)
    _check_history(history)
    _check_str("title", title)
    with collect_own_cycles():  # the figure is a web of reference cycles: freed here, not at a full collection
        _draw_losses([_row_dict(h) for h in history], path, title)
    return path


def _draw_losses(rows: list[dict[str, Any]], path: Path, title: str) -> None:
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
        from matplotlib.ticker import MaxNLocator
    except ModuleNotFoundError as err:
        raise ModuleNotFoundError("plot_losses needs matplotlib: pip install 'torchgan_lite[plot]'") from err
    epochs = [r["epoch"] for r in rows]
    fig = Figure(figsize=(6.4, 4.0), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    marker = "o" if len(rows) <= 30 else None
    ax.plot(epochs, [r["d_loss"] for r in rows], marker=marker, markersize=3, label="discriminator")
    ax.plot(epochs, [r["g_loss"] for r in rows], marker=marker, markersize=3, label="generator")
    if not rows:
        ax.text(0.5, 0.5, "no completed epoch yet", ha="center", va="center", transform=ax.transAxes)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers
    if rows and max(epochs) - min(epochs) < 10:
        ax.set_xlim(min(epochs) - 0.5, max(epochs) + 0.5)  # a few epochs: room for integer ticks
    ax.set_xlabel("epoch")
    ax.set_ylabel("mean loss over the epoch")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    if rows:
        ax.legend()
    fig.tight_layout()
    with atomic_open(path, "wb") as f:
        fig.savefig(f, format="png")


def write_json(path: str | os.PathLike[str], obj: Any) -> Path:
    """Write ``obj`` as indented JSON, atomically (``Path`` and other objects become strings)."""
    path = _check_path("path", path)
    with atomic_open(path, "w") as f:
        f.write(json.dumps(obj, indent=2, default=str, allow_nan=True) + "\n")
    return path


def run_info(trainer: GANTrainer, config: Mapping[str, Any], wall_seconds: float | None = None,
             status: str = "running") -> dict[str, Any]:
    """What ``run.json`` records: the config, the software versions, the device and the progress.

    Args:
        trainer: The trainer of the run.
        config: The run's settings (e.g. ``vars(argparse_namespace)``).
        wall_seconds: Wall time of this process's run so far.
        status: A word for how the run stands (``"running"``, ``"finished"``, ``"interrupted"``...).
    """
    import torchvision

    from torchgan_lite.utils.version import __version__

    if not isinstance(config, Mapping):
        raise TypeError(f"config must be a mapping (e.g. vars(args)), got {describe(config)}")
    if wall_seconds is not None and (isinstance(wall_seconds, bool) or not isinstance(wall_seconds, (int, float))):
        raise TypeError(f"wall_seconds must be None or a number of seconds, got {describe(wall_seconds)}")
    if wall_seconds is not None and not 0 <= wall_seconds < float("inf"):
        raise ValueError(f"wall_seconds must be finite and >= 0, got {wall_seconds!r}")
    _check_str("status", status)
    st = trainer.state
    return {
        "status": status,
        "config": dict(config),
        "device": str(trainer.device),
        "device_name": (torch.cuda.get_device_name(trainer.device) if trainer.device.type == "cuda"
                        else platform.processor() or platform.machine()),
        "versions": {"python": platform.python_version(), "torch": torch.__version__,
                     "torchvision": torchvision.__version__, "torchgan_lite": __version__},
        "wall_seconds": None if wall_seconds is None else round(float(wall_seconds), 3),
        "step": st.step,
        "epoch": st.epoch,
        "last_epoch": dataclasses.asdict(st.history[-1]) if st.history else None,
        "metrics": dict(st.metrics),
    }


# --------------------------------------------------------------------------- callbacks


class SampleGrid:
    """Saves an image grid of the generator on a fixed noise bank every ``every`` epochs and at the end.

    Files: ``out_dir/{prefix}_epoch_NNN.png`` (NNN = epochs completed) and, when ``fit``
    ends (all epochs or ``max_steps``), ``out_dir/{prefix}_final.png``.

    A conditional generator is asked for ``labels`` (fixed too, so epochs can be compared);
    without them, the classes in turn (``0, 1, ..., num_classes - 1, 0, ...``), so a grid
    never draws from torch's global RNG and leaves the training run's random stream alone.

    Args:
        out_dir: Folder of the PNGs (created).
        z: The fixed noise bank ``(n, latent_dim)``, e.g. ``fixed_noise(64, 100, seed)``.
        every: Epochs between grids.
        nrow: Images per grid row.
        final: Also write ``{prefix}_final.png`` at the end of ``fit``.
        labels: Conditional generators: int64 classes ``(n,)``, one per row of ``z``; None: the
            classes in turn. An unconditional generator takes none.
        prefix: The start of the file names (``"samples"``; the conditional CLI adds ``"digits"``).

    Raises:
        TypeError, ValueError: an argument of the wrong type or shape, naming it; at ``attach``,
            ``z`` or ``labels`` that do not fit the trainer.
    """

    def __init__(self, out_dir: str | os.PathLike[str], z: torch.Tensor, every: int = 1, nrow: int = 8,
                 final: bool = True, labels: torch.Tensor | None = None, prefix: str = "samples") -> None:
        self.out_dir = _check_path("out_dir", out_dir)
        self.z = _check_noise("z", z)
        self.every = check_int("every", every)
        self.nrow = check_int("nrow", nrow)
        self.final = check_bool("final", final)
        self.labels = None if labels is None else _check_labels("labels", labels, self.z.shape[0])
        self.prefix = _check_str("prefix", prefix)
        if not prefix or os.sep in prefix or (os.altsep and os.altsep in prefix):
            raise ValueError(f"prefix must be a non-empty file-name start without a path separator, got {prefix!r}")

    def attach(self, trainer: GANTrainer) -> list[RemovableHandle]:
        if self.z.shape[1] != trainer.latent_dim:
            raise ValueError(f"z has {self.z.shape[1]} columns but the trainer's latent_dim is {trainer.latent_dim}")
        classes = trainer.num_classes
        if self.labels is not None and classes is None:
            raise ValueError("labels were given but the trainer's generator is not conditional (no num_classes)")
        if self.labels is not None and classes is not None and int(self.labels.max()) >= classes:
            raise ValueError(f"labels must be in [0, {classes}), got values up to {int(self.labels.max())}")
        handles = [trainer.add_callback(Event.EPOCH_END, self._epoch_grid, every=self.every)]
        if self.final:
            handles.append(trainer.add_callback(Event.FIT_END, self._final_grid))
        return handles

    def save(self, trainer: GANTrainer, name: str) -> Path:
        """Write the grid of the current generator to ``out_dir/name``."""
        n = self.z.shape[0]
        labels = self.labels
        if labels is None and trainer.num_classes is not None:
            labels = torch.arange(n) % trainer.num_classes  # (n,) the classes in turn
        images = trainer.sample(n, z=self.z, labels=labels)  # (n, C, H, W)
        return save_grid(images, self.out_dir / name, nrow=self.nrow)

    def _epoch_grid(self, trainer: GANTrainer) -> None:
        if _is_main(trainer):
            self.save(trainer, f"{self.prefix}_epoch_{trainer.state.epoch:03d}.png")

    def _final_grid(self, trainer: GANTrainer) -> None:
        if _is_main(trainer):
            self.save(trainer, f"{self.prefix}_final.png")


class HistoryCSV:
    """Rewrites ``history.csv`` from ``trainer.state.history`` at each epoch end and when ``fit`` stops.

    Columns: :data:`HISTORY_COLUMNS`, then one per key of ``trainer.state.metrics``. A
    metric cell holds the value measured at that epoch, and is empty at epochs where
    the metric was not measured (the trainer empties ``state.metrics`` when an epoch
    starts). Attach it *after* the callback that fills ``state.metrics``, so it sees
    that epoch's values.

    Which epoch measured what is kept in the checkpoint (``trainer.register_state``
    under ``"history_csv"``), so the CSV is whole after a resume; attach it before
    ``trainer.load_checkpoint``.

    Args:
        path: The CSV file.
    """

    state_name = "history_csv"

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = _check_path("path", path)
        self.metrics_by_epoch: dict[int, dict[str, float]] = {}

    def attach(self, trainer: GANTrainer) -> list[RemovableHandle]:
        trainer.register_state(self.state_name, self)
        return [trainer.add_callback(Event.EPOCH_END, self._epoch_end),
                trainer.add_callback(Event.FIT_END, self.write),
                trainer.add_callback(Event.EXCEPTION, self.write)]

    def _epoch_end(self, trainer: GANTrainer) -> None:
        measured = {k: float(v) for k, v in trainer.state.metrics.items()}
        if measured:
            self.metrics_by_epoch[trainer.state.epoch] = measured
        self.write(trainer)

    def write(self, trainer: GANTrainer) -> Path | None:
        """Write the CSV now (None, and nothing written, on a non-main process)."""
        if not _is_main(trainer):
            return None
        return write_history_csv(trainer.state.history, self.path, self.metrics_by_epoch)

    def state_dict(self) -> dict[str, Any]:
        return {"metrics_by_epoch": {int(e): dict(v) for e, v in self.metrics_by_epoch.items()}}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.metrics_by_epoch = {int(e): {k: float(x) for k, x in v.items()}
                                 for e, v in state.get("metrics_by_epoch", {}).items()}



class LossPlot:
    """Redraws ``losses.png`` (:func:`plot_losses`) at each epoch end and when ``fit`` stops.

    Without matplotlib it says so once and draws nothing.

    Args:
        path: The PNG file.
        every: Epochs between redraws (the plot is also drawn when ``fit`` stops).
        file: Where the missing-matplotlib note goes; None: a warning on the
            ``"torchgan_lite.callbacks.reporting"`` logger.
    """

    def __init__(self, path: str | os.PathLike[str], every: int = 1, file: TextIO | None = None) -> None:
        self.path = _check_path("path", path)
        self.every = check_int("every", every)
        self.file = check_stream("file", file)
        self.enabled = True

    def attach(self, trainer: GANTrainer) -> list[RemovableHandle]:
        return [trainer.add_callback(Event.EPOCH_END, self.draw, every=self.every),
                trainer.add_callback(Event.FIT_END, self.draw),
                trainer.add_callback(Event.EXCEPTION, self.draw)]

    def draw(self, trainer: GANTrainer) -> Path | None:
        """Draw the plot now; None when matplotlib is missing (or on a non-main process)."""
        if not self.enabled or not _is_main(trainer):
            return None
        try:
            return plot_losses(trainer.state.history, self.path)
        except ModuleNotFoundError as err:
            self.enabled = False
            if self.file is None:
                logging.getLogger(__name__).warning("note: %s; skipping %s", err, self.path.name)
            else:
                print(f"note: {err}; skipping {self.path.name}", file=cast(TextIO, self.file), flush=True)
            return None
