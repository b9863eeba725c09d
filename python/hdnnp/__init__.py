"""hdnnp: high-dimensional neural network potentials with a C++ core.

Load an n2p2/RuNNer potential and evaluate structures::

    import hdnnp
    pot = hdnnp.load("potential_dir", length_unit="Bohr", energy_unit="Ha")
    result = pot.evaluate(atoms)          # ASE Atoms; eV and Angstrom
    atoms.calc = pot.calculator()          # ASE calculator
    committee = hdnnp.load([dir1, dir2, dir3])  # committee mean + force deviation
"""
from ._core import ConfigError, Error, ExtrapolationError, InputError, ModelFileError
from .io import read_input_data, write_input_data
from .potential import Committee, ExtrapolationWarning, Potential, Result, load

__all__ = [
    "Committee", "ConfigError", "Error", "ExtrapolationError", "ExtrapolationWarning", "InputError",
    "ModelFileError", "Potential", "Result", "load", "read_input_data", "write_input_data",
]
__version__ = "0.1.0"
