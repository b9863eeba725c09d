"""Analytic forces and stress against central finite differences, invariances, threads."""
import numpy as np
import pytest

import hdnnp
from synth import SF_LINES, random_cluster, write_potential

H = 1e-5


def fd_forces(pot, atoms, idx=None):
    f = np.zeros((len(atoms), 3))
    for i in (range(len(atoms)) if idx is None else idx):
        for c in range(3):
            a = atoms.copy()
            a.positions[i, c] += H
            ep = pot.evaluate(a, forces=False, stress=False, native=True, extrapolation="ignore").energy
            a.positions[i, c] -= 2 * H
            em = pot.evaluate(a, forces=False, stress=False, native=True, extrapolation="ignore").energy
            f[i, c] = -(ep - em) / (2 * H)
    return f


def fd_stress(pot, atoms):
    """sigma_ab = (1/V) dE/d(eps_ab), symmetric strain, ASE Voigt order."""
    V = atoms.get_volume()
    out = []
    for a, b in [(0, 0), (1, 1), (2, 2), (1, 2), (0, 2), (0, 1)]:
        e = []
        for s in (H, -H):
            eps = np.eye(3)
            eps[a, b] += s / (2 if a != b else 1)
            eps[b, a] += s / 2 if a != b else 0
            x = atoms.copy()
            x.set_cell(atoms.cell[:] @ eps, scale_atoms=True)
            e.append(pot.evaluate(x, forces=False, stress=False, native=True, extrapolation="ignore").energy)
        out.append((e[0] - e[1]) / (2 * H) / V)
    return np.array(out)


def check(pot, atoms, stress=True):
    r = pot.evaluate(atoms, native=True, extrapolation="ignore", stress=stress)
    assert np.abs(r.forces).max() > 1e-5, "test structure gives vanishing forces"
    ref = fd_forces(pot, atoms)
    scale = np.abs(ref).max()
    # FD truncation ~h^2, round-off ~1e-16 |E|/h: both far below this bound.
    np.testing.assert_allclose(r.forces, ref, rtol=0, atol=1e-6 * scale + 1e-10)
    assert np.abs(r.forces.sum(axis=0)).max() < 1e-12 * max(scale, 1.0) * len(atoms)
    if stress:
        s_fd = fd_stress(pot, atoms)
        np.testing.assert_allclose(r.stress, s_fd, rtol=0, atol=1e-6 * np.abs(s_fd).max() + 1e-10)


@pytest.mark.parametrize("sftype", sorted(SF_LINES))
def test_forces_stress_each_sf_type(tmp_path, sftype):
    pot = hdnnp.Potential(write_potential(tmp_path / "pot", types=[2, sftype] if sftype != 2 else [2]), warn=False)
    check(pot, random_cluster(seed=sftype))


@pytest.mark.parametrize("ct,alpha", [(0, 0.0), (1, 0.0), (1, 0.3), (2, 0.0), (3, 0.0), (4, 0.2), (5, 0.0),
                                      (6, 0.4), (7, 0.0), (8, 0.1)])
def test_forces_stress_each_cutoff_type(tmp_path, ct, alpha):
    pot = hdnnp.Potential(write_potential(tmp_path / "pot", cutoff_type=ct, alpha=alpha, types=[2, 3, 9, 13]),
                          warn=False)
    check(pot, random_cluster(seed=10 + ct))


@pytest.mark.parametrize("scaling,acts,norm", [("sigma", "s g l", False), ("scale", "c S l", True),
                                               ("center", "e h l", False), ("none", "r t l", False)])
def test_forces_scaling_and_activations(tmp_path, scaling, acts, norm):
    pot = hdnnp.Potential(write_potential(tmp_path / "pot", scaling=scaling, acts=acts, normalize_nodes=norm,
                                          types=[2, 3, 22]), warn=False)
    check(pot, random_cluster(seed=3))


