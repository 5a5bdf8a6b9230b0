"""Sample-quality metrics: Fréchet distance, KID, precision/recall and density/coverage computed from the
features of any extractor (the shipped MNIST classifier, a user's TorchScript module, any ``nn.Module``),
reference statistics of a real set cached on disk, the MNIST evaluator with its floors, the image evaluator
for any images, and the field's standard Inception FID/KID/IS through torch-fidelity (an optional extra).
Imports ``utils``, ``nets``, ``data`` and ``checkpoints``.
"""

__all__: list[str] = []
