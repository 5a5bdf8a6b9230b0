"""``retain_freed_memory``: glibc keeps freed CPU memory, so a repeated allocation pattern stops page-faulting.

Each case runs in its own process: the setting is process-wide and cannot be undone.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

import torchgan_lite
from torchgan_lite.utils import runtime

GLIBC = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"

# Eight 4 MiB tensors made and freed, six times: the pattern of a step's gradients. Prints the
# minor page faults per round after the first two (the warm-up that sets glibc's thresholds).
_CHILD = """
import resource, sys
import torch
from torchgan_lite import retain_freed_memory
applied = retain_freed_memory() if sys.argv[1] == "1" else None
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for i in range(6):
    if i == 2:
        f0 = faults()
    ts = [torch.ones(2**20) for _ in range(8)]  # 8 x (2**20,) float32: 4 MiB each
    del ts
print(applied, (faults() - f0) / 4)
"""


def _faults(apply: bool, **env: str) -> tuple[str, float]:
    child_env = {k: v for k, v in os.environ.items() if k not in ("GLIBC_TUNABLES", "LD_PRELOAD")
                 and not k.startswith("MALLOC_")}
    child_env.update(env)
    out = subprocess.run([sys.executable, "-c", _CHILD, "1" if apply else "0"], capture_output=True, text=True,
                         env=child_env, timeout=120, check=True).stdout.split()
    return out[0], float(out[1])


@pytest.mark.skipif(not GLIBC, reason="retain_freed_memory tunes glibc's malloc; this C library is not glibc")
def test_freed_memory_is_reused_without_page_faults() -> None:
    # A round touches 8,192 new pages if its 32 MiB come from fresh mappings or a trimmed heap. Without
    # the call, whether glibc trims depends on where small allocations land (it varied from run to run
    # here: 256 or 8,160 faults a round); with it, the heap keeps the memory and every run reuses it.
    # (The 256 are Python's own: a 1 MiB pymalloc arena mapped and unmapped by the round's list.)
    for _ in range(3):
        applied, after = _faults(True)
        assert applied == "True"
        assert after < 8192 / 10, f"{after:.0f} page faults a round with retain_freed_memory"


@pytest.mark.skipif(not GLIBC, reason="retain_freed_memory tunes glibc's malloc; this C library is not glibc")
def test_a_users_own_malloc_settings_win() -> None:
    # GLIBC_TUNABLES naming malloc means the user chose: nothing is changed, and the call says so.
    applied, faults = _faults(True, GLIBC_TUNABLES="glibc.malloc.trim_threshold=99999999")
    assert applied == "False"
    assert faults > 4000  # the user's trim-only setting turns off glibc's moving mmap threshold: faults stay
    applied, _ = _faults(True, MALLOC_TRIM_THRESHOLD_="99999999")
    assert applied == "False"


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"mmap_threshold": 2**25 + 1}, r"mmap_threshold must be <= 33554432"),
    ({"mmap_threshold": 1024}, r"mmap_threshold must be >= 131072"),
    ({"trim_threshold": 2**31}, r"trim_threshold must be <= 2\*\*31 - 1"),
    ({"trim_threshold": 0}, r"trim_threshold must be >= 131072"),
])
def test_thresholds_are_checked(kwargs: dict[str, int], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        runtime.retain_freed_memory(**kwargs)


def test_wrong_types_are_refused() -> None:
    with pytest.raises(TypeError, match="mmap_threshold"):
        runtime.retain_freed_memory(mmap_threshold=2.5e6)  # type: ignore[arg-type]


def test_exported_flat() -> None:
    assert torchgan_lite.retain_freed_memory is runtime.retain_freed_memory
