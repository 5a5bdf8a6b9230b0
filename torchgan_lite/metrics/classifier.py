"""The MNIST feature extractor: a small CNN, its shipped weights, and batched feature extraction.

Every metric of :mod:`torchgan_lite.metrics` is computed from this network's
outputs: the 128-wide penultimate activations (after ReLU, as Inception's pool3
features are for FID) and the softmax class probabilities. It reads images in the
GAN's scale, ``(N, 1, 28, 28)`` in [-1, 1].

The weights ship inside the package (``mnist_classifier.pt``, about 0.75 MB) and
are produced by ``python -m torchgan_lite.metrics.train_classifier``. Their sha256
is checked on every load against :data:`CLASSIFIER_SHA256`: metrics computed with
other weights are not comparable, so a mismatch is an error, not a warning.
"""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path

import torch
from torch import nn

__all__ = [
    "CLASSIFIER_PATH",
    "CLASSIFIER_SHA256",
    "FEATURE_DIM",
    "NUM_CLASSES",
    "MNISTClassifier",
    "extract",
    "file_sha256",
    "load_classifier"
]

FEATURE_DIM = 128
NUM_CLASSES = 10
CLASSIFIER_PATH = Path(__file__).resolve().parent / "mnist_classifier.pt"
# sha256 of the shipped mnist_classifier.pt, written by train_classifier (seed 0, 4 epochs).
CLASSIFIER_SHA256 = "7ef1db26142d15d40b7929e963b6c3eb4616c46825b43f969bb63b57f1cd7238"

_LOADED: dict[str, MNISTClassifier] = {}


class MNISTClassifier(nn.Module):
    """A LeNet-style CNN: two 5x5 convolutions, a 128-wide feature layer, a 10-way head (185k parameters)."""

    def __init__(self, dropout: float = 0.3) -> None:
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(1, 32, kernel_size=5), nn.ReLU(), nn.MaxPool2d(2),  # (B, 32, 12, 12)
            nn.Conv2d(32, 64, kernel_size=5), nn.ReLU(), nn.MaxPool2d(2),  # (B, 64, 4, 4)
        )
        self.fc = nn.Sequential(nn.Flatten(), nn.Linear(64 * 4 * 4, FEATURE_DIM), nn.ReLU())  # (B, 128)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(FEATURE_DIM, NUM_CLASSES)

    def features_and_logits(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Images ``(B, 1, 28, 28)`` in [-1, 1] -> features ``(B, 128)`` and logits ``(B, 10)``."""
        feats = self.fc(self.conv(x))  # (B, 128)
        return feats, self.head(self.dropout(feats))  # (B, 128), (B, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Images ``(B, 1, 28, 28)`` -> logits ``(B, 10)``."""
        return self.features_and_logits(x)[1]


def file_sha256(path: str | os.PathLike[str]) -> str:
    """The hex sha256 of a file's bytes."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def load_classifier(device: torch.device | str = "cpu", path: str | os.PathLike[str] | None = None,
                    expected_sha256: str | None = CLASSIFIER_SHA256) -> MNISTClassifier:
    """The shipped classifier in eval mode, its file checked against its sha256.

    The network for the shipped weights is built once per device and reused; do not
    train or modify the returned module. Loading draws nothing from torch's global RNG, so
    scoring during training leaves the run's random stream as it was.

    Args:
        device: Where the network runs.
        path: Another weights file (e.g. one just trained); None: the shipped one.
        expected_sha256: The sha256 the file must have; None skips the check (only for
            a ``path`` of your own; metrics from other weights are not comparable).

    Raises:
        FileNotFoundError: the weights file is missing.
        ValueError: the file's sha256 is not ``expected_sha256``.
    """
    shipped = path is None
    file = CLASSIFIER_PATH if path is None else Path(path)
    dev = torch.device(device)
    key = str(dev)
    if shipped and key in _LOADED:
        return _LOADED[key]
    if not file.is_file():
        raise FileNotFoundError(f"classifier weights not found at {file}; rebuild them with "
                                "`python -m torchgan_lite.metrics.train_classifier`")
    raw = file.read_bytes()
    digest = hashlib.sha256(raw).hexdigest()
    if expected_sha256 is not None and digest != expected_sha256:
        raise ValueError(f"classifier weights {file} have sha256 {digest}, expected {expected_sha256}: the file is "
                         "corrupted or not the shipped one, and metrics computed with it would not be comparable")
    state = torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)
    with torch.random.fork_rng(devices=[]):  # the layers' random init, overwritten below, must not move the
        model = MNISTClassifier()             # caller's RNG: scoring mid-training would change the run
    model.load_state_dict(state)
    model.eval().requires_grad_(False).to(dev)
    if shipped:
        _LOADED[key] = model
    return model


@torch.no_grad()
def extract(model: MNISTClassifier, images: torch.Tensor, batch_size: int = 500) -> tuple[torch.Tensor, torch.Tensor]:
    """Features and class probabilities of ``images``, in batches.

    Args:
        model: The classifier (in eval mode).
        images: ``(N, 1, 28, 28)`` in [-1, 1], on any device.
        batch_size: Images per forward pass.

    Returns:
        ``(features, probs)``: ``(N, 128)`` float32 and ``(N, 10)`` float64, on the CPU.
    """
    device = next(model.parameters()).device
    feats, probs = [], []
    for i in range(0, images.shape[0], batch_size):
        x = images[i : i + batch_size].to(device=device, dtype=torch.float32)  # (b, 1, 28, 28)
        f, logits = model.features_and_logits(x)  # (b, 128), (b, 10)
        feats.append(f.float().cpu())
        probs.append(torch.softmax(logits.double(), dim=1).cpu())
    return torch.cat(feats), torch.cat(probs)  # (N, 128), (N, 10)
