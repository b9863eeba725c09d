"""Training networks: forward equals the C++ core; weight gradients against finite differences."""
import numpy as np
import pytest

from hdnnp.training.network import ElementNetwork, activation, initialise

LETTERS = "ltspgcSeh"


@pytest.mark.parametrize("letter", LETTERS + "r")
def test_activation_derivatives(letter):
    x = np.linspace(-2.3, 2.1, 17) + 0.013
    f, d1, d2 = activation(letter, x)
    h = 1e-6
    fp, d1p, _ = activation(letter, x + h)
    fm, d1m, _ = activation(letter, x - h)
    np.testing.assert_allclose(d1, (fp - fm) / (2 * h), rtol=1e-6, atol=1e-8)
    if letter != "r":
        np.testing.assert_allclose(d2, (d1p - d1m) / (2 * h), rtol=1e-5, atol=1e-7)


def make(acts="tsl", normalize=False, seed=0):
    net = ElementNetwork([5, 4, 3, 1], acts, normalize)
    initialise(net, np.random.default_rng(seed), "uniform", -0.8, 0.8)
    return net


@pytest.mark.parametrize("acts,normalize", [("tsl", False), ("pgl", True), ("cSh", False), ("tel", True)])
def test_input_gradient_and_weight_gradients(acts, normalize):
    rng = np.random.default_rng(1)
    net = make(acts, normalize)
    X = rng.normal(size=(6, 5))
    a = rng.normal(size=6)
    V = rng.normal(size=(6, 5))
    E, g, cache = net.forward(X)
    h = 1e-6
    for k in range(5):  # input gradient
        Xp, Xm = X.copy(), X.copy()
        Xp[:, k] += h
        Xm[:, k] -= h
        np.testing.assert_allclose(g[:, k], (net.forward(Xp, False)[0] - net.forward(Xm, False)[0]) / (2 * h),
                                   rtol=1e-6, atol=1e-9)
    grad = net.loss_gradient(cache, a, V)
    p0 = net.get_parameters()

    def objective(p):
        net.set_parameters(p)
        E, g, _ = net.forward(X)
        return a @ E + np.sum(g * V)

    fd = np.zeros_like(p0)
    for k in range(len(p0)):
        pp, pm = p0.copy(), p0.copy()
        pp[k] += h
        pm[k] -= h
        fd[k] = (objective(pp) - objective(pm)) / (2 * h)
    net.set_parameters(p0)
    np.testing.assert_allclose(grad, fd, rtol=1e-5, atol=1e-7 * np.abs(fd).max())


def test_parameters_match_core_order(tmp_path):
    """n2p2 weight order: a network written in that order and loaded by the C++ core gives the
    same energies and input gradients."""
    import hdnnp
    from synth import random_cluster, write_potential

    d = write_potential(tmp_path / "pot", types=[2], hidden=(4, 3), acts="t s l")
    pot = hdnnp.Potential(d, warn=False)
    p = np.loadtxt(tmp_path / "pot" / "weights.001.data", usecols=0)
    atoms = random_cluster(seed=3)
    G = pot.descriptors(atoms, scaled=True)
    h_rows = np.array([G[i] for i, s in enumerate(atoms.get_chemical_symbols()) if s == "H"])
    net = ElementNetwork([h_rows.shape[1], 4, 3, 1], "tsl")
    net.set_parameters(p)
    np.testing.assert_allclose(net.get_parameters(), p)
    E, _, _ = net.forward(h_rows)
    ref = pot.evaluate(atoms, native=True, extrapolation="ignore", forces=False, stress=False).energies
    np.testing.assert_allclose(E, ref[np.array(atoms.get_chemical_symbols()) == "H"], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("acts,normalize", [("tsl", False), ("pgl", True), ("cSh", False), ("tel", True), ("rll", False)])
def test_core_network_equals_numpy_reference(acts, normalize):
    """The C++ batched forward/gradient equal the independent numpy implementation."""
    rng = np.random.default_rng(2)
    net = make(acts, normalize, seed=4)
    X, a, V = rng.normal(size=(7, 5)), rng.normal(size=7), rng.normal(size=(7, 5))
    E, g, cache = net.forward(X)
    Er, gr, cr = net.forward_reference(X)
    np.testing.assert_allclose(E, Er, rtol=1e-13, atol=1e-14)
    np.testing.assert_allclose(g, gr, rtol=1e-12, atol=1e-14)
    for seeds in ((a, V), (a, None), (None, V)):
        np.testing.assert_allclose(net.loss_gradient(cache, *seeds), net.loss_gradient_reference(cr, *seeds),
                                   rtol=1e-11, atol=1e-13)
