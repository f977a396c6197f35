"""stn.memory: after keep_freed_memory(), a training-sized buffer freed by one step is reused by the
next without page faults (checked in a child process: the setting is process-wide)."""

from __future__ import annotations

import subprocess
import sys

import pytest

CHILD = r"""
import resource, sys, torch
from stn.memory import keep_freed_memory
keep = sys.argv[1] == "keep"
if keep:
    assert keep_freed_memory()
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(3):  # warm up (and let glibc's own mmap threshold adapt, as it does)
    torch.ones(256, 32, 24, 24).sum()
    torch.ones(256, 32, 40, 40).sum()  # 52 MB: above any mmap threshold glibc would pick itself
steps = []
for _ in range(15):
    f0 = faults()
    torch.ones(256, 32, 40, 40).sum()
    steps.append(faults() - f0)
print(sorted(steps)[len(steps) // 2])  # the median step: a page the kernel reclaimed now and then aside
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_freed_memory_is_reused_without_page_faults():
    def faults_per_step(mode: str) -> float:
        out = subprocess.run([sys.executable, "-c", CHILD, mode], capture_output=True, text=True, timeout=120, check=True)
        return float(out.stdout.strip())

    # a 52 MB buffer is 12 800 pages: touched afresh on every step by default, reused once kept
    default, kept = faults_per_step("default"), faults_per_step("keep")
    assert default > 5000 and kept < default / 10, (default, kept)
