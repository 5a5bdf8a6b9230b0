"""Sample-quality metrics: feature extractors (the shipped MNIST classifier), Frechet distance, KID,
precision/recall and coverage, and the offline evaluator with its cached reference statistics.
Imports ``utils``, ``nets``, ``data`` and ``checkpoints``.
"""

__all__: list[str] = []
