"""The hdnnp demo as a script: build a Cu-Au potential from nothing with active learning.

    python examples/demo.py [output_folder]

EMT (ASE's effective-medium calculator) stands in for DFT. To do real science, pass another
ASE calculator factory as `reference` (a DFT code's ASE calculator): every stage is the same.
Stages and their outputs (under the output folder; rerunning continues where it stopped):
  1. initial structures: fcc Cu/Au, L1_2 Cu3Au, L1_0 CuAu, strained, rattled, vacancies, random
     alloys, (111) surface slabs, short EMT MD; labelled with the reference method (active-learning/data.extxyz)
  2. two active-learning iterations (active-learning/iter_NN/): a committee of 3 HDNNPs with
     different seeds, MD in LAMMPS with the plugin's committee mode at 600 and 1000 K, frames
     with a high committee force deviation (or extrapolating symmetry functions) labelled and
     added; errors and deviations per iteration in active-learning/iterations.json
  3. final committee on all data (final/): learning curves, parity plots, error correlation of
     two members, force errors per member
  4. NVE MD in LAMMPS with the final potential (nve/): energy drift and speed
  5. summary.md and summary.json
"""
import sys

from ase.calculators.emt import EMT

from hdnnp.workflow.demo import run_demo

if __name__ == "__main__":
    out = sys.argv[1] if len(sys.argv) > 1 else "hdnnp-demo"
    summary = run_demo(out, reference=EMT)
    print(f"final committee: {summary['final']['test_rmse_energy_per_atom'] * 1e3:.1f} meV/atom, "
          f"{summary['final']['test_rmse_force']:.3f} eV/A; NVE drift "
          f"{summary['nve']['drift_meV_per_atom_ps']:.3f} meV/atom/ps")
