"""Data: MNIST decoded once into a device-resident tensor, and ``TensorLoader`` that batches it with an
exact, checkpointable position. Imports ``utils``.
"""

__all__: list[str] = []
