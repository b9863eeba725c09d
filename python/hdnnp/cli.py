"""Command line: ``hdnnp predict POTENTIAL_DIR INPUT.data -o OUTPUT.data``."""
from __future__ import annotations

import argparse
import os
import sys
import warnings

import numpy as np


def _predict(args) -> int:
    from tqdm import tqdm

    from . import _core
    from .io import _dict_to_atoms
    from .potential import Potential

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pot = Potential(args.potential, threads=args.threads)
    for w in caught:
        print(f"warning: {w.message}", file=sys.stderr)
    structures = _core.read_input_data(args.input)
    if not structures:
        print(f"error: {args.input} contains no structure", file=sys.stderr)
        return 1
    out_structs = []
    report = ["# Extrapolation report: symmetry functions outside the scaling.data range",
              "# structure (0-based)  atom (0-based)  element  sf (1-based, n2p2 order)  value  min  max"]
    n_extra_atoms = 0
    n_extra_structs = 0
    e_list = []
    for k, s in enumerate(tqdm(structures, desc="predict", unit="struct", disable=args.quiet or len(structures) < 2,
                               file=sys.stderr)):
        atoms = _dict_to_atoms(s)
        try:
            r = pot.evaluate(atoms, forces=True, stress=False, extrapolation="ignore", native=True)
        except _core.Error as e:
            print(f"error: {args.input}: structure {k} (line {s['line']}): {e}", file=sys.stderr)
            return 1
        e_list.append(r.energy)
        s = dict(s)
        s["energy"] = r.energy
        s["forces"] = r.forces
        s["charges"] = np.zeros(len(atoms))
        out_structs.append(s)
        if r.n_extrapolating:
            n_extra_structs += 1
            n_extra_atoms += r.n_extrapolating
            ex = r.extrapolations
            sym = atoms.get_chemical_symbols()
            for a, f, v, lo, hi in zip(ex["atom"], ex["sf"], ex["value"], ex["min"], ex["max"]):
                report.append(f"{k:8d} {a:8d} {sym[a]:>3s} {f + 1:5d} {v: .10e} {lo: .10e} {hi: .10e}")
    _core.write_file_atomic(args.output, _core.format_input_data(out_structs))
    report_path = args.report or (os.fspath(args.output) + ".extrapolation")
    _core.write_file_atomic(report_path, "\n".join(report) + "\n")
    print(f"{len(out_structs)} structure(s) predicted -> {args.output} (native units of the potential)")
    if len(e_list) == 1:
        print(f"energy {e_list[0]:.16e}")
    print(f"extrapolation: {n_extra_atoms} atom(s) in {n_extra_structs} structure(s) outside the "
          f"scaling.data range; details in {report_path}")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="hdnnp", description="High-dimensional neural network potentials")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("predict", help="predict energies and forces for every structure of an input.data file")
    p.add_argument("potential", help="potential directory (input.nn, scaling.data, weights.ZZZ.data)")
    p.add_argument("input", help="n2p2 input.data with one or more structures")
    p.add_argument("-o", "--output", default="output.data", help="output file (n2p2 input.data layout)")
    p.add_argument("--report", default=None, help="extrapolation report (default: OUTPUT.extrapolation)")
    p.add_argument("--threads", type=int, default=0, help="OpenMP threads (0: all)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    from . import _core

    try:
        if args.command == "predict":
            return _predict(args)
    except (_core.Error, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 2


if __name__ == "__main__":
    sys.exit(main())
