"""1st-generation mode: one network on inverse distances of a fixed small system."""
import numpy as np
import pytest
from ase import Atoms
from ase.calculators.lj import LennardJones

from hdnnp.training.data import DataError
from hdnnp.training.first_generation import FirstGenerationNNP, inverse_distances, train_first_generation


def lj_trimers(n=120, seed=0, noise=0.06):
    """Ar3 near its equilateral minimum (Lennard-Jones, ASE units), all distances >= 1 sigma."""
    rng = np.random.default_rng(seed)
    calc = LennardJones(sigma=1.0, epsilon=1.0, rc=5.0)
    base = np.array([[0.0, 0.0, 0.0], [1.12, 0.0, 0.0], [0.56, 0.97, 0.0]])
    out = []
    while len(out) < n:
        a = Atoms("Ar3", positions=base + rng.normal(0, noise, (3, 3)))
        if a.get_all_distances()[np.triu_indices(3, 1)].min() < 1.0:
            continue
        a.calc = calc
        e, f = a.get_potential_energy(), a.get_forces()
        a.calc = None
        a.info["energy"] = e
        a.arrays["ref_forces"] = f
        out.append(a)
    return out


def test_inverse_distance_jacobian():
    pos = np.random.default_rng(1).normal(size=(4, 3))
    D, J = inverse_distances(pos)
    h = 1e-6
    for n in range(4):
        for c in range(3):
            p, m = pos.copy(), pos.copy()
            p[n, c] += h
            m[n, c] -= h
            np.testing.assert_allclose(J[:, n, c], (inverse_distances(p)[0] - inverse_distances(m)[0]) / (2 * h),
                                       rtol=1e-6, atol=1e-9)


def test_lj_trimer_training_forces_and_reload(tmp_path):
    data = lj_trimers()
    model, hist = train_first_generation(data, hidden=(12, 12), epochs=300, seed=2)
    first, last = hist[0], hist[-1]
    # stated errors (LJ units; force rms of the data 5.5): energy per atom and forces, test set
    assert last[2] < 0.1 * first[2] and last[2] < 0.02
    assert last[4] < 0.2 * first[4] and last[4] < 0.5
    # forces are the exact gradient of the model's energy
    a = data[0]
    e, f = model.evaluate(a.positions)
    h = 1e-6
    for n in range(3):
        for c in range(3):
            p, m = a.positions.copy(), a.positions.copy()
            p[n, c] += h
            m[n, c] -= h
            assert f[n, c] == pytest.approx(-(model.evaluate(p)[0] - model.evaluate(m)[0]) / (2 * h), rel=1e-6, abs=1e-8)
    model.save(tmp_path / "lj3.npz")
    back = FirstGenerationNNP.load(tmp_path / "lj3.npz")
    b = a.copy()
    b.calc = back.calculator()
    assert b.get_potential_energy() == pytest.approx(e, rel=1e-14)
    np.testing.assert_allclose(b.get_forces(), f, rtol=1e-13, atol=1e-14)
    # invariance: rotated and translated copies give the same energy
    b.rotate(37, (1, 2, 3), center=(0.3, 0, 0))
    b.translate((1.0, -2.0, 0.5))
    assert b.get_potential_energy() == pytest.approx(e, rel=1e-12)


def test_first_generation_refuses_other_systems():
    data = lj_trimers(5)
    bad = data[:4] + [Atoms("Ar4", positions=np.eye(4, 3) * 1.5)]
    bad[-1].info["energy"] = 0.0
    bad[-1].arrays["ref_forces"] = np.zeros((4, 3))
    with pytest.raises(DataError, match="same atoms in the same order"):
        train_first_generation(bad, epochs=1)


def test_loss_gradient_matches_finite_differences():
    from hdnnp.training.first_generation import loss_and_gradient

    data = lj_trimers(6)
    model, _ = train_first_generation(data, hidden=(5,), epochs=1, seed=3, test_fraction=0.0)
    D = np.array([inverse_distances(a.positions)[0] for a in data])
    J = np.array([inverse_distances(a.positions)[1] for a in data])
    X = (D - model.shift) * model.factor
    E = np.array([a.info["energy"] for a in data])
    F = np.array([a.arrays["ref_forces"] for a in data])
    loss, grad = loss_and_gradient(model, X, J, E, F, 0.7)
    p0 = model.network.get_parameters()
    fd = np.zeros_like(p0)
    for k in range(len(p0)):
        vals = []
        for sgn in (1, -1):
            p = p0.copy()
            p[k] += sgn * 1e-6
            model.network.set_parameters(p)
            vals.append(loss_and_gradient(model, X, J, E, F, 0.7)[0])
        fd[k] = (vals[0] - vals[1]) / 2e-6
    model.network.set_parameters(p0)
    np.testing.assert_allclose(grad, fd, rtol=1e-5, atol=1e-7 * np.abs(fd).max())
