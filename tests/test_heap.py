"""HeapByPhase: training keeps freed tensors' pages, evaluation gives them back (page faults tell which)."""

from __future__ import annotations

import ctypes
import resource
from types import SimpleNamespace

import pytest
import torch
from lightning.pytorch.trainer.states import TrainerFn

from src.training.callbacks.heap import HeapByPhase, glibc

pytestmark = pytest.mark.skipif(glibc() is None, reason="needs glibc's mallopt")

MIB = 1 << 20


def faults_per_alloc(n: int = 20, nbytes: int = 8 * MIB) -> float:
    """Minor page faults per allocate-touch-free cycle of an ``nbytes`` tensor."""
    for _ in range(3):  # the first ones may grow the heap in any setting
        torch.ones(nbytes, dtype=torch.uint8)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(n):
        t = torch.ones(nbytes, dtype=torch.uint8)  # writes every page
        del t
    return (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / n


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split()]


def above_free_heap() -> int:
    """A block size larger than all free heap memory now: glibc can serve it only from a fresh mapping or
    by growing the heap, never from a hole that earlier allocations left (where holes fall varies by run)."""
    libc = glibc()
    if not hasattr(libc, "mallinfo2"):
        pytest.skip("needs glibc 2.33+ (mallinfo2) to size a block above the free heap")
    libc.mallinfo2.restype = _MallInfo2
    free = libc.mallinfo2().fordblks
    return max(16 * MIB, (free // MIB + 1) * MIB)


def kernel_counts_fresh_pages(nbytes: int = 16 * MIB) -> bool:
    """Whether touching a fresh anonymous mapping shows as one minor fault a page here (some kernels back
    fresh mappings with huge or pre-faulted pages, and then faults cannot tell fresh memory from reused)."""
    import mmap

    m = mmap.mmap(-1, nbytes)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for i in range(0, nbytes, 4096):
        m[i] = 1
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
    m.close()
    return faults > 0.9 * nbytes // 4096


def test_training_reuses_pages_and_evaluation_returns_them() -> None:
    if not kernel_counts_fresh_pages():
        pytest.skip("this kernel does not fault fresh anonymous pages one by one: page faults cannot be the measure")
    heap = HeapByPhase(train_mmap_mb=256, train_trim_mb=256, eval_mmap_mb=1)
    pages = 8 * MIB // 4096
    # Evaluation allocates larger blocks than training did (whole images). A free heap block that
    # training left behind may be reused (already counted in RSS); anything larger must not grow the heap.
    fitting = SimpleNamespace(state=SimpleNamespace(fn=TrainerFn.FITTING))

    heap.on_train_epoch_start(fitting, None)
    assert faults_per_alloc() < 0.25 * pages  # the freed block is reused, already mapped

    heap.on_validation_start(fitting, None)
    big = above_free_heap()
    assert faults_per_alloc(nbytes=big) > 0.9 * big // 4096  # a fresh mapping each time, unmapped when freed

    heap.on_validation_end(fitting, None)  # fit goes on: back to the training settings
    assert faults_per_alloc() < 0.25 * pages

    heap.on_test_start(SimpleNamespace(state=SimpleNamespace(fn=TrainerFn.TESTING)), None)
    big = above_free_heap()
    assert faults_per_alloc(nbytes=big) > 0.9 * big // 4096
    heap.on_train_epoch_start(fitting, None)  # leave this test process in the training setting


def test_validation_after_fit_keeps_evaluation_settings() -> None:
    heap = HeapByPhase(train_mmap_mb=256, train_trim_mb=256, eval_mmap_mb=1)
    validating = SimpleNamespace(state=SimpleNamespace(fn=TrainerFn.VALIDATING))
    heap.on_validation_start(validating, None)
    heap.on_validation_end(validating, None)
    big = above_free_heap()
    assert faults_per_alloc(nbytes=big) > 0.9 * big // 4096
    heap.on_train_epoch_start(SimpleNamespace(state=SimpleNamespace(fn=TrainerFn.FITTING)), None)