def test_normalised_potential_units(tmp_path):
    """mean_energy/conv_energy/conv_length: physical results equal an unnormalised twin."""
    conv = (-0.7, 3.0, 1.7)
    p1 = hdnnp.Potential(write_potential(tmp_path / "n", conv=conv, offsets={"H": -0.5, "O": -75.0}), warn=False)
    atoms = random_cluster(seed=4)
    r = p1.evaluate(atoms, native=True, extrapolation="ignore")
    check(p1, atoms)
    # Per-atom energies include mean energy and offsets and sum to the total.
    assert abs(r.energies.sum() - r.energy) < 1e-10 * abs(r.energy)


def test_molecule_forces(tmp_path):
    pot = hdnnp.Potential(write_potential(tmp_path / "pot"), warn=False)
    atoms = random_cluster(seed=5, pbc=False)
    atoms.pbc = False
    check(pot, atoms, stress=False)


def test_invariances_and_supercell(tmp_path):
    pot = hdnnp.Potential(write_potential(tmp_path / "pot"), warn=False)
    atoms = random_cluster(seed=6)
    r0 = pot.evaluate(atoms, native=True, extrapolation="ignore")
    # translation
    t = atoms.copy()
    t.positions += np.array([1.3, -2.7, 0.4])
    rt = pot.evaluate(t, native=True, extrapolation="ignore")
    np.testing.assert_allclose(rt.energies, r0.energies, rtol=1e-11, atol=1e-11)
    np.testing.assert_allclose(rt.forces, r0.forces, rtol=0, atol=1e-10)
    # rotation (cell and positions)
    th = 0.7
    R = np.array([[np.cos(th), -np.sin(th), 0], [np.sin(th), np.cos(th), 0], [0, 0, 1]]) @ \
        np.array([[1, 0, 0], [0, np.cos(0.3), -np.sin(0.3)], [0, np.sin(0.3), np.cos(0.3)]])
    rot = atoms.copy()
    rot.set_cell(atoms.cell[:] @ R.T)
    rot.positions = atoms.positions @ R.T
    rr = pot.evaluate(rot, native=True, extrapolation="ignore")
    np.testing.assert_allclose(rr.energies, r0.energies, rtol=1e-11, atol=1e-11)
    np.testing.assert_allclose(rr.forces, r0.forces @ R.T, rtol=0, atol=1e-10)
    # permutation
    perm = np.random.default_rng(0).permutation(len(atoms))
    p = atoms[perm]
    rp = pot.evaluate(p, native=True, extrapolation="ignore")
    np.testing.assert_allclose(rp.energies, r0.energies[perm], rtol=1e-11, atol=1e-11)
    np.testing.assert_allclose(rp.forces, r0.forces[perm], rtol=0, atol=1e-10)
    # supercell: same per-atom energies and forces, extensive energy and virial
    sc = atoms.repeat((2, 1, 3))
    rs = pot.evaluate(sc, native=True, extrapolation="ignore")
    np.testing.assert_allclose(rs.energies, np.tile(r0.energies, 6), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(rs.forces, np.tile(r0.forces, (6, 1)), rtol=0, atol=1e-9)
    np.testing.assert_allclose(rs.virial, 6 * r0.virial, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(rs.stress, r0.stress, rtol=1e-9, atol=1e-12)


def test_threads_identical(tmp_path):
    d = write_potential(tmp_path / "pot")
    atoms = random_cluster(seed=7).repeat((3, 3, 3))
    r1 = hdnnp.Potential(d, warn=False, threads=1).evaluate(atoms, native=True, extrapolation="ignore")
    r2 = hdnnp.Potential(d, warn=False, threads=2).evaluate(atoms, native=True, extrapolation="ignore")
    assert r1.energy == r2.energy
    assert np.array_equal(r1.forces, r2.forces)
    assert np.array_equal(r1.virial, r2.virial)
    assert np.array_equal(r1.energies, r2.energies)


def test_cell_smaller_than_cutoff(tmp_path):
    """A 3 Angstrom triclinic cell with a 4.2 cutoff: many periodic images of every atom."""
    pot = hdnnp.Potential(write_potential(tmp_path / "pot"), warn=False)
    atoms = random_cluster(n_h=2, n_o=1, box=(3.0, 3.2, 3.4), tilt=(0.6, -0.5, 0.4), seed=11, dmin=0.8)
    check(pot, atoms)
    r = pot.evaluate(atoms, native=True, extrapolation="ignore")
    big = pot.evaluate(atoms.repeat((2, 3, 2)), native=True, extrapolation="ignore")
    np.testing.assert_allclose(big.energies, np.tile(r.energies, 12), rtol=1e-10, atol=1e-10)


def test_slab_free_surface(tmp_path):
    """pbc = (True, True, False): forces by finite differences, in-plane supercell invariance."""
    pot = hdnnp.Potential(write_potential(tmp_path / "pot"), warn=False)
    atoms = random_cluster(seed=12)
    atoms.pbc = (True, True, False)
    check(pot, atoms, stress=False)
    r = pot.evaluate(atoms, native=True, extrapolation="ignore", stress=False)
    big = pot.evaluate(atoms.repeat((2, 2, 1)), native=True, extrapolation="ignore", stress=False)
    np.testing.assert_allclose(big.energies, np.tile(r.energies, 4), rtol=1e-10, atol=1e-10)


def test_runner_scaling_layout(tmp_path):
    """RuNNer's 5-column scaling.data (no sigma, final energy line) gives the same model."""
    d = write_potential(tmp_path / "pot")
    atoms = random_cluster(seed=13)
    ref = hdnnp.Potential(d, warn=False).evaluate(atoms, native=True, extrapolation="ignore")
    lines = [l.split() for l in (d / "scaling.data").read_text().splitlines() if not l.startswith("#")]
    (d / "scaling.data").write_text("\n".join(" ".join(t[:5]) for t in lines) + "\n -1.0 1.0\n")
    r = hdnnp.Potential(d, warn=False).evaluate(atoms, native=True, extrapolation="ignore")
    assert r.energy == ref.energy
    assert np.array_equal(r.forces, ref.forces)


def test_element_specific_architecture(tmp_path):
    extra = "element_nodes_short O 1 4\nelement_activation_short O 2 s\n"
    d = write_potential(tmp_path / "pot", extra_lines=extra)
    # weights were written for the global architecture: the O file must now be refused ...
    with pytest.raises(hdnnp.ModelFileError, match=r"weights\.008\.data: expected \d+ weights .*-4-5-1 of element O"):
        hdnnp.Potential(d, warn=False)
    # ... and with weights of the right size the element-specific network is used and differentiable.
    sizes, acts, _ = hdnnp._core.Model.load(str(d), False).architecture(1)
    assert sizes[1:] == [4, 5, 1] and acts == "tsl"
    n = sum((a + 1) * b for a, b in zip(sizes[:-1], sizes[1:]))
    (d / "weights.008.data").write_text("\n".join(f"{x:.17e}" for x in np.random.default_rng(1).normal(0, 0.7, n)))
    check(hdnnp.Potential(d, warn=False), random_cluster(seed=14))


def _with_jacobian(model, a):
    """(n, positions, species, neighbour list, Model.descriptor_jacobian) of structure a."""
    from hdnnp import _core

    species = np.array([model.elements.index(s) for s in a.get_chemical_symbols()], dtype=np.int32)
    pos = np.ascontiguousarray(a.positions, dtype=float)
    pbc = bool(a.pbc.all())
    nl = _core.neighbor_list(pos, np.ascontiguousarray(a.cell[:]) if pbc else None, [pbc] * 3, model.cutoff)[:4]
    return len(a), pos, species, nl, model.descriptor_jacobian(pos, species, *nl, threads=1)


def test_force_pass_from_given_dEdG_equals_the_jacobian(tmp_path):
    """Model.compute(dEdG=w) (the force pass of 3G/4G/CENT: no value pass before it, so the
    angular kinds compute their r_jk factors instead of replaying them) equals -J^T w from the
    full descriptor Jacobian, for every symmetry-function type, periodic and not."""
    from hdnnp import _core
    from synth import random_cluster, write_potential

    d = write_potential(tmp_path / "all")
    model = _core.Model.load(str(d))
    rng = np.random.default_rng(4)
    for pbc in (False, True):
        n, pos, species, nl, J = _with_jacobian(model, random_cluster(seed=8, pbc=pbc))
        w = rng.normal(size=len(J["G"]))
        F_ref = np.zeros((n, 3))
        W_ref = np.zeros((3, 3))
        for i in range(n):
            wi = w[J["g_offsets"][i]:J["g_offsets"][i + 1]]
            for p in range(J["pair_offsets"][i], J["pair_offsets"][i + 1]):
                Jp = J["dG"][J["dg_offsets"][p]:J["dg_offsets"][p + 1]].reshape(-1, 3)
                v = Jp.T @ wi                     # dE_i / d(r_j + shift - r_i)
                F_ref[J["pair_atom"][p]] -= v
                F_ref[i] += v
                W_ref -= np.outer(J["pair_d"][p], v)
        out = model.compute(pos, species, n, *nl, forces=True, virial=True, dEdG=w, threads=2)
        np.testing.assert_allclose(out["forces"], F_ref, rtol=0, atol=1e-10 * np.abs(F_ref).max())
        np.testing.assert_allclose(out["virial"], W_ref, rtol=0, atol=1e-10 * np.abs(W_ref).max())


def test_descriptor_jvp_equals_the_jacobian_contraction(tmp_path):
    """Model.descriptor_jvp (training's J u without storing J) equals sum_p J_p u_p over each
    centre's pairs, u_p = lam_i - lam_j - M^T d_p, for every symmetry-function type and two
    cutoff types, periodic and not: with every atom moving and a strain (the dense triplet
    loops), and with one atom moving (a Kalman force observation: the sparse loops and the
    skipped centres)."""
    from hdnnp import _core
    from synth import random_cluster, write_potential

    rng = np.random.default_rng(7)
    for cutoff_type, alpha in ((6, 0.0), (2, 0.3)):
        d = write_potential(tmp_path / f"all{cutoff_type}", cutoff_type=cutoff_type, alpha=alpha)
        model = _core.Model.load(str(d))
        for pbc in (False, True):
            n, pos, species, nl, J = _with_jacobian(model, random_cluster(seed=9, pbc=pbc))
            one = np.zeros((n, 3))
            one[3, 1] = 1.0
            for lam, M in ((rng.normal(size=(n, 3)), rng.normal(size=(3, 3))), (rng.normal(size=(n, 3)), None),
                           (one, None)):
                V_ref = np.zeros(len(J["G"]))
                for i in range(n):
                    vi = V_ref[J["g_offsets"][i]:J["g_offsets"][i + 1]]
                    for p in range(J["pair_offsets"][i], J["pair_offsets"][i + 1]):
                        Jp = J["dG"][J["dg_offsets"][p]:J["dg_offsets"][p + 1]].reshape(-1, 3)
                        u = lam[i] - lam[J["pair_atom"][p]]
                        if M is not None:
                            u = u - M.T @ J["pair_d"][p]
                        vi += Jp @ u
                V, vo = model.descriptor_jvp(pos, species, *nl, directions=lam, strain=M, threads=2)
                np.testing.assert_array_equal(vo, J["g_offsets"])
                np.testing.assert_allclose(V, V_ref, rtol=0, atol=1e-10 * np.abs(V_ref).max())
                if M is None and lam is one:
                    moved = np.flatnonzero(np.abs(V_ref) > 0)
                    assert 0 < len(moved) < len(V_ref)   # centres away from atom 3 add nothing
    with pytest.raises(_core.InputError, match="atom 2 has a non-finite"):
        lam = np.zeros((n, 3))
        lam[2, 0] = np.nan
        model.descriptor_jvp(pos, species, *nl, directions=lam)
