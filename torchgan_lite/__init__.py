"""torchgan_lite: small, fast, reusable GAN components for PyTorch.

- :mod:`torchgan_lite.models`: generator/discriminator builders (plain functions).
- :mod:`torchgan_lite.layers`: ``MaskDropout`` (nn.Dropout, faster on a CPU), and an opt-in oneDNN ``Linear``.
- :mod:`torchgan_lite.losses`: loss objects that only compute values, and regularizers.
- :class:`GANStep`: one training step (n_critic D updates, one G update), a plain object.
- :class:`GANTrainer`: the loop around a step, with :class:`Event` hooks and checkpoints.
- :mod:`torchgan_lite.data`: MNIST as one device-resident tensor, and :class:`TensorLoader`.
"""

from . import (
    augment,
    callbacks,
    conditional,
    data,
    dcgan,
    ema,
    layers,
    losses,
    models,
    noise,
    recipes,
    registry,
    regularizers,
    reporting,
    schedules,
    spectral,
)
from .data import TensorLoader
from .events import Event, RemovableHandle
from .guard import NonFinitePolicy
from .state import EpochStats, NonFiniteLossError, StepResult, TrainerState, TrainingInterrupted
from .step import GANStep
from .trainer import GANTrainer
from .utils import resolve_device, seed_everything

__version__ = "0.1.0"

__all__ = [
    "EpochStats",
    "Event",
    "GANStep",
    "GANTrainer",
    "NonFiniteLossError",
    "NonFinitePolicy",
    "RemovableHandle",
    "StepResult",
    "TensorLoader",
    "TrainerState",
    "TrainingInterrupted",
    "__version__",
    "augment",
    "callbacks",
    "conditional",
    "data",
    "dcgan",
    "ema",
    "layers",
    "losses",
    "models",
    "noise",
    "recipes",
    "registry",
    "regularizers",
    "reporting",
    "resolve_device",
    "schedules",
    "seed_everything",
    "spectral",
]
