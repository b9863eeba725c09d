"""Command line: ``hdnnp predict POTENTIAL_DIR INPUT.data -o OUTPUT.data``, ``hdnnp scaling [DIR]``,
``hdnnp train [DIR]`` (n2p2's nnp-scaling / nnp-train workflow in a folder with input.nn and input.data),
``hdnnp sfgen`` (symmetry-function lines), ``hdnnp fit DATA -o DIR`` (data to potential in one command)."""
from __future__ import annotations

import argparse
import os
import sys
import warnings

import numpy as np


class UsageError(Exception):
    """A problem with what the user gave (reported as one line, exit status 2)."""


def _is_n2p2(path) -> bool:
    name = os.path.basename(os.fspath(path))
    return name.endswith(".data") and not name.endswith(".lammps-data")


def _units(directory, length_unit=None, energy_unit=None, need: str = ""):
    """(Angstrom per length unit, eV per energy unit) of a potential directory: the given units,
    else the declared ones; an error saying `need` when they are not known."""
    from .keywords import declared_units as _declared_units
    from .units import energy_factor, length_factor

    decl_l, decl_e = _declared_units(directory)
    lu, eu = length_unit or decl_l, energy_unit or decl_e
    if not lu or not eu:
        raise OSError(f"{need}: ASE data are in eV/Angstrom; the potential's units are needed to convert them: "
                      f"declare them in {os.path.join(directory, 'input.nn')} ('# hdnnp: length_unit=... "
                      f"energy_unit=...') or pass --length-unit/--energy-unit")
    return length_factor(lu), energy_factor(eu)


def _predict(args) -> int:
    """Energies, forces (stress of periodic structures, charges of 3G/4G/CENT) of every structure
    of an n2p2 input.data file (the potential's own units) or anything ASE reads (eV, Angstrom);
    written as extended XYZ (OUTPUT ending in .xyz or .extxyz: eV and Angstrom, the results as
    ASE reads them back onto a calculator) or else as n2p2 input.data (the potential's units),
    with an extrapolation summary and report file for every generation."""
    import ase.io
    from ase.calculators.singlepoint import SinglePointCalculator
    from tqdm import tqdm

    from . import _core
    from .io import atoms_to_dict, read_input_data
    from .loading import load
    from .potential import generation, voigt_stress

    gen = generation(args.potential)
    charged = gen in (3, 4, "cent")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pot = load(args.potential, threads=args.threads, **({"background": args.background} if charged else {}))
    for w in caught:
        print(f"warning: {w.message}", file=sys.stderr)
    n2p2_in = _is_n2p2(args.input)
    n2p2_out = not os.fspath(args.output).lower().endswith((".xyz", ".extxyz"))
    lf = ef = None
    if not (n2p2_in and n2p2_out):
        lf, ef = _units(args.potential, args.length_unit, args.energy_unit,
                        need=args.input if not n2p2_in else args.output)
    if n2p2_in:
        structures = read_input_data(args.input)
        lines = [a.info.get("line") for a in structures]
    else:
        structures = []
        for a in ase.io.read(args.input, ":"):
            b = a.copy()
            b.calc = None
            b.positions = a.positions / lf
            if a.cell.rank:
                b.set_cell(a.cell[:] / lf, scale_atoms=False)
            structures.append(b)
        lines = [None] * len(structures)
    if not structures:
        raise UsageError(f"{args.input} contains no structure")
    out, report = [], ["# Extrapolation report: symmetry functions outside the scaling.data range",
                       "# structure (0-based)  atom (0-based)  element  sf (1-based, n2p2 order)  value  min  max  "
                       "network"]
    n_atoms_out = n_structs_out = 0
    for k, atoms in enumerate(tqdm(structures, desc="predict", unit="struct", file=sys.stderr,
                                   disable=args.quiet or len(structures) < 2)):
        periodic = bool(atoms.pbc.all())
        try:
            r = pot.evaluate(atoms, forces=True, stress=periodic, extrapolation="ignore", native=True)
            res = {"energy": r.energy, "forces": r.forces, "charges": r.charges, "virial": r.virial,
                   "n_out": r.n_extrapolating, "records": r.extrapolation_records}
        except (ValueError, _core.Error) as e:
            where = f" (line {lines[k]})" if lines[k] else ""
            raise UsageError(f"{args.input}: structure {k}{where}: {e}") from e
        if res["n_out"]:
            n_structs_out += 1
            n_atoms_out += res["n_out"]
            sym = atoms.get_chemical_symbols()
            for label, ex in res["records"]:
                for a, f, v, lo, hi in zip(ex["atom"], ex["sf"], ex["value"], ex["min"], ex["max"]):
                    report.append(f"{k:8d} {a:8d} {sym[a]:>3s} {f + 1:5d} {v: .10e} {lo: .10e} {hi: .10e} "
                                  f"{label.strip() or 'short'}")
        out.append((atoms, res))
    if n2p2_out:
        items = [atoms_to_dict(a, energy=r["energy"], forces=r["forces"], charges=r["charges"],
                               charge=a.info.get("charge", 0.0), references=False) for a, r in out]
        _core.write_file_atomic(args.output, _core.format_input_data(items))
        units = "the potential's own units"
    else:
        frames = []
        for a, r in out:
            b = a.copy()
            b.positions = a.positions * lf
            if a.cell.rank:
                b.set_cell(a.cell[:] * lf, scale_atoms=False)
            kw = {"energy": r["energy"] * ef, "forces": r["forces"] * ef / lf}
            if r["charges"] is not None:
                kw["charges"] = np.asarray(r["charges"])
            if bool(a.pbc.all()) and r["virial"] is not None:
                kw["stress"] = voigt_stress(np.asarray(r["virial"]) * ef, b)
            b.calc = SinglePointCalculator(b, **kw)
            frames.append(b)
        root, ext = os.path.splitext(os.fspath(args.output))
        tmp = f"{root}.tmp-hdnnp{ext}"
        ase.io.write(tmp, frames, format="extxyz")
        os.replace(tmp, args.output)
        units = "eV and Angstrom"
    report_path = args.report or (os.fspath(args.output) + ".extrapolation")
    _core.write_file_atomic(report_path, "\n".join(report) + "\n")
    name = "CENT" if gen == "cent" else f"{gen}G"
    what = "energies, forces, charges" if charged else "energies, forces"
    print(f"{len(out)} structure(s) predicted ({name}: {what}) -> {args.output} ({units})")
    if len(out) == 1:
        print(f"energy {out[0][1]['energy']:.16e}")
    print(f"extrapolation: {n_atoms_out} atom(s) in {n_structs_out} structure(s) outside the "
          f"scaling.data range; details in {report_path}")
    return 0


