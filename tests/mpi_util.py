"""What the data-parallel training tests share: mpiexec of the mpich wheel (the test is skipped
without it or mpi4py), a training command on one and on two processes, and the numbers of
written weight files."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

MPIEXEC = Path(sys.prefix) / "bin" / "mpiexec"


def require_mpi():
    if not MPIEXEC.exists():
        pytest.skip("mpiexec of the mpich wheel is not installed (pip install '.[mpi]')")
    pytest.importorskip("mpi4py", reason="mpi4py is not installed (pip install '.[mpi]')")


def run(cmd, processes: int = 1):
    """`cmd` on 1 process, or under mpiexec -n `processes`; asserts it succeeded."""
    pre = [str(MPIEXEC), "-n", str(processes)] if processes > 1 else []
    r = subprocess.run(pre + [str(c) for c in cmd], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    if processes > 1:
        assert f"data-parallel over {processes} MPI processes" in r.stdout
    return r


def weights(folder, pattern="weights.*.data"):
    """The first column of every file matching `pattern` in `folder`, in name order."""
    out = []
    for f in sorted(Path(folder).glob(pattern)):
        out += [float(ln.split()[0]) for ln in f.read_text().splitlines() if ln.strip() and not ln.startswith("#")]
    return np.array(out)


def assert_same_weights(a, b):
    assert len(a) == len(b) > 0
    np.testing.assert_allclose(b, a, rtol=0, atol=1e-10 * max(1.0, np.abs(a).max()))
