"""How many CPU threads each part of the box gets: the serving engines, the training process.

Oversubscribed threads (torch's intra-op pool, OpenMP, llama.cpp's threadpool, llguidance's rayon pool) spin
against each other: on 2 cores, two 2-thread engines beside a training process decode more than 10 times slower than one
thread each. So each part takes a deliberate share of the cores this process may use.
"""

from __future__ import annotations

import os


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity, else the machine's count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def engine_threads(setting: int | None = None) -> int:
    """Threads of one inference engine: ``setting`` (``TRACETUNE_ENGINE_THREADS``) when given; else one on ≤ 2
    cores, else half the usable cores (the rest stay for the server, the job runner's training and other
    engines)."""
    if setting is not None:
        return max(1, setting)
    cores = usable_cores()
    return 1 if cores <= 2 else cores // 2


def training_threads(setting: int | None = None, *, beside_engine: int | None = None) -> int:
    """Threads of one training process: ``setting`` (``TRACETUNE_TRAIN_THREADS``) when given; else the usable
    cores, less ``beside_engine`` (the threads of the serving engine of the process that runs the job)."""
    if setting is not None:
        return max(1, setting)
    return max(1, usable_cores() - (beside_engine or 0))


def thread_env(threads: int) -> dict[str, str]:
    """Environment that holds a child process's native thread pools to ``threads`` (OpenMP, MKL) and llguidance's
    rayon pool to one (its idle workers spin)."""
    return {"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads), "RAYON_NUM_THREADS": "1"}
