"""Persistence: the checkpoint file format (atomic all-or-nothing writes, weights-only loading checked
against the zip's CRC-32s and for NaN), step-numbered kept copies and the one checkpoint discovery,
RNG state capture, and rebuilding a generator from a checkpoint or exporting it as safetensors plus
JSON. Knows nothing of the trainer. Imports ``utils`` and ``nets``.
"""

__all__: list[str] = []
