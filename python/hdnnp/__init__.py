"""hdnnp: high-dimensional neural network potentials with a C++ core.

Load an n2p2/RuNNer potential and evaluate structures::

    import hdnnp
    pot = hdnnp.load("potential_dir", length_unit="Bohr", energy_unit="Ha")
    result = pot.evaluate(atoms)          # ASE Atoms; eV and Angstrom
    atoms.calc = pot.calculator()          # ASE calculator
    committee = hdnnp.load([dir1, dir2, dir3])  # committee mean + force deviation
"""
import os as _os

# The core's OpenMP threads spin-wait after each parallel region by default; interleaved with
# OpenBLAS's threads (the Kalman filter's symv/syr) on the same cores they starve each other
# (measured on 2 cores: a 4G stage-2 Kalman epoch took 0.7-1.5 s, 0.26 s with passive
# waiting). It must be set before the core loads libgomp; an explicit OMP_WAIT_POLICY wins.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from ._core import ConfigError, Error, ExtrapolationError, InputError, ModelFileError  # noqa: E402
from .io import read_input_data, write_input_data  # noqa: E402
from .loading import load  # noqa: E402
from .potential import Committee, ExtrapolationWarning, Potential, Result  # noqa: E402

__all__ = [
    "Committee", "ConfigError", "Error", "ExtrapolationError", "ExtrapolationWarning", "InputError",
    "ModelFileError", "Potential", "Result", "load", "read_input_data", "write_input_data",
]
__version__ = "0.1.0"
