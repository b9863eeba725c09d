"""4G training in two stages (THEORY.md B.6, n2p2's `nnp-train 1` and `nnp-train 2`).

Stage 1 (`ChargeTrainer`): the electronegativity networks and the element hardness J_Z = h_Z^2
fitted to reference charges. The charges are the QEq solution under the structure's total
charge; the gradient of any loss L(Q) comes from one adjoint solve per structure,
K v = [dL/dQ; 0]: dL/dchi = -v, dL/dJ_Z = -sum_{i in Z} v_i Q_i (K is symmetric). The QEq matrix
of each structure is computed once (positions do not change) and factorised per update.

Stage 2 (`ShortTrainer`): the short networks on [G_i, Q_i] fitted to E_ref and F_ref with the
stage-1 charges held fixed. Per structure, once: Q, E_elec, F_elec (the electrostatic force
with the charges' response) and dQ/dR (N x 3N, one factorisation, 3N right-hand sides). The
force then is F = F_sf(short, fixed Q) + F_elec - (dQ/dR)^T dE_short/dQ, linear in the short
networks' input gradients, so its weight gradient is the 2G one with one more input column.
"""
from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import asdict, astuple, dataclass
from typing import List, Optional, Sequence

import numpy as np

from .. import _core
from .. import baseline as pair_baseline
from ..fourth_generation import FourthGeneration
from ..long_range import _column, load_weights
from .data import DataError, Prepared, prepare, species_of
from . import parallel
from .kalman import KalmanFilter
from .network import ElementNetwork, initialise
from .trainer import (SCALING_NONE, Trainer, TrainingConfig, adam_update, format_scaling, format_weights,
                      load_run_state, restore_optimizer_state, run_state, save_state, scaling_statistics,
                      checkpoint_due, kalman_streams, over_time, scaling_transform, split_line, split_sizes, split_structures,
                      write_learning_curve)


def _kkt(A0: np.ndarray, J: np.ndarray):
    """The core's charge equilibration [[A0 + diag J, 1], [1^T, 0]], factorised once (the same
    solver as prediction's)."""
    return _core.QEqDense(np.ascontiguousarray(A0), np.ascontiguousarray(J, dtype=float))


def _solve(qeq, rhs: np.ndarray, constraint: float = 0.0) -> np.ndarray:
    """First N entries of K^-1 [rhs; constraint] (rhs: (N,) or (N, m))."""
    return qeq.solve(np.ascontiguousarray(rhs), constraint)


def reference_charges(atoms, label: str) -> tuple:
    """(reference charges, total charge) of a training structure; the total charge is
    atoms.info['charge'] or, without it, the rounded sum of the reference charges."""
    q = atoms.arrays.get("ref_charges")
    if q is None:
        raise DataError(f"{label}: no reference charges (atoms.arrays['ref_charges'])")
    q = np.asarray(q, dtype=float)
    if not np.isfinite(q).all():
        i = int(np.flatnonzero(~np.isfinite(q))[0])
        raise DataError(f"{label}: atom {i} has a non-finite reference charge")
    total = float(atoms.info["charge"]) if "charge" in atoms.info else float(np.round(q.sum()))
    # Partitioned charges (Hirshfeld) do not sum exactly to the total (n2p2's water set: 2e-4 e);
    # a difference near an elementary charge is a wrong charge state.
    if abs(q.sum() - total) > 0.1:
        raise DataError(f"{label}: the reference charges sum to {q.sum():.8g}, not to the structure's total "
                        f"charge {total:.8g}")
    return q, total


def _check_4g_structure(atoms, label, name="4G"):
    pbc = np.asarray(atoms.pbc, dtype=bool)
    if pbc.any() and not pbc.all():
        raise DataError(f"{label}: {name} structures must be periodic in all three directions or in none "
                        f"(pbc = {pbc.tolist()})")


def _total_charge(atoms) -> float:
    """info['charge'], else the rounded sum of the reference charges, else 0."""
    if "charge" in atoms.info:
        return float(atoms.info["charge"])
    return float(np.round(np.sum(atoms.arrays.get("ref_charges", 0.0))))


