"""Synthetic potentials written at test time (random weights), covering every SF and cutoff type."""
import os

import numpy as np

# One line per SF type (elements A=H, B=O); rc in Angstrom-like units.
SF_LINES = {
    2: ["H 2 H 0.5 0.0 {rc}", "H 2 O 0.3 0.8 {rc}", "O 2 H 0.4 0.0 {rc}", "O 2 O 0.2 1.0 {rc}"],
    3: ["H 3 H O 0.1 1.0 1.0 {rc}", "H 3 O O 0.05 -1.0 2.0 {rc} 0.5", "O 3 H H 0.1 1.0 4.0 {rc}",
        "O 3 H O 0.02 -1.0 1.0 {rc}", "O 3 O O 0.03 1.0 7.0 {rc}", "H 3 H H 0.01 -1.0 16.0 {rc}"],
    9: ["H 9 H O 0.1 1.0 2.0 {rc}", "O 9 H H 0.1 -1.0 1.0 {rc} 0.3", "O 9 O O 0.05 1.0 1.5 {rc}"],
    12: ["H 12 0.2 0.0 {rc}", "O 12 0.1 1.0 {rc}"],
    13: ["H 13 0.05 0.0 1.0 1.0 {rc}", "O 13 0.03 0.5 -1.0 2.0 {rc}"],
    20: ["H 20 H -{rc} {rc} p2", "H 20 O -{rc} {rc} p3a", "O 20 H 0.5 {rc} e", "O 20 O -{rc} {rc} p1"],
    21: ["H 21 H O -{rc} {rc} 0.0 180.0 p2", "O 21 H H -{rc} {rc} 60.0 150.0 p4",
         "O 21 H O -{rc} {rc} -90.0 90.0 p2a"],
    22: ["H 22 H O -{rc} {rc} 90.0 270.0 p3", "O 22 H H -{rc} {rc} 30.0 120.0 e"],
    23: ["H 23 -{rc} {rc} p2", "O 23 -{rc} {rc} p4a"],
    24: ["H 24 -{rc} {rc} 0.0 180.0 p2", "O 24 -{rc} {rc} 45.0 135.0 p1"],
    25: ["H 25 -{rc} {rc} -60.0 60.0 p3", "O 25 -{rc} {rc} 20.0 160.0 p2"],
    90: ["H 90 H O 0.4 1.2 4.0 60.0 {rc}", "O 90 H H 0.3 1.0 8.0 100.0 {rc}", "O 90 O O 0.3 1.5 1.0 0.0 {rc}"],
}


def write_potential(path, types=None, cutoff_type=6, alpha=0.0, rc=4.2, hidden=(6, 5), acts="t p l",
                    scaling="scale_center", normalize_nodes=False, seed=0, conv=None, offsets=None,
                    elements=("H", "O"), extra_lines=""):
    """Write input.nn, scaling.data and weights for elements H and O into `path`."""
    rng = np.random.default_rng(seed)
    types = sorted(SF_LINES) if types is None else types
    lines = []
    for t in types:
        lines += [l.format(rc=rc) for l in SF_LINES[t]]
    per_el = {e: [l for l in lines if l.split()[0] == e] for e in elements}
    head = [f"number_of_elements {len(elements)}", "elements " + " ".join(elements),
            f"cutoff_type {cutoff_type} {alpha}", f"global_hidden_layers_short {len(hidden)}",
            "global_nodes_short " + " ".join(map(str, hidden)), f"global_activation_short {acts}"]
    if scaling == "scale_center":
        head += ["scale_symmetry_functions", "center_symmetry_functions", "scale_min_short -1.0",
                 "scale_max_short 1.0"]
    elif scaling == "sigma":
        head += ["scale_symmetry_functions_sigma", "scale_min_short 0.0", "scale_max_short 1.0"]
    elif scaling == "scale":
        head += ["scale_symmetry_functions", "scale_min_short 0.0", "scale_max_short 1.0"]
    elif scaling == "center":
        head += ["center_symmetry_functions"]
    if normalize_nodes:
        head.append("normalize_nodes")
    if conv:
        head += [f"mean_energy {conv[0]}", f"conv_energy {conv[1]}", f"conv_length {conv[2]}"]
    for e, v in (offsets or {}).items():
        head.append(f"atom_energy {e} {v}")
    os.makedirs(path, exist_ok=True)
    with open(os.path.join(path, "input.nn"), "w") as fh:
        fh.write("\n".join(head) + "\n" + extra_lines + "\n")
        for l in lines:
            fh.write("symfunction_short " + l + "\n")
    # scaling.data: ranges large enough that nothing extrapolates in the tests' structures.
    with open(os.path.join(path, "scaling.data"), "w") as fh:
        fh.write("# e_index sf_index min max mean sigma\n")
        for ei, e in enumerate(sorted(elements, key=lambda s: {"H": 1, "O": 8, "C": 6, "N": 7}[s])):
            for k in range(len(per_el[e])):
                lo = -0.1 * rng.uniform(0.5, 1)
                hi = rng.uniform(5, 50)
                fh.write(f"{ei + 1} {k + 1} {lo:.16e} {hi:.16e} {rng.uniform(0, 1):.16e} {rng.uniform(0.5, 3):.16e}\n")
    z = {"H": 1, "O": 8, "C": 6, "N": 7}
    for e in elements:
        sizes = [len(per_el[e]), *hidden, 1]
        n = sum((a + 1) * b for a, b in zip(sizes[:-1], sizes[1:]))
        w = rng.normal(0, 0.7, n)
        with open(os.path.join(path, f"weights.{z[e]:03d}.data"), "w") as fh:
            fh.write("# weights\n")
            for x in w:
                fh.write(f"{x:.17e} a\n")
    return path