def _load_data(directory, data=None, length_unit=None, energy_unit=None):
    """The training structures: DIRECTORY/input.data (n2p2, the potential's units), or DATA:
    another input.data, or anything ASE reads (extxyz, ASE db, OUTCAR...) with calculator
    results in eV/Angstrom, converted to the units the potential declares (or the given ones)."""
    from .io import read_input_data

    path = data or os.path.join(directory, "input.data")
    if not os.path.exists(path):
        raise OSError(f"{path} not found (the training structures: n2p2 input.data, or --data FILE)")
    if _is_n2p2(path):
        return read_input_data(path)
    import ase.io

    from .training.data import from_ase

    lf, ef = _units(directory, length_unit, energy_unit, need=path)
    structures = ase.io.read(path, index=":")
    return from_ase(structures, energy_factor=1.0 / ef, length_factor=1.0 / lf)


def _scaling(args) -> int:
    """scaling.data (and scalinge.data for 3G) from the training structures as `hdnnp train`
    will split them (validation and test structures make no choice), or from all (--all, as
    n2p2's nnp-scaling); statistics files."""
    import numpy as np

    from . import _core
    from .potential import generation
    from .training.data import prepare
    from .training.trainer import format_scaling, scaling_statistics

    all_structs = _load_data(args.directory, args.data, args.length_unit, args.energy_unit)
    source = args.data or os.path.join(args.directory, "input.data")
    gen = generation(args.directory)
    if gen in (3, 4, "cent"):
        if gen == 3:
            from .third_generation import ThirdGeneration as cls
        elif gen == 4:
            from .fourth_generation import FourthGeneration as cls
        else:
            from .cent import Cent as cls
        pot = cls(args.directory, weights=False)
        models = [("scaling.data", pot.model)] + ([("scalinge.data", pot.elec_model)] if gen == 3 else [])
    else:
        models = [("scaling.data", _core.Model.load(args.directory, False))]
    structs, what = _training_part(args, all_structs, stage=1 if gen in (3, 4, "cent") else 0)
    position = {id(a): k for k, a in enumerate(all_structs)}
    outs = []
    for name, m in models:
        preps = [prepare(m, a, f"{source}: structure {position[id(a)]}", jacobian=False) for a in structs]
        stats = scaling_statistics(preps, len(m.elements))
        outs.append(os.path.join(args.directory, name))
        _core.write_file_atomic(outs[-1], format_scaling(stats))
        if name == "scaling.data":
            model, main_stats, main_preps = m, stats, preps
    stats, preps = main_stats, main_preps
    # Neighbour statistics (within the largest SF cutoff) and per-SF statistics, as n2p2's
    # neighbors.out / function.data give them.
    counts = {e: [] for e in model.elements}
    for a in structs:
        pbc = [bool(p) for p in a.pbc]
        cell = np.ascontiguousarray(a.cell[:], dtype=float) if any(pbc) else None
        offsets = _core.neighbor_list(np.ascontiguousarray(a.positions, dtype=float), cell, pbc, model.cutoff)[0]
        for sym, c in zip(a.get_chemical_symbols(), np.diff(offsets)):
            counts[sym].append(int(c))
    lines = [f"# neighbours within r_c = {model.cutoff:g} (the potential's length unit) per element",
             "# element  atoms  min  mean  max"]
    for e, c in counts.items():
        if c:
            lines.append(f"{e:>3s} {len(c):8d} {min(c):5d} {np.mean(c):9.3f} {max(c):5d}")
            print(f"{e}: {len(c)} atoms, {min(c)}-{max(c)} neighbours (mean {np.mean(c):.1f})")
    # Shortest distance per element pair and the ZBL baseline radii hdnnp would derive from it
    # (hdnnp.baseline: r_inner, r_outer = 0.5, 0.9 x d_min).
    from .baseline import shortest_distances, suggest_radii

    dmin = shortest_distances(structs, list(model.elements), model.cutoff)
    _core.write_file_atomic(os.path.join(args.directory, "neighbors.out"), "\n".join(lines) + "\n")
    lines = ["# shortest distance per element pair over these structures (the potential's length unit) and the",
             "# ZBL baseline radii derived from it (0.5 and 0.9 d_min; 'hdnnp_zbl auto' in hdnnp train does the same",
             "# on the training structures only); to fix the radii, put these lines into input.nn:",
             "# pair  d_min  |  hdnnp_zbl A B r_inner r_outer"]
    els = list(model.elements)
    for x in range(len(els)):
        for y in range(x, len(els)):
            d = dmin.get((els[x], els[y]))
            if d is None:
                lines.append(f"{els[x]}-{els[y]} never closer than r_c")
                print(f"{els[x]}-{els[y]}: never closer than r_c = {model.cutoff:g}")
                continue
            r_in, r_out = suggest_radii(d)
            lines.append(f"{els[x]}-{els[y]} {d:.6f} | hdnnp_zbl {els[x]} {els[y]} {r_in:.6f} {r_out:.6f}")
            print(f"{els[x]}-{els[y]}: shortest distance {d:.4f}; suggested baseline radii "
                  f"'hdnnp_zbl {els[x]} {els[y]} {r_in:.4f} {r_out:.4f}'")
    _core.write_file_atomic(os.path.join(args.directory, "distances.out"), "\n".join(lines) + "\n")
    sf = ["# element  sf (n2p2 order)  min  max  mean  sigma  fraction of atoms where it is nonzero  input.nn line"]
    for e, st in enumerate(stats):
        G = np.concatenate([p.G[e] for p in preps if len(p.G[e])])
        fires = (np.abs(G) > 0).mean(axis=0)
        defs = model.symmetry_functions(e)
        tiny = []
        for k in range(len(st["min"])):
            sf.append(f"{model.elements[e]:>3s} {k + 1:4d} {st['min'][k]: .6e} {st['max'][k]: .6e} {st['mean'][k]: .6e} "
                      f"{st['sigma'][k]: .6e} {fires[k]:.4f} {defs[k][0]}")
            if st["max"][k] - st["min"][k] <= 1e-10 * max(abs(st["max"][k]), 1e-300) or fires[k] == 0.0:
                tiny.append(f"{k + 1} (line {defs[k][0]})")
        if tiny:
            print(f"warning: {model.elements[e]}: symmetry function(s) {', '.join(tiny)} never fire or are "
                  f"constant on the data; consider removing them (hdnnp.training.sfgen.prune_input_nn)",
                  file=sys.stderr)
    _core.write_file_atomic(os.path.join(args.directory, "sf-statistics.out"), "\n".join(sf) + "\n")
    print(f"scaling data of {what} -> {', '.join(outs)} (and neighbors.out, distances.out, sf-statistics.out)")
    return 0


