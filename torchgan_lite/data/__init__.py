"""Data: image sources decoded once into uint8 tensors (``load_images``: a folder of images with its
classes, a torchvision set by name, MNIST as the reference recipe reads it), their on-disk cache keyed
by the files and the options, ``TensorLoader`` (device-resident batches with an exact, checkpointable
position) and ``StatefulLoader`` (a ``Dataset`` too big for memory, such as ``ImageFolderDataset``,
decoded as it is batched through torchdata's ``StatefulDataLoader``, resumable mid-epoch).
Imports only ``utils``.
"""

__all__: list[str] = []
