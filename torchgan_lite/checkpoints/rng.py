"""Every random number generator a training run draws from, saved and restored.

torch (CPU and every CUDA device), NumPy's legacy global RNG and Python's ``random``:
captured as tensors and plain values, so a checkpoint holding them loads with
``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch

__all__ = ["capture_rng_state", "check_rng_state", "restore_rng_state"]

_MT_WORDS = 624  # the Mersenne Twister state size of NumPy's legacy RNG and of Python's random


def capture_rng_state() -> dict[str, Any]:
    """torch (CPU and every CUDA device), NumPy and Python ``random`` states, weights_only-safe."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()  # type: ignore[misc]
    py_version, py_internal, py_gauss = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() and torch.cuda.is_initialized() else [],
        "numpy": {"kind": str(kind), "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "python": {"version": py_version, "internal": list(py_internal), "gauss_next": py_gauss},
    }


def check_rng_state(state: object, source: str = "rng state") -> None:
    """Raise ``ValueError`` naming ``source`` unless ``state`` is what :func:`capture_rng_state` returns."""

    def bad(what: str) -> ValueError:
        return ValueError(f"{source}: the saved RNG state is malformed: {what}")

    if not isinstance(state, dict):
        raise bad(f"expected a dict, got {type(state).__name__}")
    t = state.get("torch")
    if not isinstance(t, torch.Tensor) or t.dtype != torch.uint8 or t.dim() != 1:
        raise bad("'torch' must be a 1-d uint8 tensor (torch.get_rng_state())")
    cuda = state.get("cuda", [])
    if not isinstance(cuda, (list, tuple)) or not all(isinstance(c, torch.Tensor) and c.dtype == torch.uint8
                                                       for c in cuda):
        raise bad("'cuda' must be a list of uint8 tensors")
    n = state.get("numpy")
    if not isinstance(n, dict) or set(n) != {"kind", "keys", "pos", "has_gauss", "cached_gaussian"}:
        raise bad("'numpy' must hold kind, keys, pos, has_gauss, cached_gaussian")
    if n["kind"] != "MT19937" or not isinstance(n["keys"], torch.Tensor) or tuple(n["keys"].shape) != (_MT_WORDS,):
        raise bad(f"'numpy' must be an MT19937 state with {_MT_WORDS} keys")
    if not (isinstance(n["pos"], int) and 0 <= n["pos"] <= _MT_WORDS):
        raise bad(f"numpy pos must be an int in [0, {_MT_WORDS}], got {n['pos']!r}")
    p = state.get("python")
    if not isinstance(p, dict) or set(p) != {"version", "internal", "gauss_next"}:
        raise bad("'python' must hold version, internal, gauss_next")
    internal = p["internal"]
    if (not isinstance(internal, (list, tuple)) or len(internal) != _MT_WORDS + 1
            or not all(type(v) is int for v in internal)):
        raise bad(f"python internal state must be {_MT_WORDS + 1} ints")
    if not (p["gauss_next"] is None or isinstance(p["gauss_next"], float)):
        raise bad("python gauss_next must be None or a float")


def restore_rng_state(state: dict[str, Any]) -> None:
    """Inverse of :func:`capture_rng_state` (check it first with :func:`check_rng_state`)."""
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available():
        cuda_states = state["cuda"][: torch.cuda.device_count()]
        for i, s in enumerate(cuda_states):
            torch.cuda.set_rng_state(s, i)
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    p = state["python"]
    random.setstate((p["version"], tuple(p["internal"]), p["gauss_next"]))