def _norm(args) -> int:
    from .training.n2p2 import read_keywords
    from .training.trainer import normalize_input_nn

    structs = _load_data(args.directory, args.data, args.length_unit, args.energy_unit)
    structs, what = _training_part(args, structs)
    use_forces = "use_short_forces" in read_keywords(os.path.join(args.directory, "input.nn"))
    me, ce, cl = normalize_input_nn(args.directory, structs, use_forces)
    print(f"mean_energy {me:.10e}, conv_energy {ce:.10e}, conv_length {cl:.10e} from {what} -> "
          f"{os.path.join(args.directory, 'input.nn')}")
    return 0


def _training_part(args, structs, stage: int = 0):
    """(the structures hdnnp train will train on, given the directory's input.nn and the same
    data; all of them with --all), and words saying which."""
    from .training.n2p2 import config_from_input_nn
    from .training.trainer import split_structures

    if args.all:
        return list(structs), f"all {len(structs)} structures (as n2p2)"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cfg = config_from_input_nn(args.directory, stage=stage)
    train, val, test = split_structures(structs, cfg)
    return ([structs[k] for k in train], f"the {len(train)} training structures ({len(val)} validation and "
            f"{len(test)} test structures held out as hdnnp train will split them; --all for every structure)")


def _train(args) -> int:
    from .potential import generation
    from .training.n2p2 import config_from_input_nn
    from .training.trainer import Trainer

    gen = generation(args.directory)
    if gen in (3, 4) and args.stage not in (1, 2):
        raise UsageError(f"{os.path.join(args.directory, 'input.nn')} declares a {gen}G potential: train it in two "
                         "stages, --stage 1 (charges) and "
                         "then --stage 2 (short networks, with --charges pointing at the stage-1 output)")
    if gen not in (3, 4) and args.stage:
        if gen == "cent":
            gen = "CENT (one stage, no --stage)"
        raise UsageError(f"--stage is for 3G and 4G potentials; {os.path.join(args.directory, 'input.nn')} declares "
                         f"generation {gen}")
    from .training import parallel

    comm = parallel.world()
    if comm.size > 1:
        if comm.rank != 0:   # (one process reports; all of them train)
            sys.stdout = open(os.devnull, "w")
    structs = _load_data(args.directory, args.data, args.length_unit, args.energy_unit)
    settings = args.charges if args.stage == 2 and args.charges else args.directory
    if settings != args.directory:
        # Stage 2: the potential is stage 1's (its input.nn copy, scaling.data, charge networks);
        # the training settings are the user's DIRECTORY/input.nn. Both must describe the same
        # potential: anything else would silently train another one than the user's file says.
        from .training.n2p2 import model_differences

        mine, theirs = os.path.join(args.directory, "input.nn"), os.path.join(settings, "input.nn")
        diff = model_differences(mine, theirs)
        if diff:
            raise OSError(f"--stage 2: {mine} and {theirs} (stage 1's copy, which the written potential keeps) "
                          f"describe different potentials ({', '.join(diff)}); the training settings are read from "
                          f"{mine}, the potential's from stage 1: make them agree or run stage 1 again")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cfg = config_from_input_nn(args.directory, stage=1 if gen == "cent" else args.stage or 0, epochs=args.epochs,
                                   optimizer=args.optimizer, threads=args.threads, patience=args.patience,
                                   validation_fraction=args.validation_fraction, test_fraction=args.test_fraction)
    for w in caught:
        print(f"warning: {w.message}", file=sys.stderr)
    from .training.n2p2 import apply_settings

    for name in ("learning_rate", "batch_size", "force_weight", "energy_weight", "stress_weight", "seed", "time_limit"):
        if getattr(args, name) is not None:
            setattr(cfg, name, getattr(args, name))
    apply_settings(cfg, args.set)
    # Offsets: n2p2's atom_energy lines when input.nn has them, else a least-squares fit to the
    # training energies (what the networks do not give: baseline, electrostatics) unless refused.
    from .training.n2p2 import read_keywords

    kw_user = read_keywords(os.path.join(args.directory, "input.nn"))
    explicit = "fit_offsets" in kw_user or any(i.split("=", 1)[0].strip() == "fit_offsets" for i in args.set or [])
    if args.stage != 1 and gen != "cent" and "atom_energy" not in kw_user and args.fit_offsets and not explicit:
        cfg.fit_offsets = True
    if args.stage == 1:
        if gen == 4:
            from .training.fourth_generation import ChargeTrainer
        else:
            from .training.third_generation import LocalChargeTrainer as ChargeTrainer

        out = args.output or os.path.join(args.directory, "charges")
        best = _run(ChargeTrainer(settings, structs, cfg), out, "checkpoint-charges.npz", args)
        print(f"best epoch {best.epoch}: charge RMSE {best.rmse_charge_train:.4e} / "
              f"{best.rmse_charge_validation:.4e} / {best.rmse_charge_test:.4e} (train / validation / test, e per atom)")
        print(f"{'electronegativity networks and hardness' if gen == 4 else 'charge networks'} -> {out}")
        return 0
    out = args.output or os.path.join(args.directory, "potential")
    if gen == "cent":
        from .training.cent import CentTrainer

        best = _run(CentTrainer(args.directory, structs, cfg), out, "checkpoint.npz", args)
        print(f"best epoch {best.epoch}: energy RMSE {best.rmse_energy_train:.4e} / "
              f"{best.rmse_energy_validation:.4e} / {best.rmse_energy_test:.4e} (train / validation / test, per atom)")
        print(f"CENT potential -> {out}")
        return 0
    if args.stage == 2:
        if gen == 4:
            from .training.fourth_generation import ShortTrainer
        else:
            from .training.third_generation import LocalShortTrainer as ShortTrainer

        tr = ShortTrainer(settings, structs, cfg)
    else:
        tr = Trainer(args.directory, structs, cfg)
    if cfg.fit_offsets:
        print("per-element energy offsets fitted to the training energies (no atom_energy in input.nn; "
              "--no-fit-offsets to start from zero): " +
              ", ".join(f"{e} {x:.10g}" for e, x in zip(tr.elements, tr.offsets)))
        for note in tr.offset_notes:
            print(f"  {note}")
    best = _run(tr, out, "checkpoint.npz", args)
    print(f"best epoch {best.epoch} (chosen on the validation set): energy RMSE {best.rmse_energy_train:.4e} / "
          f"{best.rmse_energy_validation:.4e} / {best.rmse_energy_test:.4e} (train / validation / test, per atom), "
          f"force RMSE {best.rmse_force_train:.4e} / {best.rmse_force_validation:.4e} / {best.rmse_force_test:.4e}")
    print(f"potential -> {out}")
    return 0


