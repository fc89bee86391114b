"""HeapByPhase: training keeps freed tensors' pages, evaluation gives them back (page faults tell which)."""

from __future__ import annotations

import resource
from types import SimpleNamespace

import pytest
import torch
from lightning.pytorch.trainer.states import TrainerFn

from src.callbacks.heap import HeapByPhase, glibc

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


def test_training_reuses_pages_and_evaluation_returns_them() -> None:
    heap = HeapByPhase(train_mmap_mb=256, train_trim_mb=256, eval_mmap_mb=1)
    pages = 8 * MIB // 4096
    # Evaluation allocates larger blocks than training did (whole images): a free heap block that
    # training left behind may be reused, but nothing larger is taken from the heap.
    big, big_pages = 16 * MIB, 16 * MIB // 4096  # below glibc's own 32 MiB mmap ceiling
    fitting = SimpleNamespace(state=SimpleNamespace(fn=TrainerFn.FITTING))

    heap.on_train_epoch_start(fitting, None)
    assert faults_per_alloc() < 0.25 * pages  # the freed block is reused, already mapped

    heap.on_validation_start(fitting, None)
    assert faults_per_alloc(nbytes=big) > 0.9 * big_pages  # a fresh mapping each time, unmapped when freed

    heap.on_validation_end(fitting, None)  # fit goes on: back to the training settings
    assert faults_per_alloc() < 0.25 * pages

    heap.on_test_start(SimpleNamespace(state=SimpleNamespace(fn=TrainerFn.TESTING)), None)
    assert faults_per_alloc(nbytes=big) > 0.9 * big_pages
    heap.on_train_epoch_start(fitting, None)  # leave this test process in the training setting


def test_validation_after_fit_keeps_evaluation_settings() -> None:
    heap = HeapByPhase(train_mmap_mb=256, train_trim_mb=256, eval_mmap_mb=1)
    validating = SimpleNamespace(state=SimpleNamespace(fn=TrainerFn.VALIDATING))
    heap.on_validation_start(validating, None)
    heap.on_validation_end(validating, None)
    assert faults_per_alloc(nbytes=16 * MIB) > 0.9 * (16 * MIB // 4096)
    heap.on_train_epoch_start(SimpleNamespace(state=SimpleNamespace(fn=TrainerFn.FITTING)), None)
