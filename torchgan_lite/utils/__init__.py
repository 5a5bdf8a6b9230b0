"""Shared helpers with no knowledge of GANs: the one argument checker (``checks``), devices and seeds
(``runtime``), process-group helpers (``distributed``) and the package version. Imports nothing
from the rest of the package.
"""

__all__: list[str] = []