def _run(tr, out, checkpoint, args):
    """Train (resuming from out/checkpoint with --resume) and return the best epoch's statistics."""
    if args.resume:
        tr.resume(_checkpoint(out, checkpoint))
        print(f"resuming after epoch {tr.epoch}")
    hist = tr.train(out, progress=not args.quiet)
    return hist[tr.best_epoch] if tr.best_epoch >= 0 else hist[-1]


def _checkpoint(out, name):
    ck = os.path.join(out, name)
    if not os.path.exists(ck):
        raise OSError(f"--resume: no checkpoint at {ck}")
    return ck


def _sfgen(args) -> int:
    from .training.sfgen import generate, input_nn

    lines = generate(args.elements, args.cutoff, args.kinds, radial_points=args.radial_points,
                     angular_points=args.angular_points, zetas=args.zetas, mode=args.mode, r_lower=args.r_lower)
    head = (f"# {len(lines)} symmetry functions: {' '.join(args.kinds)}, {args.mode} grid, r_c {args.cutoff:g} "
            f"(hdnnp sfgen)")
    if args.input_nn:
        if (args.length_unit is None) != (args.energy_unit is None):
            raise OSError("--input-nn: give both --length-unit and --energy-unit, or neither")
        print(head)
        training = ("# training: the Kalman filter with one covariance block per element, 10 % of the force\n"
                    "# components per epoch (hdnnp's recommended set-up, benchmarks/RESULTS.md; README lists\n"
                    "# every setting)\nuse_short_forces\nupdater_type 1\nkalman_decoupling element\n"
                    "short_force_fraction 0.1\nepochs 30\nearly_stopping_patience 10\n")
        print(input_nn(args.elements, lines, args.hidden, length_unit=args.length_unit,
                       energy_unit=args.energy_unit, extra=training), end="")
        return 0
    print(head)
    for line in lines:
        print(f"symfunction_short {line}")
    return 0


