"""The thread policy (tracetune.threads): each engine and training process takes a deliberate share of the cores."""

from __future__ import annotations

from pathlib import Path

import pytest

from tracetune import threads
from tracetune.config import Settings
from tracetune.train.runner import training_env


@pytest.fixture
def cores(monkeypatch: pytest.MonkeyPatch):
    def set_cores(n: int) -> None:
        monkeypatch.setattr(threads.os, "sched_getaffinity", lambda _pid: set(range(n)))

    return set_cores


def test_engine_threads_follow_the_usable_cores(cores) -> None:
    cores(2)
    assert threads.usable_cores() == 2 and threads.engine_threads() == 1
    cores(1)
    assert threads.engine_threads() == 1
    cores(16)
    assert threads.engine_threads() == 8
    assert threads.engine_threads(3) == 3  # the setting wins


def test_training_leaves_the_serving_engine_its_threads(cores, tmp_path: Path) -> None:
    cores(2)
    settings = Settings(home=tmp_path)
    inside_serve = training_env(settings, serving=True)
    assert inside_serve["TRACETUNE_TRAIN_THREADS"] == inside_serve["OMP_NUM_THREADS"] == "1"
    assert inside_serve["MKL_NUM_THREADS"] == "1" and inside_serve["RAYON_NUM_THREADS"] == "1"
    assert training_env(settings, serving=False)["TRACETUNE_TRAIN_THREADS"] == "2"  # a worker: every core
    cores(16)
    assert training_env(settings, serving=True)["TRACETUNE_TRAIN_THREADS"] == "8"
    pinned = Settings(home=tmp_path, train_threads=3, engine_threads=2)
    assert training_env(pinned, serving=True)["TRACETUNE_TRAIN_THREADS"] == "3"
    assert training_env(Settings(home=tmp_path, engine_threads=4), serving=True)["OMP_NUM_THREADS"] == "12"
