"""Shared helpers with no knowledge of GANs: the one argument checker (``checks``), devices, seeds and
bf16 detection (``runtime``), the one atomic file writer (``atomic``), the cache folder (``paths``),
freeing the reference cycles a block drops (``cycles``), process-group helpers (``distributed``) and
the package version. Imports nothing from the rest of the package.
"""

__all__: list[str] = []