def random_cluster(n_h=6, n_o=4, box=(5.5, 6.0, 6.5), tilt=(0.7, -0.4, 0.5), seed=1, pbc=True, dmin=0.9):
    """Random H/O structure in a small triclinic cell (atoms at least dmin apart)."""
    from ase import Atoms

    rng = np.random.default_rng(seed)
    cell = np.array([[box[0], 0, 0], [tilt[0], box[1], 0], [tilt[1], tilt[2], box[2]]])
    pos = []
    while len(pos) < n_h + n_o:
        p = rng.uniform(0, 1, 3) @ cell
        atoms = Atoms("X" * (len(pos) + 1), positions=pos + [p], cell=cell, pbc=pbc)
        if len(pos) == 0 or atoms.get_distances(len(pos), range(len(pos)), mic=pbc).min() > dmin:
            pos.append(p)
    return Atoms("H" * n_h + "O" * n_o, positions=pos, cell=cell, pbc=pbc)


def write_3g_potential(path, seed=0, rc_elec=5.0, screen=(1.0, 3.5), enforce=None, elec_hidden=(5,),
                       charge_bias=(("H", 0.4), ("O", -0.6)), **kw):
    """A 3G potential (RuNNer layout): write_potential's short part, plus charge networks on their
    own radial and angular symmetry functions (cutoff rc_elec), scalinge.data and weightse.ZZZ.data
    (random weights; the output bias per element from charge_bias: charges of both signs)."""
    rng = np.random.default_rng(seed + 1000)
    elec = [l.format(rc=rc_elec) for l in SF_LINES[2] + SF_LINES[3][:3]]
    extra = ["nnp_generation 3", "use_electrostatics", "use_short_nn",
             f"global_hidden_layers_electrostatic {len(elec_hidden)}",
             "global_nodes_electrostatic " + " ".join(map(str, elec_hidden)),
             "global_activation_electrostatic " + " ".join(["t"] * len(elec_hidden) + ["l"]),
             "scale_min_elec -1.0", "scale_max_elec 1.0"]
    if screen:
        extra.append(f"screen_electrostatics {screen[0]} {screen[1]}")
    if enforce is not None:
        extra.append(f"enforce_totcharge {enforce}")
    extra += ["symfunction_electrostatic " + l for l in elec]
    write_potential(path, seed=seed, extra_lines=kw.pop("extra_lines", "") + "\n".join(extra) + "\n", **kw)
    elements = kw.get("elements", ("H", "O"))
    z = {"H": 1, "O": 8, "C": 6, "N": 7}
    per_el = {e: [l for l in elec if l.split()[0] == e] for e in elements}
    with open(os.path.join(path, "scalinge.data"), "w") as fh:
        for ei, e in enumerate(sorted(elements, key=lambda s: z[s])):
            for k in range(len(per_el[e])):
                lo, hi = -0.1 * rng.uniform(0.5, 1), rng.uniform(5, 50)
                fh.write(f"{ei + 1} {k + 1} {lo:.16e} {hi:.16e} {rng.uniform(0, 1):.16e} {rng.uniform(0.5, 3):.16e}\n")
    for e in elements:
        sizes = [len(per_el[e]), *elec_hidden, 1]
        n = sum((a + 1) * b for a, b in zip(sizes[:-1], sizes[1:]))
        w = rng.normal(0, 0.3, n)
        w[-1] = dict(charge_bias).get(e, w[-1])
        with open(os.path.join(path, f"weightse.{z[e]:03d}.data"), "w") as fh:
            fh.write("".join(f"{x:.17e}\n" for x in w))
    return path


