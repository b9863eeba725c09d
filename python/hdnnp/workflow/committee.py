"""Committee members trained side by side: one process per member with one thread each, as many
at a time as asked (default: the CPU cores), or one after the other in this process. Members are
independent runs (their own seeds), so processes need no communication; on 2 cores two
single-threaded members finish sooner than two members one after the other on two threads (the
Kalman filter's covariance update and the small network passes do not use two threads well)."""
from __future__ import annotations

import multiprocessing
import os
from dataclasses import asdict
from typing import Callable, List, Optional, Sequence, Tuple

_THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def train_member(settings_dir: str, structures, config, out: str, progress: bool = False) -> dict:
    """Train one member (settings_dir/input.nn on `structures` with TrainingConfig `config`) and
    write it to `out`; its best epoch, epochs run and the best epoch's statistics."""
    from ..training.trainer import Trainer

    tr = Trainer(settings_dir, structures, config)
    hist = tr.train(out, progress=progress, log=lambda *_: None)
    return {"best_epoch": tr.best_epoch, "epochs_run": len(hist) - 1, "best": asdict(hist[tr.best_epoch])}


def workers_for(n_members: int, parallel: int = 0) -> int:
    """Members trained at once: `parallel` (0: the CPU cores), at most n_members."""
    return max(1, min(n_members, parallel or os.cpu_count() or 1))


def train_members(tasks: Sequence[Tuple[str, Sequence, object, str]], parallel: int = 0, progress: bool = False,
                  done: Optional[Callable[[int, dict], None]] = None) -> List[dict]:
    """Train every (settings_dir, structures, config, out) task; results in task order (`done`
    is called with each, in order, as they come)."""
    workers = workers_for(len(tasks), parallel)
    results = []
    if workers <= 1:
        for k, (settings_dir, structures, config, out) in enumerate(tasks):
            results.append(train_member(settings_dir, structures, config, out, progress))
            if done:
                done(k, results[-1])
        return results
    from concurrent.futures import ProcessPoolExecutor

    # one BLAS/OpenMP thread per member process (the variables are read when they start)
    saved = {k: os.environ.get(k) for k in _THREAD_VARIABLES}
    os.environ.update({k: "1" for k in _THREAD_VARIABLES})
    try:
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            jobs = [pool.submit(train_member, os.fspath(s), structures, config, os.fspath(out))
                    for s, structures, config, out in tasks]
            for k, job in enumerate(jobs):
                results.append(job.result())
                if done:
                    done(k, results[-1])
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return results
