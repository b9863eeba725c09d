"""LAMMPS data files for the 4G examples from the potentials' fixtures (n2p2 input.data in Bohr):
water4g.lmp (n2p2's 4G water box, 384 atoms) and c10h3.lmp (C10H3+, the 4G carbon-chain fixture's structure in its +1
charge state, in a box with 10 A of vacuum), in Angstrom, atom_style charge.

    python make_data.py ../../../../shared/fixtures
"""
import sys
from pathlib import Path

import ase.io

import hdnnp
from hdnnp.units import length_factor


def main(fixtures: Path, out: Path = Path(".")):
    bohr = length_factor("Bohr")
    water = hdnnp.read_input_data(fixtures / "n2p2_H2O_RPBE-D3_4G" / "predict" / "input.data")[0]
    water.positions *= bohr
    water.set_cell(water.cell[:] * bohr, scale_atoms=False)
    ase.io.write(out / "water4g.lmp", water, format="lammps-data", specorder=["H", "O"], masses=True,
                 atom_style="charge")
    chain = next(a for a in hdnnp.read_input_data(fixtures / "n2p2_Carbon_chain_4G" / "train" / "input.data")
                 if a.info.get("charge", 0.0) == 1.0)
    chain.positions *= bohr
    chain.pbc = False
    chain.center(vacuum=10.0)
    ase.io.write(out / "c10h3.lmp", chain, format="lammps-data", specorder=["H", "C"], masses=True,
                 atom_style="charge")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]) if len(sys.argv) > 2 else Path("."))