def write_cent_potential(path, seed=0, hidden=(5,), hardness=(("H", 0.6), ("O", 0.9)),
                         widths=(("H", 0.6), ("O", 1.1)), **kw):
    """A CENT potential: write_potential's symmetry functions and scaling, electronegativity
    networks (weightse.ZZZ.data), hardness.ZZZ.data and Gaussian widths; no short networks."""
    rng = np.random.default_rng(seed + 2000)
    extra = ["nnp_generation cent", f"global_hidden_layers_electrostatic {len(hidden)}",
             "global_nodes_electrostatic " + " ".join(map(str, hidden)),
             "global_activation_electrostatic " + " ".join(["t"] * len(hidden) + ["l"]),
             "ewald_truncation_error_method 0", "ewald_prec 1e-8"]
    extra += [f"fixed_gausswidth {e} {s}" for e, s in widths]
    extra += [f"initial_hardness {e} {j}" for e, j in hardness]
    write_potential(path, seed=seed, extra_lines=kw.pop("extra_lines", "") + "\n".join(extra) + "\n", **kw)
    z = {"H": 1, "O": 8, "C": 6, "N": 7}
    with open(os.path.join(path, "input.nn")) as fh:
        per_el = {}
        for line in fh:
            if line.startswith("symfunction_short"):
                per_el[line.split()[1]] = per_el.get(line.split()[1], 0) + 1
    for e, j in hardness:
        os.remove(os.path.join(path, f"weights.{z[e]:03d}.data"))
        sizes = [per_el[e], *hidden, 1]
        n = sum((a + 1) * b for a, b in zip(sizes[:-1], sizes[1:]))
        with open(os.path.join(path, f"weightse.{z[e]:03d}.data"), "w") as fh:
            fh.write("".join(f"{x:.17e}\n" for x in rng.normal(0, 0.5, n)))
        with open(os.path.join(path, f"hardness.{z[e]:03d}.data"), "w") as fh:
            fh.write(f"{j}\n")
    return path


def write_4g_potential(path, seed=0, **kw):
    """A 4G potential (n2p2 layout): write_cent_potential's electronegativity networks, hardness
    and Gaussian widths, plus short networks on [G, Q] (K + 1 inputs, weights.ZZZ.data)."""
    write_cent_potential(path, seed=seed, **kw)
    rng = np.random.default_rng(seed + 3000)
    nn = os.path.join(path, "input.nn")
    with open(nn) as fh:
        text = fh.read().replace("nnp_generation cent", "nnp_generation 4")
    with open(nn, "w") as fh:
        fh.write(text)
    z = {"H": 1, "O": 8, "C": 6, "N": 7}
    per_el = {}
    for line in text.splitlines():
        if line.startswith("symfunction_short"):
            per_el[line.split()[1]] = per_el.get(line.split()[1], 0) + 1
    hidden = [int(x) for x in next(l for l in text.splitlines() if l.startswith("global_nodes_short")).split()[1:]]
    for e, k in per_el.items():
        sizes = [k + 1, *hidden, 1]
        n = sum((a + 1) * b for a, b in zip(sizes[:-1], sizes[1:]))
        with open(os.path.join(path, f"weights.{z[e]:03d}.data"), "w") as fh:
            fh.write("".join(f"{x:.17e}\n" for x in rng.normal(0, 0.5, n)))
    return path


def in_angstrom(atoms):
    """A copy of a fixture structure (n2p2's input.data, Bohr) in Angstrom."""
    from hdnnp.units import length_factor

    bohr = length_factor("Bohr")
    a = atoms.copy()
    a.positions *= bohr
    if atoms.pbc.any():
        a.set_cell(atoms.cell[:] * bohr, scale_atoms=False)
    return a
