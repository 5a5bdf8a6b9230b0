"""Where the package caches what it computes once: ``cache_dir()`` and its environment variable.

Used by the image cache (:mod:`torchgan_lite.data.sources`) and the evaluator's reference statistics
(:mod:`torchgan_lite.metrics.evaluator`); it sits here, below both, so each can import it.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["CACHE_ENV_VAR", "cache_dir", "user_cache_dir"]

CACHE_ENV_VAR = "TORCHGAN_LITE_CACHE"


def user_cache_dir() -> Path:
    """The user's cache folder for the package: ``$XDG_CACHE_HOME/torchgan_lite``, else ``~/.cache/torchgan_lite``."""
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "torchgan_lite"


def cache_dir() -> Path:
    """Where computed data is cached: ``$TORCHGAN_LITE_CACHE``, else :func:`user_cache_dir`."""
    env = os.environ.get(CACHE_ENV_VAR)
    return Path(env) if env else user_cache_dir()
