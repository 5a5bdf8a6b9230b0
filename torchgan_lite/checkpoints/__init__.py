"""Persistence: the checkpoint file format (atomic all-or-nothing writes, weights-only loading,
rotation), RNG state capture, and rebuilding a generator from a file. Knows nothing of the
trainer. Imports ``utils`` and ``nets``.
"""

__all__: list[str] = []
