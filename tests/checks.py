"""Shared numerical checks of the tests."""
import numpy as np
import pytest


def assert_virial_is_strain_derivative(energy, atoms, W, h=1e-5, atol=1e-7):
    """W (3 x 3) against -dE/d(eps) by central differences of energy(atoms) under symmetric
    strains eps of the cell and positions (all six components)."""
    cell0 = np.array(atoms.cell)
    for a_, b_ in ((0, 0), (1, 1), (2, 2), (0, 1), (1, 2), (0, 2)):
        e = []
        for sgn in (1, -1):
            eps = np.zeros((3, 3))
            eps[a_, b_] = eps[b_, a_] = sgn * h / 2 if a_ != b_ else sgn * h
            t = np.eye(3) + eps
            b = atoms.copy()
            b.set_cell(cell0 @ t, scale_atoms=False)
            b.positions = atoms.positions @ t
            e.append(energy(b))
        assert -(e[0] - e[1]) / (2 * h) == pytest.approx(0.5 * (W[a_, b_] + W[b_, a_]), abs=atol), (a_, b_)
