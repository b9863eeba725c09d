"""hdnnp.load: the potential type of a directory's generation (2G, committee, 3G, 4G, CENT)."""
from __future__ import annotations

from typing import Optional

from .cent import Cent
from .fourth_generation import FourthGeneration
from .keywords import generation
from .potential import Committee, Potential
from .third_generation import ThirdGeneration


def load(directory, length_unit: Optional[str] = None, energy_unit: Optional[str] = None,
         threads: int = 0, **options) -> Potential:
    """Load an n2p2/RuNNer potential directory (input.nn, scaling.data, weights.ZZZ.data),
    or a committee when given a list of directories. Every generation gives a ``Potential``
    with the same ``evaluate`` (a Result, eV and Angstrom unless ``native=True``) and
    ``calculator()``: a 4G directory (``nnp_generation 4``, with weightse.ZZZ.data and
    hardness.ZZZ.data) a ``FourthGeneration``, a 3G one (``nnp_generation 3``, with scalinge.data
    and weightse.ZZZ.data) a ``ThirdGeneration``, ``nnp_generation cent`` a ``Cent``; their
    ``compute`` gives the native-unit dictionary with the solver's details.

    ``length_unit``/``energy_unit`` name the units the potential was trained in (n2p2 files
    do not record them), e.g. ``"Bohr", "Ha"`` or ``"Angstrom", "eV"``. ``options`` go to the
    3G/4G/CENT classes (e.g. ``ewald=1e-6``, ``solver="cg"``, ``background=True`` for charged
    periodic cells).
    """
    if isinstance(directory, (list, tuple)):
        return Committee(directory, length_unit, energy_unit, threads)
    gen = generation(directory)
    if gen == 4:
        return FourthGeneration(directory, threads=threads, length_unit=length_unit, energy_unit=energy_unit, **options)
    if gen == "cent":
        return Cent(directory, threads=threads, length_unit=length_unit, energy_unit=energy_unit, **options)
    if gen == 3:
        return ThirdGeneration(directory, threads=threads, length_unit=length_unit, energy_unit=energy_unit, **options)
    if options:
        raise TypeError(f"{', '.join(options)}: options of 3G/4G/CENT potentials; {directory} is a 2G potential")
    return Potential(directory, length_unit, energy_unit, threads)
