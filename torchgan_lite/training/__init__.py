"""Training: the step (n_critic D updates, one G update) and its variants chosen by one factory,
the non-finite guard, gradient sync, the trainer's loop, events, state, signals and restore.
Imports everything below it; nothing here imports ``callbacks`` or ``cli``.
"""

__all__: list[str] = []