def _elec_gradients(potential, X_by_el):
    """chi and dchi/dG (scaled inputs) per element."""
    return [potential.elec[e].forward(X, True)[:2] if len(X) else (np.zeros(0), np.zeros((0, X.shape[1])))
            for e, X in enumerate(X_by_el)]


@dataclass
class ChargeEpochStats:
    epoch: int
    rmse_charge_train: float            # per atom, elementary charges
    rmse_charge_test: float
    mae_charge_train: float
    mae_charge_test: float
    seconds: float = 0.0
    rmse_charge_validation: float = float("nan")
    mae_charge_validation: float = float("nan")


@dataclass
class _ChargeData:
    prep: Prepared                      # scaled G per element (no derivatives)
    species: np.ndarray
    A0: np.ndarray                      # QEq matrix without hardness
    q_ref: np.ndarray
    q_tot: float


class ChargeTrainer:
    """Stage 1: the electronegativity networks and hardness of the 4G potential set up in
    `settings_dir/input.nn` (architecture, fixed_gausswidth, screening, Ewald, initial_hardness)
    fitted to `atoms.arrays['ref_charges']`. Kalman: one update per structure, observation
    y = |Q - Q_ref| with target 0 (n2p2); Adam: loss sum |Q - Q_ref|^2 / sum N per batch.
    Charges use the n2p2-identical Ewald parameters (as nnp-train does)."""

    def __init__(self, settings_dir, structures: Sequence, config: Optional[TrainingConfig] = None):
        self.config = config or TrainingConfig()
        self.settings_dir = os.fspath(settings_dir)
        self.pot = self._potential()
        self.model = self._charge_model()
        self.elements = list(self.pot.elements)
        self.structures = list(structures)
        if not self.structures:
            raise DataError("no training structures")
        self._ref = []
        for k, a in enumerate(self.structures):
            _check_4g_structure(a, f"structure {k}", self.pot.NAME)
            species_of(a, self.elements, f"structure {k}")
            self._ref.append(self._reference(a, f"structure {k}"))
        self.train_idx, self.val_idx, self.test_idx = split_structures(self.structures, self.config)
        self.rng = np.random.default_rng(self.config.seed)
        for net in self.pot.elec:
            initialise(net, self.rng, self.config.init, self.config.weights_min, self.config.weights_max)
        # 4G: J = h^2 stays positive (3G has no hardness: h is empty)
        self.h = np.sqrt(getattr(self.pot, "hardness", np.zeros(0)))
        self.stats = None
        self.transform = None
        self._data = {}
        self.history: List[ChargeEpochStats] = []
        self.best_parameters, self.best_epoch, self.best_score, self.epoch = None, -1, np.inf, 0
        self._kf = None
        self._adam = None
        self._resume_state = None
        self._baseline_lines = None   # hdnnp_zbl lines resolved from the data (CENT)
        self.comm = parallel.world()

    # -- what the generations differ in ----------------------------------------------------------
    SCALING_FILE = "scaling.data"
    STATS = ChargeEpochStats
    CURVE, CHECKPOINT, UNITS = "learning-curve-charges.out", "checkpoint-charges.npz", "charges per atom, elementary charges"
    INFO = ("training-charges.json", {"stage": 1})   # (file, what it says of the run)

    def _reference(self, atoms, label):
        return reference_charges(atoms, label)

    def _potential(self):
        return FourthGeneration(self.settings_dir, weights=False, threads=self.config.threads)

    def _charge_model(self):
        """The core model of the charge networks' descriptors."""
        return self.pot.model

    def _set_transform(self, transform):
        self.transform = self.pot.transform = transform

    # -- data ----------------------------------------------------------------------------------
    def compute_scaling(self):
        path = os.path.join(self.settings_dir, self.SCALING_FILE)
        if self.model.scaling_mode != SCALING_NONE and os.path.exists(path):
            self.stats = [{k: np.asarray(self.model.scaling(e)[k]) for k in ("min", "max", "mean", "sigma")}
                          for e in range(len(self.elements))]
        else:
            # from the training structures only: validation and test data make no choice (each
            # process of a data-parallel run its own, the statistics summed)
            mine = parallel.owned(self.train_idx, self.comm.rank, self.comm.size)
            preps = [prepare(self.model, self.structures[k], f"structure {k}", jacobian=False,
                             threads=self.config.threads) for k in mine]
            self.stats = scaling_statistics(preps, len(self.elements), self.comm)
        self._set_transform(scaling_transform(self.stats, self.model.scaling_mode, self.model.scale_min,
                                              self.model.scale_max))
        return self.stats

    def _prepare(self, k: int):
        """(structure k, its scaled descriptors, its species)."""
        a = self.structures[k]
        p = prepare(self.model, a, f"structure {k}", jacobian=False, threads=self.config.threads)
        p.scale(self.transform)
        return a, p, species_of(a, self.elements, f"structure {k}")

    def data(self, k: int) -> _ChargeData:
        d = self._data.get(k)
        if d is None:
            a, p, species = self._prepare(k)
            op, _ = self.pot.electrostatics(a, species, "dense")
            q_ref, q_tot = self._ref[k]
            d = self._data[k] = _ChargeData(p, species, op.dense(), q_ref, q_tot)
        return d

    # -- model ---------------------------------------------------------------------------------
    def parameters(self) -> np.ndarray:
        """Electronegativity network weights (n2p2 order, element by element), then h per element."""
        return np.concatenate([n.get_parameters() for n in self.pot.elec] + [self.h])

    def set_parameters(self, w: np.ndarray):
        sizes = np.cumsum([n.n_parameters for n in self.pot.elec])
        for n, p in zip(self.pot.elec, np.split(w[:sizes[-1]], sizes[:-1])):
            n.set_parameters(p)
        self.h = np.array(w[sizes[-1]:], dtype=float)

    def outputs(self, d):
        """The element networks' outputs (chi in 4G, q in 3G) for a structure's data, and their
        caches for the weight gradients."""
        out, caches = np.zeros(len(d.species)), {}
        for e, rows in d.prep.rows.items():
            if len(rows):
                out[rows], _, caches[e] = self.pot.elec[e].forward(d.prep.G[e], False)
        return out, caches

    def charges(self, k: int):
        """QEq charges of structure k with the current parameters, and what gradients need."""
        d = self.data(k)
        chi, caches = self.outputs(d)
        lu = _kkt(d.A0, self.h[d.species] ** 2)
        Q = _solve(lu, -chi, d.q_tot)
        return Q, (d, lu, caches)

    def gradient(self, Q, state, dLdQ: np.ndarray) -> np.ndarray:
        """d/dparameters of a loss with derivative dL/dQ, by one adjoint solve."""
        d, lu, caches = state
        v = _solve(lu, dLdQ)
        g = []
        for e, net in enumerate(self.pot.elec):
            rows = d.prep.rows[e]
            g.append(net.loss_gradient(caches[e], -v[rows], None) if len(rows) else np.zeros(net.n_parameters))
        dJ = np.bincount(d.species, -v * Q, minlength=len(self.elements))
        return np.concatenate(g + [2.0 * self.h * dJ])

    def residual(self, k: int):
        """(prediction - reference of structure k, state for residual_gradient): the charges."""
        Q, state = self.charges(k)
        return Q - state[0].q_ref, (Q, state)

    def residual_gradient(self, st, v: np.ndarray) -> np.ndarray:
        """v^T d(residual)/d(parameters)."""
        return self.gradient(st[0], st[1], v)

    def errors(self, ks: Sequence[int]):
        """(RMSE, MAE) of the residuals (charges per atom) over structures ks."""
        if len(ks) == 0:
            return np.nan, np.nan
        mine = [self.residual(k)[0] for k in parallel.owned(ks, self.comm.rank, self.comm.size)]
        dq = np.concatenate(self.comm.gather_all(np.concatenate(mine) if mine else np.zeros(0)))
        return float(np.sqrt(np.mean(dq ** 2))), float(np.mean(np.abs(dq)))

    # -- training ------------------------------------------------------------------------------
    def _record(self, epoch, seconds):
        tr, te, va = self.errors(self.train_idx), self.errors(self.test_idx), self.errors(self.val_idx)
        st = self.STATS(epoch, tr[0], te[0], tr[1], te[1], seconds, va[0], va[1])
        self.history.append(st)
        return st

    def _n_updates(self):
        return max(1, int(round(self.config.charge_fraction * len(self.train_idx))))

    def train(self, output_dir=None, progress: bool = True, log=print) -> List[ChargeEpochStats]:
        cfg = self.config
        root = self.comm.rank == 0   # (data-parallel: one process writes and reports)
        if not root:
            progress, log = False, (lambda *a, **k: None)
        if self.stats is None:
            self.compute_scaling()
        if cfg.optimizer not in ("adam", "kalman"):
            raise ValueError(f"unknown optimizer {cfg.optimizer!r} (adam, kalman)")
        n_par = len(self.parameters())
        self._adam = {"m": np.zeros(n_par), "v": np.zeros(n_par), "step": 0, "lr": cfg.learning_rate}
        # (every process keeps the whole, small, covariance of the charge networks)
        self._kf = (KalmanFilter(n_par, cfg.kalman, -(-self._n_updates() // kalman_streams(cfg, self.comm)))
                    if cfg.optimizer == "kalman" else None)
        if self._resume_state is not None:
            st = self._resume_state
            restore_optimizer_state(self, st)
            self._adam["m"], self._adam["v"] = st["adam_m"], st["adam_v"]
            self._resume_state = None
        log(split_line(self))
        if self.comm.size > 1:
            log(f"data-parallel over {self.comm.size} MPI processes")
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=cfg.epochs, initial=self.epoch, desc="train charges", unit="epoch")
        t_start, last = time.perf_counter(), 0.0
        if not self.history:
            self._record(0, 0.0)
        for epoch in range(self.epoch + 1, cfg.epochs + 1):
            if over_time(cfg, t_start, last, self.comm):
                log(f"time limit of {cfg.time_limit:g} s: stopping after epoch {self.epoch} (best: epoch "
                    f"{self.best_epoch})")
                if output_dir is not None:
                    self.checkpoint(os.path.join(output_dir, self.CHECKPOINT))
                break
            t0 = time.perf_counter()
            if cfg.optimizer == "kalman":
                self._epoch_kalman()
            else:
                self._epoch_adam()
            st = self._record(epoch, time.perf_counter() - t0)
            last = time.perf_counter() - t0
            # validation (else train) RMSE: the test set makes no choice
            score = astuple(st)[6 if len(self.val_idx) else 1]
            if score < self.best_score:
                self.best_score, self.best_parameters, self.best_epoch = score, self.parameters(), epoch
            self.epoch = epoch
            if bar:
                bar.update(1)
                bar.set_postfix(rmse=f"{astuple(st)[6]:.3g}")
            stop = cfg.patience is not None and epoch - self.best_epoch >= cfg.patience
            if output_dir is not None:
                if root:
                    self.write_learning_curve(os.path.join(output_dir, self.CURVE))
                if checkpoint_due(self, epoch, stop or epoch == cfg.epochs):
                    self.checkpoint(os.path.join(output_dir, self.CHECKPOINT))
            if stop:
                log(f"early stopping at epoch {epoch}: no better validation error since epoch {self.best_epoch}")
                break
        if bar:
            bar.close()
        if self.best_parameters is not None:
            self.set_parameters(self.best_parameters)
        if output_dir is not None and root:
            self.write(output_dir)
        return self.history

    def _epoch_kalman(self):
        """The epoch's Kalman updates, S observations each (n2p2's multi-stream update, as the 2G
        Trainer's; S = 1: one per update): stream j takes, in the epoch's order, the structures
        with index % S == j and runs on process j % P; the observations of an update are
        gathered, so every process makes the same update. One process with S streams takes the
        same steps. An observation: y = |Q - Q_ref| with target 0 (n2p2)."""
        w = self.parameters()
        order = self.rng.permutation(self.train_idx)
        comm, n_up, S = self.comm, self._n_updates(), kalman_streams(self.config, self.comm)
        parts = [[k for k in order if k % S == j] for j in range(S)]
        for u in range(0, n_up, S):
            mine = []
            for j in range(min(S, n_up - u)):
                if not parts[j] or j % comm.size != comm.rank:
                    continue
                dq, st = self.residual(parts[j][(u // S) % len(parts[j])])
                norm = float(np.linalg.norm(dq))
                if norm > 0.0:
                    mine.append(np.concatenate([[j, -norm], self.residual_gradient(st, dq / norm)]))
            rows = parallel.gathered_rows(comm, mine, len(w) + 2)
            if len(rows) == 0:
                continue
            w = self._kf.update_many(w, rows[:, 2:], rows[:, 1])
            self.set_parameters(w)

    def _epoch_adam(self):
        cfg, A = self.config, self._adam
        order = self.rng.permutation(self.train_idx)
        comm = self.comm
        for s in range(0, len(order), cfg.batch_size):
            ks = order[s:s + cfg.batch_size]
            if comm.size > 1:   # this process's structures of the batch; the sums over the processes
                res = [self.residual(k) for k in parallel.owned(ks, comm.rank, comm.size)]
                n_res = comm.sum([float(sum(len(r) for r, _ in res))])[0]
            else:
                res = [self.residual(k) for k in ks]
                n_res = sum(len(r) for r, _ in res)   # (atoms for charges)
            g = 0.0
            for r, st in res:
                g = g + self.residual_gradient(st, 2.0 * r / n_res)
            if comm.size > 1:
                g = comm.sum(np.zeros(len(A["m"])) + g)
            A["step"] += 1
            A["m"], A["v"], step = adam_update(A["m"], A["v"], g, A["step"], A["lr"], cfg)
            w = self.parameters() - step
            if len(self.h):
                w[-len(self.h):] = np.abs(w[-len(self.h):])   # J = h^2: the sign of h is free
            self.set_parameters(w)
        A["lr"] *= cfg.learning_rate_decay

    # -- checkpoints and output ----------------------------------------------------------------
    def checkpoint(self, path):
        state = run_state(self)
        if self.comm.rank != 0:   # (data-parallel: the processes hold the same state; one writes)
            return
        state.update(w=self.parameters(), adam_m=self._adam["m"], adam_v=self._adam["v"],
                     best=self.best_parameters if self.best_parameters is not None else np.zeros(0))
        save_state(path, state)

    def resume(self, path):
        st = load_run_state(self, path, self.STATS, len(self.elements))
        self.set_parameters(st["w"])
        self.best_parameters = st["best"] if st["best"].size else None
        self._set_transform(scaling_transform(self.stats, self.model.scaling_mode, self.model.scale_min,
                                              self.model.scale_max))
        self._data.clear()
        self._resume_state = st
        return self

    def write_learning_curve(self, path):
        write_learning_curve(path, self.history, self.UNITS)

    def write(self, output_dir):
        """input.nn (copied), scaling.data, weightse.ZZZ.data, hardness.ZZZ.data: the input of
        stage 2 (ShortTrainer), as n2p2's nnp-train 2 expects it."""
        os.makedirs(output_dir, exist_ok=True)
        with open(os.path.join(self.settings_dir, "input.nn")) as fh:
            text = pair_baseline.written_input_nn(fh.read(), self._baseline_lines)
        _core.write_file_atomic(os.path.join(output_dir, "input.nn"), text)
        _core.write_file_atomic(os.path.join(output_dir, "scaling.data"), format_scaling(self.stats))
        for z, net, h in zip(self.model.atomic_numbers, self.pot.elec, self.h):
            _core.write_file_atomic(os.path.join(output_dir, f"weightse.{z:03d}.data"), format_weights(net))
            _core.write_file_atomic(os.path.join(output_dir, f"hardness.{z:03d}.data"), f"{h * h:.16e}\n")
        self._write_info(output_dir)

    def _write_info(self, output_dir):
        name, what = self.INFO
        info = {**what, "best_epoch": self.best_epoch, "structures": split_sizes(self),
                "best": asdict(self.history[self.best_epoch]) if 0 <= self.best_epoch < len(self.history) else None,
                "config": asdict(self.config), "final": asdict(self.history[-1]) if self.history else None}
        _core.write_file_atomic(os.path.join(output_dir, name), json.dumps(info, indent=1) + "\n")


class ShortTrainer(Trainer):
    """Stage 2: the short networks of a 4G potential. `settings_dir` holds input.nn, scaling.data
    and the stage-1 weightse.ZZZ.data and hardness.ZZZ.data (ChargeTrainer.write's output);
    the charges they give are held fixed. Same optimisers, selection, logs and checkpoints as
    the 2G Trainer; the written directory is a complete 4G potential (FourthGeneration)."""

    _local_observations = False   # (electrostatics in every observation)
    _streams_derivatives = False  # (dQ/dR needs dchi/dr: dG/dr itself)

    def __init__(self, settings_dir, structures: Sequence, config: Optional[TrainingConfig] = None):
        config = config or TrainingConfig()
        if config.stress_weight > 0.0:
            raise ValueError("stress training is not available for 4G potentials")
        if not os.path.exists(os.path.join(os.fspath(settings_dir), "scaling.data")):
            raise DataError(f"{settings_dir}: stage 2 needs the scaling.data the electronegativity networks were "
                            f"trained with (stage 1 writes it)")
        self.pot = FourthGeneration(settings_dir, weights=False, threads=config.threads)
        self._load_elec(os.fspath(settings_dir))
        for k, a in enumerate(structures):
            _check_4g_structure(a, f"structure {k}")
        super().__init__(settings_dir, structures, config)

    def _load_elec(self, directory):
        """The stage-1 electronegativity networks and hardness, as the prediction reads them."""
        for e, net in enumerate(self.pot.elec):
            z = self.pot.model.atomic_numbers[e]
            paths = [os.path.join(directory, f"{kind}.{z:03d}.data") for kind in ("weightse", "hardness")]
            for path in paths:
                if not os.path.exists(path):
                    raise DataError(f"{directory}: stage 2 needs the stage-1 file {os.path.basename(path)}")
            load_weights(net, paths[0], error=DataError)
            self.pot.hardness[e] = _column(paths[1])[0]

    def _load_model(self):
        return self.pot.model

    def _fixed_energy(self, k: int) -> float:
        """Baseline and the stage-1 charges' electrostatic energy (for fitted offsets)."""
        a = self.structures[k]
        p = prepare(self.model, a, f"structure {k}", jacobian=False, threads=self.config.threads)
        p.scale(self.pot.transform)
        Q, _, op, params, A0, _ = self._charges(a, p, gradients=False)
        e = op.energy(Q, A0 @ Q)[0] + self.pot.background_energy(a, _total_charge(a), params)
        return super()._fixed_energy(k) + float(e)

    def _make_networks(self) -> List[ElementNetwork]:
        return self.pot.short

    def prepared(self, k: int) -> Prepared:
        p = self._prep.get(k)
        if p is None:
            if self.transform is None:
                self.compute_scaling()
            p = super().prepared(k)
            if not hasattr(p, "D"):
                self._electrostatics(k, p)
        return p

    def _charges(self, a, p: Prepared, gradients: bool):
        """The stage-1 QEq charges of structure `a` (scaled descriptors `p`): (Q, dchi/dG per
        element (with `gradients`), the Electrostatics operator, its Ewald parameters, A0, the
        factorised KKT system)."""
        species = species_of(a, self.elements, "structure")
        chi, dchi = np.zeros(len(a)), {}
        if gradients:
            for e, (E, g) in enumerate(_elec_gradients(self.pot, [p.G[e] for e in range(len(self.elements))])):
                chi[p.rows[e]] = E
                dchi[e] = g
        else:
            for e in range(len(self.elements)):
                if len(p.rows[e]):
                    chi[p.rows[e]] = self.pot.elec[e].forward(p.G[e], False)[0]
        op, params = self.pot.electrostatics(a, species, "dense")
        A0 = op.dense()
        lu = _kkt(A0, self.pot.hardness[species])
        return _solve(lu, -chi, _total_charge(a)), dchi, op, params, A0, lu

    def _electrostatics(self, k: int, p: Prepared):
        """Charges, electrostatic energy and forces and dQ/dR of structure k (fixed in stage 2)."""
        a = self.structures[k]
        n = len(a)
        Q, dchi, op, params, A0, lu = self._charges(a, p, gradients=True)
        e_elec, dEdQ = op.energy(Q, A0 @ Q)
        e_elec += self.pot.background_energy(a, _total_charge(a), params)
        # R[j, a] = d(A0 Q + chi)_j / dR_a at fixed Q: A0's part from the core, chi's from the pairs
        F0, _ = op.derivatives(Q, np.zeros(n))
        R = op.charge_response(Q)
        for e in range(len(self.elements)):
            if len(p.pi[e]):
                c = np.matmul(dchi[e][p.prow[e]][:, None, :], p.J[e])[:, 0, :]  # dchi_i / d(r_j - r_i)
                np.add.at(R, (p.pi[e], p.pj[e]), c)
                np.add.at(R, (p.pi[e], p.pi[e]), -c)
        D = -_solve(lu, R.reshape(n, 3 * n))          # dQ/dR, (n, 3n)
        p.Q, p.e_elec, p.D = Q, float(e_elec), D
        p.F_elec = F0 - (D.T @ dEdQ).reshape(n, 3)

    def _inputs(self, p: Prepared, e: int) -> np.ndarray:
        return np.concatenate([p.G[e], p.Q[p.rows[e], None]], axis=1)

    def _add_long_range(self, preps, aoff, E, F, per_el, W=None):
        s = np.zeros(int(aoff[-1]))       # dE_short/dQ per atom
        if self.config.use_forces:
            for e, item in enumerate(per_el):
                if item is not None:
                    s[self._atoms_of_rows(preps, aoff, e)] = item[4][:, -1]
        for i, p in enumerate(preps):
            E[i] += p.e_elec
            F[aoff[i]:aoff[i + 1]] += p.F_elec - (p.D.T @ s[aoff[i]:aoff[i + 1]]).reshape(-1, 3)

    @staticmethod
    def _atoms_of_rows(preps, aoff, e):
        return np.concatenate([p.rows[e] + aoff[i] for i, p in enumerate(preps)])

    def _add_input_weights(self, state, e, struct_of_row, lam, V):
        if lam is None:
            return
        preps = state["preps"]
        aoff = np.concatenate([[0], np.cumsum([p.n_atoms for p in preps])])
        c = np.concatenate([-(p.D @ lam[aoff[i]:aoff[i + 1]].ravel()) for i, p in enumerate(preps)])
        V[:, -1] += c[self._atoms_of_rows(preps, aoff, e)] / self.ce

    def write(self, output_dir, predictions=None):
        super().write(output_dir, predictions)
        for z, h in zip(self.model.atomic_numbers, self.pot.hardness):
            shutil.copyfile(os.path.join(self.settings_dir, f"weightse.{z:03d}.data"),
                            os.path.join(output_dir, f"weightse.{z:03d}.data"))
            shutil.copyfile(os.path.join(self.settings_dir, f"hardness.{z:03d}.data"),
                            os.path.join(output_dir, f"hardness.{z:03d}.data"))
