"""Networks: generator and discriminator builders (plain functions returning ``nn.Module`` that record
their config), the builder registry that rebuilds them from that config, layers, spectral norm and
noise sampling. Imports only ``utils``.
"""

__all__: list[str] = []
