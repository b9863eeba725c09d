"""CENT training: the electronegativity networks and the hardness J_Z = h_Z^2 fitted to energies
(hdnnp.cent). The energy is the minimum of the charge-equilibration functional, so its gradient
needs no adjoint solve (the envelope theorem): dE/dw = sum_i Q_i dchi_i/dw and
dE/dh_Z = h_Z sum_{i in Z} Q_i^2. Same loop, optimisers (Kalman: one update per structure on the
energy per atom; Adam), checkpoints, learning curve and output files as the 4G charge stage:
its weightse/hardness/scaling/input.nn are a complete CENT potential.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import baseline as pair_baseline
from ..cent import Cent
from .data import DataError
from .fourth_generation import ChargeTrainer, _kkt, _solve


@dataclass
class EnergyEpochStats:
    epoch: int
    rmse_energy_train: float            # per atom, the potential's energy unit
    rmse_energy_test: float
    mae_energy_train: float
    mae_energy_test: float
    seconds: float = 0.0
    rmse_energy_validation: float = float("nan")
    mae_energy_validation: float = float("nan")


class CentTrainer(ChargeTrainer):
    """A CENT potential set up in `settings_dir/input.nn` (`nnp_generation cent`,
    global_*_electrostatic, fixed_gausswidth, initial_hardness) fitted to `atoms.info['energy']`
    (total charge atoms.info['charge'], default 0). Writes a complete CENT potential."""

    STATS = EnergyEpochStats
    CURVE, CHECKPOINT, UNITS = "learning-curve.out", "checkpoint.npz", "energy per atom, the potential's energy unit"
    INFO = ("training.json", {"mode": "cent"})   # (write: the 4G charge stage's files are a CENT potential)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # the ZBL pair baseline: the QEq energy is fitted to the reference minus it
        self.baseline, self._baseline_lines = pair_baseline.resolve(
            self.pot.model, [self.structures[k] for k in self.train_idx])

    def _potential(self):
        return Cent(self.settings_dir, weights=False, threads=self.config.threads)

    def _reference(self, atoms, label):
        e = atoms.info.get("energy")
        if e is None or not np.isfinite(e):
            raise DataError(f"{label}: {'no' if e is None else 'non-finite'} reference energy")
        return float(e), float(atoms.info.get("charge", 0.0))

    def data(self, k: int):
        d = self._data.get(k)
        if d is None:
            a, p, species = self._prepare(k)
            op, params = self.pot.electrostatics(a, species, "dense")
            e_ref, q_tot = self._ref[k]
            # what does not depend on the parameters: offsets and a charged cell's background
            const = float(self.pot.offsets[species].sum()) + self.pot.background_energy(a, q_tot, params)
            if self.baseline is not None:
                const += pair_baseline.compute(self.baseline, a, species, forces=False, virial=False)["energy"]
            d = self._data[k] = _CentData(p, species, op.dense(), e_ref, q_tot, const)
        return d

    def residual(self, k: int):
        d = self.data(k)
        n = len(d.species)
        chi, caches = self.outputs(d)
        J = self.h[d.species] ** 2
        Q = _solve(_kkt(d.A0, J), -chi, d.q_tot)
        E = chi @ Q + 0.5 * (J * Q) @ Q + 0.5 * Q @ (d.A0 @ Q) + d.const
        return np.array([(E - d.e_ref) / n]), (d, Q, caches)

    def residual_gradient(self, st, v: np.ndarray) -> np.ndarray:
        d, Q, caches = st
        c = float(v[0]) / len(d.species)
        g = [net.loss_gradient(caches[e], c * Q[d.prep.rows[e]], None) if len(d.prep.rows[e])
             else np.zeros(net.n_parameters) for e, net in enumerate(self.pot.elec)]
        dh = c * self.h * np.bincount(d.species, Q * Q, minlength=len(self.elements))
        return np.concatenate(g + [dh])

class _CentData:
    def __init__(self, prep, species, A0, e_ref, q_tot, const):
        self.prep, self.species, self.A0, self.e_ref, self.q_tot, self.const = prep, species, A0, e_ref, q_tot, const
