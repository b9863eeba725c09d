"""First-generation NNP (Blank et al., J. Chem. Phys. 103, 4129 (1995)): one network maps a
fixed-size global descriptor of a small system to its total energy.

The descriptor is the vector of inverse distances 1/r_ij (i < j) of a system with a fixed number
and order of atoms: invariant to translation and rotation, not to permutations or size (the
limits that motivated the 2nd generation). Forces are the exact gradient,
F = -J^T dE/dD with J = dD/dr, and training uses the same network gradients (energy and force
losses in one reverse pass) and Adam as the 2G trainer. Saved as .npz (weights, scaling, atoms).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import List, Optional, Sequence

import numpy as np

from .data import DataError
from .network import ElementNetwork, initialise


def inverse_distances(positions: np.ndarray):
    """D (P,) = 1/r_ij over i < j, and dD/dr as (P, N, 3)."""
    n = len(positions)
    i, j = np.triu_indices(n, 1)
    d = positions[j] - positions[i]
    r = np.linalg.norm(d, axis=1)
    if np.any(r < 1e-8):
        k = int(np.argmin(r))
        raise DataError(f"atoms {i[k]} and {j[k]} overlap")
    D = 1.0 / r
    g = -d / r[:, None] ** 3          # dD/d(r_j)
    J = np.zeros((len(D), n, 3))
    J[np.arange(len(D)), j] = g
    J[np.arange(len(D)), i] = -g
    return D, J


@dataclass
class FirstGenerationNNP:
    symbols: List[str]
    network: ElementNetwork
    shift: np.ndarray           # scaled D = (D - shift) * factor
    factor: np.ndarray
    e_mean: float = 0.0         # energies are learned relative to this

    def evaluate(self, positions: np.ndarray):
        """Energy and forces (the data's units)."""
        D, J = inverse_distances(np.asarray(positions, dtype=float))
        X = ((D - self.shift) * self.factor)[None, :]
        E, g, _ = self.network.forward(X)
        dEdD = g[0] * self.factor
        return float(E[0]) + self.e_mean, -np.einsum("p,pnc->nc", dEdD, J)

    def save(self, path):
        tmp = os.fspath(path) + ".tmp.npz"
        np.savez(tmp, symbols=np.array(self.symbols), sizes=np.array(self.network.sizes),
                 activations=np.array(self.network.activations), parameters=self.network.get_parameters(),
                 shift=self.shift, factor=self.factor, e_mean=np.array(self.e_mean))
        os.replace(tmp, path)

    @classmethod
    def load(cls, path):
        with np.load(path) as z:
            net = ElementNetwork([int(s) for s in z["sizes"]], str(z["activations"]))
            net.set_parameters(z["parameters"])
            return cls([str(s) for s in z["symbols"]], net, z["shift"], z["factor"], float(z["e_mean"]))

    def calculator(self):
        from ase.calculators.calculator import Calculator, all_changes

        model = self

        class FirstGenerationCalculator(Calculator):
            implemented_properties = ["energy", "free_energy", "forces"]

            def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
                Calculator.calculate(self, atoms, properties, system_changes)
                if self.atoms.get_chemical_symbols() != model.symbols:
                    raise DataError("a 1G potential describes one system: the atoms must be "
                                    f"{' '.join(model.symbols)} in this order")
                e, f = model.evaluate(self.atoms.positions)
                self.results.update(energy=e, free_energy=e, forces=f)

        return FirstGenerationCalculator()


def loss_and_gradient(model: FirstGenerationNNP, X: np.ndarray, J: np.ndarray, E: np.ndarray, F: np.ndarray,
                      force_weight: float):
    """Loss mean((dE/N)^2) + w_F mean(dF^2) over the structures given (scaled descriptors X,
    dD/dr J) and its gradient with respect to the network parameters (n2p2 order)."""
    net, n = model.network, len(model.symbols)
    e, g, cache = net.forward(X)
    f = -np.einsum("sp,spnc->snc", g * model.factor, J)
    de = e + model.e_mean - E
    dF = f - F
    loss = np.mean((de / n) ** 2) + force_weight * np.mean(dF ** 2)
    a = 2.0 * de / len(E) / n ** 2
    lam = 2.0 * force_weight * dF / dF.size                  # dL/dF
    V = -np.einsum("snc,spnc->sp", lam, J) * model.factor    # dL/dg, since F = -J^T (factor g)
    return loss, net.loss_gradient(cache, a, V)


def train_first_generation(structures: Sequence, hidden: Sequence[int] = (20, 20), activation: str = "t",
                           epochs: int = 300, learning_rate: float = 3e-3, batch_size: int = 8,
                           force_weight: float = 1.0, seed: int = 1, test_fraction: float = 0.1):
    """Train a 1G NNP on structures of one system (same atoms, same order) with references in
    atoms.info['energy'] and atoms.arrays['ref_forces']. Returns (model, history) where history
    holds (epoch, energy RMSE train, test, force RMSE train, test)."""
    symbols = structures[0].get_chemical_symbols()
    for k, a in enumerate(structures):
        if a.get_chemical_symbols() != symbols:
            raise DataError(f"structure {k}: a 1G potential needs the same atoms in the same order "
                            f"({' '.join(symbols)}) in every structure")
        if "energy" not in a.info or "ref_forces" not in a.arrays:
            raise DataError(f"structure {k}: reference energy and forces are needed")
    rng = np.random.default_rng(seed)
    data = [inverse_distances(a.positions) for a in structures]
    D = np.array([d for d, _ in data])
    J = np.array([j for _, j in data])                      # (S, P, N, 3)
    E = np.array([a.info["energy"] for a in structures])
    F = np.array([a.arrays["ref_forces"] for a in structures])
    perm = rng.permutation(len(structures))
    n_test = int(round(test_fraction * len(structures)))
    test, train = np.sort(perm[:n_test]), np.sort(perm[n_test:])
    shift = D[train].mean(axis=0)
    spread = D[train].std(axis=0)
    factor = np.where(spread > 0, 1.0 / np.where(spread > 0, spread, 1.0), 0.0)
    net = ElementNetwork([D.shape[1], *hidden, 1], activation * len(hidden) + "l")
    initialise(net, rng, "nguyen-widrow")
    model = FirstGenerationNNP(symbols, net, shift, factor, float(E[train].mean()))
    X = (D - shift) * factor
    m = np.zeros(net.n_parameters)
    v = np.zeros(net.n_parameters)
    step = 0

    def rmse(idx):
        if len(idx) == 0:
            return np.nan, np.nan
        e, g, _ = net.forward(X[idx])
        e = e + model.e_mean
        f = -np.einsum("sp,spnc->snc", g * factor, J[idx])
        return float(np.sqrt(np.mean((e - E[idx]) ** 2)) / len(symbols)), float(np.sqrt(np.mean((f - F[idx]) ** 2)))

    history = [(0, *rmse(train)[:1], rmse(test)[0], rmse(train)[1], rmse(test)[1])]
    for epoch in range(1, epochs + 1):
        order = rng.permutation(train)
        for b in range(0, len(order), batch_size):
            idx = order[b:b + batch_size]
            _, grad = loss_and_gradient(model, X[idx], J[idx], E[idx], F[idx], force_weight)
            step += 1
            m = 0.9 * m + 0.1 * grad
            v = 0.999 * v + 0.001 * grad * grad
            net.set_parameters(net.get_parameters()
                               - learning_rate * (m / (1 - 0.9 ** step)) / (np.sqrt(v / (1 - 0.999 ** step)) + 1e-8))
        tr, te = rmse(train), rmse(test)
        history.append((epoch, tr[0], te[0], tr[1], te[1]))
    return model, history
