"""Where the package caches what it computes once: ``cache_dir()`` and its environment variable.

Used by the image cache (:mod:`torchgan_lite.data.sources`) and the evaluator's reference statistics
(:mod:`torchgan_lite.metrics.evaluator`); it sits here, below both, so each can import it.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["CACHE_ENV_VAR", "cache_dir"]

CACHE_ENV_VAR = "TORCHGAN_LITE_CACHE"


def cache_dir() -> Path:
    """Where computed data is cached: ``$TORCHGAN_LITE_CACHE``, else ``$XDG_CACHE_HOME/torchgan_lite``,
    else ``~/.cache/torchgan_lite``."""
    env = os.environ.get(CACHE_ENV_VAR)
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "torchgan_lite"
