"""Handlers attached to a trainer's events: progress, checkpointing, grids/plots/CSV, loggers, EMA,
LR schedules, ADA and metrics. They use the trainer's public API only.
"""

__all__: list[str] = []
