"""Free the reference cycles a block of code drops when the block ends, not at the next full collection.

A matplotlib figure is a web of reference cycles, which reference counting never frees. Made
and dropped at every epoch end, such a figure was promoted by the collector while it was being
drawn, then waited in the oldest generation, ~3,800 objects a figure, until a full collection
(which CPython runs only when that generation has grown by a quarter): the heap grew in a
saw-tooth and the process kept its high-water mark (``docs/reliability.md``, "Memory over a
long run"; ``benchmarks/memory_growth.py``).
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator

__all__ = ["collect_own_cycles"]


@contextlib.contextmanager
def collect_own_cycles() -> Iterator[None]:
    """Run the block with the cyclic collector paused, then collect the youngest generation.

    Paused, the collector promotes nothing, so what the block allocates is still in the
    youngest generation when it ends; collecting that generation alone (cheap: it holds the
    block's objects, not the whole heap) frees every cycle the block dropped. Objects the
    block kept (caches) are promoted as usual. A collector the caller had disabled stays
    disabled, and nothing is collected for it.
    """
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
        gc.collect(0)
