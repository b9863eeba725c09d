"""3G training in RuNNer's two steps (THEORY.md B.5).

Step 1 (`LocalChargeTrainer`): the charge networks fitted directly to the reference charges,
per atom (the charges are local: no solve; the gradient is the networks' own). As RuNNer does,
the networks' charges are fitted, not the corrected ones of `enforce_totcharge` (a correction
needs charges of both signs, which random initial networks need not give).

Step 2 (`LocalShortTrainer`): the short networks fitted to E_ref - E_elec and F_ref - F_elec,
with E_elec and F_elec (the charges' position dependence included) of the step-1 charge
networks, computed once per structure (and the electrostatic virial of structures with a
reference stress). Same optimisers, losses, selection, logs and checkpoints as 2G.
"""
from __future__ import annotations

import os
import shutil
from typing import Optional, Sequence

import numpy as np

from .. import _core
from ..long_range import load_weights
from ..third_generation import ThirdGeneration
from .data import DataError, Prepared, species_of
from .fourth_generation import ChargeTrainer, _check_4g_structure, _total_charge
from .trainer import Trainer, TrainingConfig, format_scaling, format_weights


class LocalChargeTrainer(ChargeTrainer):
    """Step 1 of a 3G potential set up in `settings_dir/input.nn` (symfunction_electrostatic,
    global_*_electrostatic): the charge networks fitted to `atoms.arrays['ref_charges']`.
    Kalman: one update per structure with y = |q - q_ref| (as the 4G charge step); Adam: loss
    sum |q - q_ref|^2 / sum N per batch. Writes scalinge.data and weightse.ZZZ.data."""

    SCALING_FILE = "scalinge.data"
    INFO = ("training-charges.json", {"stage": 1, "generation": 3})

    def _potential(self):
        return ThirdGeneration(self.settings_dir, weights=False, threads=self.config.threads)

    def _charge_model(self):
        return self.pot.elec_model

    def _set_transform(self, transform):
        self.transform = self.pot.elec_transform = transform

    def data(self, k: int):
        d = self._data.get(k)
        if d is None:
            _, p, species = self._prepare(k)
            d = self._data[k] = _LocalData(p, species, self._ref[k][0])
        return d

    def charges(self, k: int):
        d = self.data(k)
        q, caches = self.outputs(d)
        return q, (d, caches)

    def gradient(self, Q, state, dLdQ: np.ndarray) -> np.ndarray:
        d, caches = state
        return np.concatenate([net.loss_gradient(caches[e], dLdQ[d.prep.rows[e]], None) if len(d.prep.rows[e])
                               else np.zeros(net.n_parameters) for e, net in enumerate(self.pot.elec)])

    def write(self, output_dir):
        """input.nn (copied), scalinge.data and weightse.ZZZ.data: the input of step 2."""
        os.makedirs(output_dir, exist_ok=True)
        shutil.copyfile(os.path.join(self.settings_dir, "input.nn"), os.path.join(output_dir, "input.nn"))
        _core.write_file_atomic(os.path.join(output_dir, "scalinge.data"), format_scaling(self.stats))
        for z, net in zip(self.model.atomic_numbers, self.pot.elec):
            _core.write_file_atomic(os.path.join(output_dir, f"weightse.{z:03d}.data"), format_weights(net))
        self._write_info(output_dir)


class _LocalData:
    def __init__(self, prep: Prepared, species: np.ndarray, q_ref: np.ndarray):
        self.prep, self.species, self.q_ref = prep, species, q_ref


class LocalShortTrainer(Trainer):
    """Step 2 of a 3G potential: `settings_dir` holds input.nn and the step-1 scalinge.data and
    weightse.ZZZ.data (LocalChargeTrainer.write's output). The written directory is a complete
    3G potential (ThirdGeneration). The electrostatics use the potential's settings
    (enforce_totcharge, screening, Ewald) and each structure's total charge
    (atoms.info['charge'], else the rounded sum of its reference charges, else 0)."""

    _local_observations = False   # (electrostatics in every observation)

    def __init__(self, settings_dir, structures: Sequence, config: Optional[TrainingConfig] = None):
        config = config or TrainingConfig()
        settings_dir = os.fspath(settings_dir)
        for name in ("scalinge.data",):
            if not os.path.exists(os.path.join(settings_dir, name)):
                raise DataError(f"{settings_dir}: step 2 needs the step-1 file {name}")
        self.pot = ThirdGeneration(settings_dir, weights=False, threads=config.threads)
        for net, z in zip(self.pot.elec, self.pot.elec_model.atomic_numbers):
            load_weights(net, os.path.join(settings_dir, f"weightse.{z:03d}.data"), "step 2 needs this step-1 file",
                         DataError)
        # the step-1 charges' electrostatics, computed by the core's 3G potential (its charge part
        # alone), as prediction computes them
        self._elec = _core.ThirdGenerationPotential.load(settings_dir, short_networks=False)
        for k, a in enumerate(structures):
            _check_4g_structure(a, f"structure {k}", "3G")
        super().__init__(settings_dir, structures, config)

    def _load_model(self):
        return self.pot.model

    def _fixed_energy(self, k: int) -> float:
        """Baseline and the step-1 charges' electrostatic energy (for fitted offsets)."""
        r = self._electrostatics(k, forces=False)
        return super()._fixed_energy(k) + float(r["electrostatic_energy"])

    def _electrostatics(self, k: int, forces: bool):
        """The step-1 charges' electrostatic energy (a charged periodic cell with its uniform
        background), with `forces` its forces and virial (the Ewald parameters n2p2's)."""
        a = self.structures[k]
        periodic = bool(np.all(a.pbc))
        cell = np.ascontiguousarray(a.cell[:], dtype=float) if periodic else None
        return self._elec.compute(np.ascontiguousarray(a.positions, dtype=float),
                                  species_of(a, self.elements, f"structure {k}"), cell, _total_charge(a),
                                  forces=forces, virial=forces, threads=self.config.threads, background=True)

    def prepared(self, k: int) -> Prepared:
        p = super().prepared(k)
        if not hasattr(p, "e_elec"):
            r = self._electrostatics(k, forces=True)
            p.e_elec, p.F_elec = r["electrostatic_energy"], r["forces"]
            p.W_elec = r["virial"] if p.stress is not None else None
        return p

    def _add_long_range(self, preps, aoff, E, F, per_el, W=None):
        for i, p in enumerate(preps):
            E[i] += p.e_elec
            F[aoff[i]:aoff[i + 1]] += p.F_elec
            if W is not None and p.W_elec is not None:
                W[i] += p.W_elec

    def write(self, output_dir, predictions=None):
        super().write(output_dir, predictions)
        names = ["scalinge.data"] + [f"weightse.{z:03d}.data" for z in self.model.atomic_numbers]
        for name in names:
            shutil.copyfile(os.path.join(self.settings_dir, name), os.path.join(output_dir, name))
