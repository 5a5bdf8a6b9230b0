"""Objectives: value-only adversarial losses (functions of logits), the penalties and regularizers
added into the discriminator's one backward pass, and differentiable augmentation. Nothing here
calls ``backward()`` or ``step()``. Imports ``utils`` and ``nets``.
"""

__all__: list[str] = []