def _fit(args) -> int:
    from .workflow.fit import FitConfig, fit

    cfg = FitConfig(epochs=args.epochs, time_limit=args.time_limit, committee=args.committee, cutoff=args.cutoff,
                    optimizer=args.optimizer, parallel=args.parallel, validation_fraction=args.validation_fraction,
                    memory_budget_mb=args.memory_budget,
                    seed=args.seed, threads=args.threads, progress=not args.quiet, baseline=not args.no_baseline)
    if args.committee < 1:
        raise UsageError("--committee must be at least 1")
    fit(args.data, args.output, cfg, log=(lambda *_: None) if args.quiet else print)
    print(f"report: {os.path.join(args.output, 'report.md')}")
    return 0


def _demo(args) -> int:
    from .workflow.demo import run_demo

    run_demo(args.output, quick=args.quick)
    return 0


def _active_learn(args) -> int:
    import ase.io

    from .workflow.active_learning import ActiveLearner, ActiveLearningConfig

    calcs = {"emt": "ase.calculators.emt:EMT", "lj": "ase.calculators.lj:LennardJones"}
    target = calcs.get(args.calculator, args.calculator)
    if ":" not in target:
        raise OSError(f"--calculator: 'emt', 'lj' or module:Class of an ASE calculator, not {args.calculator!r}")
    import importlib

    mod, cls = target.split(":")
    reference = getattr(importlib.import_module(mod), cls)
    structures = ase.io.read(args.structures, ":")
    elements = args.elements or sorted({s for a in structures for s in a.get_chemical_symbols()})
    cfg = ActiveLearningConfig(elements=elements, cutoff=args.cutoff, iterations=args.iterations,
                               committee=args.committee, epochs=args.epochs, md_temperatures=args.temperatures,
                               time_limit=args.time_limit, optimizer=args.optimizer,
                               md_steps=args.md_steps, deviation_threshold=args.threshold,
                               deviation_max=args.max_deviation)
    starts = [structures[i % len(structures)] for i in range(len(cfg.md_temperatures))]
    ActiveLearner(args.output, cfg, reference).run(structures, starts)
    print(f"labelled data: {os.path.join(args.output, 'data.extxyz')}; per iteration: "
          f"{os.path.join(args.output, 'iterations.json')}")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="hdnnp", description="High-dimensional neural network potentials")
    parser.add_argument("--debug", action="store_true", help="on an error, show the traceback")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("predict", help="predict energies and forces for every structure of an input.data file")
    p.add_argument("potential", help="potential directory (input.nn, scaling.data, weights.ZZZ.data)")
    p.add_argument("input", help="structures: n2p2 input.data (*.data, the potential's units) or anything ASE "
                   "reads (extxyz, ...; eV and Angstrom)")
    p.add_argument("-o", "--output", default="output.data", help="output file: *.xyz / *.extxyz as extended XYZ "
                   "(eV and Angstrom), anything else as n2p2 input.data (the potential's units)")
    p.add_argument("--background", action="store_true", help="3G/4G/CENT: neutralise charged periodic cells with a "
                   "uniform background (an error otherwise)")
    p.add_argument("--length-unit", default=None, help="the potential's length unit (if input.nn does not "
                   "declare it; for ASE files)")
    p.add_argument("--energy-unit", default=None, help="the potential's energy unit (as --length-unit)")
    p.add_argument("--report", default=None, help="extrapolation report (default: OUTPUT.extrapolation)")
    p.add_argument("--threads", type=int, default=0, help="OpenMP threads (0: all)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    data_help = ("structures instead of DIRECTORY/input.data: an n2p2 *.data file or anything ASE reads with "
                 "energies/forces (extxyz, ASE db, OUTCAR...; eV and Angstrom)")
    p = sub.add_parser("scaling", help="write scaling.data from input.nn and the data's training structures "
                       "(like nnp-scaling; 3G: scalinge.data too)")
    p.add_argument("directory", nargs="?", default=".")
    p.add_argument("--all", action="store_true", help="use every structure, as n2p2's nnp-scaling (by default the "
                   "validation and test structures hdnnp train will hold out are left out)")
    p.add_argument("--data", default=None, help=data_help)
    p.add_argument("--length-unit", default=None, help="the potential's length unit (for ASE data)")
    p.add_argument("--energy-unit", default=None, help="the potential's energy unit (for ASE data)")
    p = sub.add_parser("norm", help="write mean_energy/conv_energy/conv_length from the data into input.nn "
                       "(like nnp-norm)")
    p.add_argument("directory", nargs="?", default=".")
    p.add_argument("--all", action="store_true", help="use every structure, as n2p2's nnp-norm (by default the "
                   "validation and test structures hdnnp train will hold out are left out)")
    p.add_argument("--data", default=None, help=data_help)
    p.add_argument("--length-unit", default=None, help="the potential's length unit (for ASE data)")
    p.add_argument("--energy-unit", default=None, help="the potential's energy unit (for ASE data)")
    p = sub.add_parser("train", help="train from input.nn (n2p2 training keywords) and input.data (like nnp-train)")
    p.add_argument("directory", nargs="?", default=".")
    p.add_argument("-o", "--output", default=None, help="output folder (default DIRECTORY/potential)")
    p.add_argument("--epochs", type=int, default=None, help="override input.nn's epochs")
    p.add_argument("--optimizer", choices=["adam", "kalman"], default=None, help="override updater_type")
    p.add_argument("--resume", action="store_true", help="continue from OUTPUT/checkpoint.npz")
    p.add_argument("--patience", type=int, default=None,
                   help="early stopping: stop after this many epochs without a better validation score")
    p.add_argument("--learning-rate", type=float, default=None, help="Adam step size (input.nn: gradient_adam_eta)")
    p.add_argument("--batch-size", type=int, default=None,
                   help="Adam: structures per update (input.nn: task_batch_size_energy)")
    p.add_argument("--energy-weight", type=float, default=None, help="loss weight of energies (input.nn: energy_weight)")
    p.add_argument("--force-weight", type=float, default=None, help="loss weight of forces (input.nn: force_weight)")
    p.add_argument("--stress-weight", type=float, default=None, help="loss weight of stresses (input.nn: stress_weight)")
    p.add_argument("--seed", type=int, default=None, help="random seed (input.nn: random_seed)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="any training setting (a field of hdnnp.training.trainer.TrainingConfig, kalman.FIELD for "
                        "the Kalman filter's), e.g. --set learning_rate_decay=0.98 --set kalman.q0=0.01; repeatable")
    p.add_argument("--time-limit", type=float, default=None, metavar="SECONDS",
                   help="wall-clock budget of the training: no epoch is started that would end beyond it; the best "
                        "weights (validation) are written as at a normal end")
    p.add_argument("--no-fit-offsets", dest="fit_offsets", action="store_false",
                   help="without atom_energy lines in input.nn, do not fit per-element offsets (least squares on "
                        "the training energies, the default) but start from zero")
    p.add_argument("--validation-fraction", type=float, default=None,
                   help="share of the structures that chooses the best epoch and early stopping (default 0.1; "
                        "input.nn: validation_fraction); structures tagged set=validation are used when given")
    p.add_argument("--test-fraction", type=float, default=None,
                   help="share of the structures held out for reporting only (default 0.1; input.nn: "
                        "test_fraction)")
    p.add_argument("--data", default=None, help=data_help)
    p.add_argument("--length-unit", default=None, help="the potential's length unit (for ASE data)")
    p.add_argument("--energy-unit", default=None, help="the potential's energy unit (for ASE data)")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.add_argument("--stage", type=int, choices=[1, 2], default=None,
                   help="4G potentials: 1 = electronegativity networks and hardness, 3G: 1 = charge networks "
                        "(output default DIRECTORY/charges); 2 = short networks (output default "
                        "DIRECTORY/potential)")
    p.add_argument("--charges", default=None, help="stage 2: the stage-1 output folder (4G: input.nn, scaling.data, "
                   "weightse.ZZZ.data, hardness.ZZZ.data; 3G: input.nn, scalinge.data, weightse.ZZZ.data); "
                   "default DIRECTORY, as nnp-train 2. The training settings (epochs, optimiser, ...) come from "
                   "DIRECTORY/input.nn, the potential from the stage-1 folder; they must describe the same "
                   "potential (else an error names the keywords)")
    p = sub.add_parser(
        "sfgen", help="print symfunction_short lines (or a whole 2G input.nn) for radial/angular grids",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Symmetry functions on parameter grids (Gastegger et al., J. Chem. Phys. 148, 241709 (2018)).",
        epilog="""kinds:
  radial      type 2: Gaussians exp(-eta (r - r_s)^2) fc(r), one set per (centre, neighbour) element pair
  narrow      type 3: angular (1 + lambda cos theta)^zeta with all three distances' Gaussians and
              cutoffs, per centre and unordered neighbour pair; lambda = +-1, zeta from --zetas
  wide        type 9: angular like narrow without the r_jk terms (reaches wider angles)
  weighted    types 12 and 13: element-weighted radial and angular functions (weights Z_j, one set per
              centre element: few functions for many elements)
  polynomial  types 20 and 21: compactly supported polynomial radial windows on the grid and angular
              windows over 0-180 degrees (no exponentials)
  ani         type 90: ANI-style angular functions (Smith et al. 2017) with theta_s on an even grid
grids (--mode):
  shift       r_s on an even grid from --r-lower (default 0) to r_c, common width eta from the spacing
  center      r_s = 0, widths eta_i = 1/(2 r_i^2) for r_i from --r-lower (default 1.5) to r_c
Angular kinds use --angular-points of the radial (eta, r_s) pairs. Lengths in the potential's unit.""")
    p.add_argument("--elements", nargs="+", required=True)
    p.add_argument("--cutoff", type=float, required=True, help="cutoff radius (the potential's length unit)")
    p.add_argument("--kinds", nargs="+", default=["radial", "narrow"],
                   choices=["radial", "narrow", "wide", "weighted", "polynomial", "ani"],
                   help="which kinds (below); default: radial narrow")
    p.add_argument("--mode", choices=["shift", "center"], default="shift", help="radial grid rule (below)")
    p.add_argument("--radial-points", type=int, default=8, help="grid points of the radial functions")
    p.add_argument("--angular-points", type=int, default=3, help="radial parts reused by the angular kinds")
    p.add_argument("--zetas", type=float, nargs="+", default=[1.0, 4.0], help="angular exponents zeta")
    p.add_argument("--r-lower", type=float, default=None, help="start of the radial grid")
    p.add_argument("--input-nn", action="store_true",
                   help="print a complete 2G input.nn (these functions, scaling, tanh networks of --hidden)")
    p.add_argument("--hidden", type=int, nargs="+", default=[15, 15], help="hidden layer sizes (with --input-nn)")
    p.add_argument("--length-unit", default=None, help="declare the units in input.nn (with --input-nn)")
    p.add_argument("--energy-unit", default=None, help="declare the units in input.nn (with --input-nn)")
    p = sub.add_parser("fit", help="fit a potential to reference data (anything ASE reads with energies and "
                                   "forces, eV and Angstrom) in one command: settings from the data, training, "
                                   "report (no input.nn needed)")
    p.add_argument("data", help="structures with energies and forces (extxyz, ASE db, OUTCAR, ...)")
    p.add_argument("-o", "--output", required=True, help="output directory (settings/, potential/ or memberK/, "
                                                         "report.md, report.json)")
    p.add_argument("--time-limit", type=float, default=None, metavar="SECONDS", help="wall-clock budget of the fit")
    p.add_argument("--committee", type=int, default=1, metavar="N", help="train N potentials (different seeds)")
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--parallel", type=int, default=0, metavar="P",
                   help="committee members trained at once, one process and thread each (default: the CPU cores)")
    p.add_argument("--optimizer", choices=["auto", "kalman", "adam"], default="auto",
                   help="auto: the element-decoupled Kalman filter unless the networks are too large for it")
    p.add_argument("--cutoff", type=float, default=None, help="symmetry-function cutoff in Angstrom (default: "
                                                             "from the data's density)")
    p.add_argument("--validation-fraction", type=float, default=0.1,
                   help="structures that choose the best epoch (0: the training error chooses)")
    p.add_argument("--memory-budget", type=float, default=4096.0, metavar="MB",
                   help="descriptor derivatives kept in memory, shared by the members trained at once; beyond it "
                        "a structure keeps its descriptors only (0.5 KB per atom) and the derivatives are "
                        "contracted on every use")
    p.add_argument("--seed", type=int, default=11)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--no-baseline", action="store_true", help="no ZBL pair baseline")
    p.add_argument("-q", "--quiet", action="store_true")

    p = sub.add_parser("demo", help="the end-to-end workflow on Cu-Au with EMT as the reference (active "
                       "learning with a committee, LAMMPS MD, validation, report)")
    p.add_argument("-o", "--output", default="hdnnp-demo")
    p.add_argument("--quick", action="store_true", help="small sizes (about 15 s)")
    p = sub.add_parser("active-learn", help="active learning: committee training, LAMMPS committee MD, "
                       "labelling of high-deviation frames, repeated")
    p.add_argument("structures", help="initial structures (anything ASE reads)")
    p.add_argument("-o", "--output", default="active-learning")
    p.add_argument("--calculator", default="emt", help="reference: emt, lj or module:Class (an ASE calculator)")
    p.add_argument("--elements", nargs="*", default=None)
    p.add_argument("--cutoff", type=float, default=5.5, help="symmetry-function cutoff (Angstrom)")
    p.add_argument("--iterations", type=int, default=2)
    p.add_argument("--committee", type=int, default=3)
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--time-limit", type=float, default=None, metavar="SECONDS",
                   help="wall-clock budget of each committee member's training")
    p.add_argument("--optimizer", choices=["kalman", "adam"], default="kalman",
                   help="kalman: per-layer covariance blocks, 10 %% of the force components per epoch")
    p.add_argument("--temperatures", type=float, nargs="+", default=[600.0, 1000.0])
    p.add_argument("--md-steps", type=int, default=400)
    p.add_argument("--threshold", type=float, default=0.05, help="force deviation (eV/A) of candidate frames")
    p.add_argument("--max-deviation", type=float, default=2.0)
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv               # (accepted anywhere on the line)
    args = parser.parse_args([a for a in argv if a != "--debug"])
    args.debug = debug
    from . import _core
    from .training.data import DataError

    try:
        if args.command == "predict":
            return _predict(args)
        if args.command == "scaling":
            return _scaling(args)
        if args.command == "norm":
            return _norm(args)
        if args.command == "train":
            return _train(args)
        if args.command == "sfgen":
            return _sfgen(args)
        if args.command == "demo":
            return _demo(args)
        if args.command == "active-learn":
            return _active_learn(args)
        if args.command == "fit":
            return _fit(args)
    except (_core.Error, OSError, DataError, ValueError, UsageError) as e:
        # bad input: one line naming the file, line or atom, exit status 2; --debug: the traceback
        if args.debug:
            raise
        msg = " ".join(str(e).split("\n"))
        print(f"hdnnp: error: {msg}", file=sys.stderr)
        return 2
    return 2


if __name__ == "__main__":
    sys.exit(main())
