"""2G training driven from Python over the C++ descriptors: scaling, Adam, learning curves,
early stopping, potential files n2p2 reads."""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from typing import Dict, List, Optional, Sequence

import numpy as np

from .. import _core
from .. import baseline as pair_baseline
from .data import DataError, Prepared, check_reference, geometry, prepare, selection_score, species_of, split
from . import parallel
from .kalman import DistributedKalmanFilter, KalmanFilter, KalmanSettings
from .network import ElementNetwork, initialise
from ..scaling import (SCALING_CENTER, SCALING_NONE, SCALING_SCALE, SCALING_SCALE_CENTER,  # noqa: F401
                       SCALING_SIGMA, scaling_transform)


@dataclass
class TrainingConfig:
    epochs: int = 20
    optimizer: str = "adam"             # adam | kalman
    learning_rate: float = 1e-3         # Adam step size (n2p2: gradient_adam_eta)
    learning_rate_decay: float = 1.0    # multiplied into the step size after every epoch
    beta1: float = 0.9
    beta2: float = 0.999
    epsilon: float = 1e-8
    batch_size: int = 1                 # structures per update
    energy_weight: float = 1.0          # loss: w_E mean((dE/N)^2) + w_F mean(dF^2)
    force_weight: float = 1.0
    stress_weight: float = 0.0          # + w_S mean over structures with a reference stress of dsigma^2
    use_forces: bool = True
    test_fraction: float = 0.1          # reported only, never used for a choice
    validation_fraction: float = 0.1    # chooses the best epoch and early stopping
    selection_energy_weight: float = 1.0  # best epoch: min w_E log RMSE_E + w_F log RMSE_F (validation)
    selection_force_weight: float = 1.0
    seed: int = 1234567
    init: str = "nguyen-widrow"         # uniform | glorot | nguyen-widrow
    weights_min: float = -1.0           # for init = uniform
    weights_max: float = 1.0
    patience: Optional[int] = None      # early stopping: epochs without a better test error
    # Descriptor derivatives (dG/dr, ~76 KB per atom at 52 SFs) kept in memory up to this; the
    # structures beyond it keep G only (~0.4 KB per atom) and the core contracts their derivatives
    # on every use (2G and 3G; the 4G short networks recompute dG/dr instead)
    memory_budget_mb: float = 4096.0
    # Storage of the descriptor derivatives: float32 halves their memory (the network passes,
    # forces and gradients stay in double precision; the derivatives carry 6e-8 relative rounding)
    descriptor_precision: str = "float64"
    # Checkpoint every N epochs (and after the last): 0 = every epoch for Adam; for the Kalman
    # filter, whose covariance is n(n+1)/2 numbers, every epoch while that is below 16 MB and
    # every 10 epochs above. A resume continues exactly from the last checkpoint.
    checkpoint_every: int = 0
    # Wall-clock budget of a train() call in seconds (None: none): no epoch is started that the
    # last epoch's duration says would end beyond it; the best weights are written as at a normal end.
    time_limit: Optional[float] = None
    fit_offsets: bool = False           # atom_energy per element by a linear fit to the training energies
    threads: int = 0
    # Kalman filter (n2p2 semantics): updates per epoch = energy_fraction x training structures
    # + force_fraction x training force components; force errors and Jacobians x force_weight.
    kalman: KalmanSettings = field(default_factory=KalmanSettings)
    energy_fraction: float = 1.0
    force_fraction: float = 0.02
    # Observations per Kalman update (n2p2's multi-stream update: one per MPI task there); 0: the
    # number of MPI processes. A serial run with kalman_streams = P takes the same steps as P
    # processes.
    kalman_streams: int = 0
    selection: str = "random"           # random | sort | threshold
    energy_threshold: float = 0.0       # threshold selection: |error| / train RMSE above this
    force_threshold: float = 1.0
    threshold_trials: int = 3
    charge_fraction: float = 1.0        # 4G stage 1: updates per epoch = this x training structures


@dataclass
class EpochStats:
    epoch: int
    rmse_energy_train: float            # per atom
    rmse_energy_test: float
    rmse_force_train: float
    rmse_force_test: float
    mae_energy_train: float
    mae_energy_test: float
    mae_force_train: float
    mae_force_test: float
    seconds: float = 0.0
    rmse_stress_train: float = float("nan")   # structures with a reference stress only
    rmse_stress_test: float = float("nan")
    rmse_energy_validation: float = float("nan")
    rmse_force_validation: float = float("nan")
    mae_energy_validation: float = float("nan")
    mae_force_validation: float = float("nan")
    rmse_stress_validation: float = float("nan")


def _cat(arrays):
    """np.concatenate, without the copy when there is one array."""
    return arrays[0] if len(arrays) == 1 else np.concatenate(arrays)


def _descriptor_starts(species: np.ndarray, G: Dict[int, np.ndarray]) -> np.ndarray:
    """Per atom, where its raw G starts in the core's per-atom concatenation (K of its element each)."""
    K = np.array([G[e].shape[1] for e in range(len(G))])
    return np.concatenate([[0], np.cumsum(K[species])[:-1]])


def scaling_statistics(preps: Sequence[Prepared], n_elements: int, comm=None):
    """min, max, mean, sigma (sample standard deviation, as n2p2's nnp-scaling) of each raw SF
    over all atoms. `comm` (parallel.py, more than one process): each process has its own
    structures' `preps`; the statistics are those of all of them (sums over the processes)."""
    if comm is not None and comm.size > 1:
        return _scaling_statistics_parallel(preps, n_elements, comm)
    stats = []
    for e in range(n_elements):
        rows = [p.G[e] for p in preps if len(p.G[e])]
        if not rows:
            raise DataError(f"the data set has no atom of element index {e}; cannot compute its scaling")
        G = np.concatenate(rows)
        stats.append({"min": G.min(axis=0), "max": G.max(axis=0), "mean": G.mean(axis=0), "sigma": G.std(axis=0, ddof=1) if len(G) > 1 else np.zeros(G.shape[1])})
    return stats


def _scaling_statistics_parallel(preps: Sequence[Prepared], n_elements: int, comm):
    stats = []
    for e in range(n_elements):
        rows = [p.G[e] for p in preps if len(p.G[e])]
        n_sf = comm.gather_objects(rows[0].shape[1] if rows else -1)
        n_sf = max(n_sf)
        if n_sf < 0:
            raise DataError(f"the data set has no atom of element index {e}; cannot compute its scaling")
        G = np.concatenate(rows) if rows else np.zeros((0, n_sf))
        sums = comm.sum(np.concatenate([[len(G)], G.sum(axis=0)]))   # (atoms, then each SF's sum)
        count = float(sums[0])
        mean = sums[1:] / count
        lo = np.min(comm.gather_all(G.min(axis=0) if len(G) else np.full(n_sf, np.inf)), axis=0)
        hi = np.max(comm.gather_all(G.max(axis=0) if len(G) else np.full(n_sf, -np.inf)), axis=0)
        ss = comm.sum(((G - mean) ** 2).sum(axis=0))
        stats.append({"min": lo, "max": hi, "mean": mean,
                      "sigma": np.sqrt(ss / (count - 1)) if count > 1 else np.zeros(n_sf)})
    return stats


def fit_atomic_energies(structures: Sequence, elements: Sequence[str], energies=None) -> np.ndarray:
    """Per-element energies minimising sum_s (E_s - sum_e n_se x_e)^2 (least squares; an
    element whose count is the same multiple in every structure is not identifiable and gets
    the minimum-norm share). E_s: `energies`, else atoms.info['energy']."""
    index = {e: i for i, e in enumerate(elements)}
    A = np.zeros((len(structures), len(elements)))
    for s, a in enumerate(structures):
        for sym in a.get_chemical_symbols():
            A[s, index[sym]] += 1
    E = np.array([a.info["energy"] for a in structures]) if energies is None else np.asarray(energies, dtype=float)
    return np.linalg.lstsq(A, E, rcond=None)[0]


def fit_offsets_report(structures: Sequence, elements: Sequence[str], energies) -> tuple:
    """(offsets, notes): fit_atomic_energies and what a user should know of the fit: elements
    absent from the structures (offset 0), compositions that do not separate some elements
    (every structure has them in the same ratio: the minimum-norm split is taken), and the RMS
    energy per atom left after the offsets."""
    index = {e: i for i, e in enumerate(elements)}
    A = np.zeros((len(structures), len(elements)))
    for s_, a in enumerate(structures):
        for sym in a.get_chemical_symbols():
            A[s_, index[sym]] += 1
    E = np.asarray(energies, dtype=float)
    x, _, rank, _ = np.linalg.lstsq(A, E, rcond=None)
    notes = []
    absent = [e for e, c in zip(elements, A.sum(axis=0)) if c == 0]
    if absent:
        notes.append(f"no training structure contains {', '.join(absent)}: offset 0")
    present = len(elements) - len(absent)
    if rank < present:
        notes.append(f"the training compositions determine only {rank} combination(s) of the {present} elements' "
                     f"offsets (every structure has some elements in the same ratio): the minimum-norm split is used; "
                     f"only energies of such compositions are meaningful")
    resid = (E - A @ x) / A.sum(axis=1)
    notes.append(f"RMS energy per atom left after the offsets: {float(np.sqrt(np.mean(resid ** 2))):.6g}")
    return x, notes


def format_scaling(stats) -> str:
    lines = ["#" * 80, "# Symmetry function scaling data (written by hdnnp).", "#" * 80,
             "#  e_index   sf_index                   sf_min                   sf_max                  sf_mean"
             "                 sf_sigma"]
    for e, st in enumerate(stats):
        for k in range(len(st["min"])):
            lines.append(f"{e + 1:10d} {k + 1:10d} {st['min'][k]:24.16E} {st['max'][k]:24.16E} "
                         f"{st['mean'][k]:24.16E} {st['sigma'][k]:24.16E}")
    return "\n".join(lines) + "\n"


def format_weights(net: ElementNetwork) -> str:
    """n2p2 weights file (column 1 is read; the rest documents each connection)."""
    lines = ["#" * 80, "# Neural network connection values (weights and biases), written by hdnnp.", "#" * 80,
             "#             connection t     index   l_s   n_s   l_e   n_e"]
    p = net.get_parameters()
    k = 0
    for l, (i, o) in enumerate(zip(net.sizes[:-1], net.sizes[1:])):
        for s in range(i):
            for t in range(o):
                lines.append(f"{p[k]:24.16E} a {k + 1:9d} {l:5d} {s + 1:5d} {l + 1:5d} {t + 1:5d}")
                k += 1
        for t in range(o):
            lines.append(f"{p[k]:24.16E} b {k + 1:9d} {l + 1:5d} {t + 1:5d}")
            k += 1
    return "\n".join(lines) + "\n"


def adam_update(m, v, g, t: int, lr: float, cfg: "TrainingConfig"):
    """One Adam step on one parameter vector: (new m, new v, the step to subtract)."""
    m = cfg.beta1 * m + (1 - cfg.beta1) * g
    v = cfg.beta2 * v + (1 - cfg.beta2) * g * g
    mh, vh = m / (1 - cfg.beta1 ** t), v / (1 - cfg.beta2 ** t)
    return m, v, lr * mh / (np.sqrt(vh) + cfg.epsilon)


def layer_parameters(sizes: Sequence[int]) -> List[int]:
    """Parameters of each layer (weights and biases, n2p2's order) of a network of layer `sizes`."""
    return [i * o + o for i, o in zip(sizes[:-1], sizes[1:])]


def kalman_blocks(nets, decoupling: str):
    """Sizes of the Kalman filter's covariance blocks over the networks' parameters (in n2p2's
    order, network after network): None for the full covariance ('none'), one block per network
    ('element') or per layer of each network, its weights and biases ('layer')."""
    if decoupling == "none":
        return None
    if decoupling == "element":
        return [n.n_parameters for n in nets]
    if decoupling == "layer":
        return [b for n in nets for b in layer_parameters(n.sizes)]
    raise ValueError(f"unknown Kalman decoupling {decoupling!r} (none, element, layer)")


def write_learning_curve(path, history, units: str):
    """One line per epoch of a trainer's statistics (a dataclass per epoch), written atomically."""
    cols = list(asdict(history[0]).keys())
    lines = ["# " + " ".join(cols) + f"  ({units})"]
    for st in history:
        d = asdict(st)
        lines.append(" ".join(f"{d[c]:d}" if c == "epoch" else f"{d[c]:.10e}" for c in cols))
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    _core.write_file_atomic(os.fspath(path), "\n".join(lines) + "\n")


def checkpoint_due(tr, epoch: int, last: bool) -> bool:
    """Whether `train` writes its checkpoint after `epoch` (see TrainingConfig.checkpoint_every)."""
    every = tr.config.checkpoint_every
    if every <= 0:
        every = 10 if tr._kf is not None and tr._kf.state_bytes > 16 * 2 ** 20 else 1
    return last or epoch % every == 0


def over_time(cfg, t_start: float, last_epoch_seconds: float, comm=None) -> bool:
    """Whether another epoch (taking about as long as the last) would pass cfg.time_limit; `comm`
    (more than one process): whether it would on any of them (their clocks differ; all stop)."""
    import time

    if cfg.time_limit is None:
        return False
    late = time.perf_counter() - t_start + last_epoch_seconds > cfg.time_limit
    if comm is not None and comm.size > 1:
        late = comm.sum([float(late)])[0] > 0.0
    return late


def kalman_streams(cfg, comm) -> int:
    """Observations per Kalman update: cfg.kalman_streams, or (0) the number of processes; a
    multiple of the processes, each running its streams."""
    S = cfg.kalman_streams if cfg.kalman_streams > 0 else comm.size
    if S % comm.size:
        raise ValueError(f"kalman_streams ({S}) must be a multiple of the number of processes ({comm.size})")
    return S


def split_structures(structures, cfg):
    """(train, validation, test) indices of `structures` under `cfg` (see data.split)."""
    tags = [a.info.get("set") for a in structures]
    train, val, test = split(len(structures), cfg.test_fraction, cfg.seed, tags, cfg.validation_fraction)
    if len(train) == 0:
        raise DataError("the training set is empty (test/validation fractions too large, or no structure tagged "
                        "train)")
    return train, val, test


def tag_split(structures, cfg):
    """split_structures, written into the structures as atoms.info['set'] tags, so that every
    trainer given them (a committee's members, whatever their seeds) makes the same split."""
    parts = split_structures(structures, cfg)
    for name, idx in zip(("train", "validation", "test"), parts):
        for k in idx:
            structures[k].info["set"] = name
    return parts


def split_sizes(tr) -> dict:
    return {"train": len(tr.train_idx), "validation": len(tr.val_idx), "test": len(tr.test_idx)}


def split_line(tr) -> str:
    n = split_sizes(tr)
    return (f"structures: {n['train']} train, {n['validation']} validation (best epoch, early stopping), "
            f"{n['test']} test (reported only)")


def run_state(tr) -> dict:
    """What every trainer's checkpoint holds besides its parameters and Adam moments: epochs,
    best score, history, random state, split, scaling statistics, the Kalman filter."""
    state = {"epoch": np.array(tr.epoch), "best_epoch": np.array(tr.best_epoch),
             "best_score": np.array(tr.best_score),
             "history": np.array(json.dumps([asdict(h) for h in tr.history])),
             "rng": np.array(json.dumps(tr.rng.bit_generator.state)),
             "train_idx": tr.train_idx, "val_idx": tr.val_idx, "test_idx": tr.test_idx,
             "adam_step": np.array(tr._adam["step"]), "adam_lr": np.array(tr._adam["lr"])}
    for e, st in enumerate(tr.stats):
        for key, v in st.items():
            state[f"scaling_{key}{e}"] = v
    if tr._kf is not None:
        for key, v in tr._kf.state().items():
            state[f"kf_{key}"] = np.asarray(v)
    return state


def save_state(path, state: dict):
    tmp = os.fspath(path) + ".tmp.npz"
    np.savez(tmp, **state)
    os.replace(tmp, path)


def load_run_state(tr, path, stats_class, n_elements: int) -> dict:
    """Read a checkpoint, check its split against tr's, and restore run_state's part (scaling
    statistics into tr.stats; the caller sets the transform); returns the whole record."""
    with np.load(path) as z:
        st = {k: z[k] for k in z.files}
    if not (np.array_equal(st["train_idx"], tr.train_idx) and np.array_equal(st["test_idx"], tr.test_idx)
            and np.array_equal(st.get("val_idx", np.zeros(0, dtype=int)), tr.val_idx)):
        raise DataError(f"{path}: the checkpoint's train/validation/test split does not match these structures")
    tr.epoch, tr.best_epoch = int(st["epoch"]), int(st["best_epoch"])
    tr.best_score = float(st["best_score"])
    tr.history = [stats_class(**h) for h in json.loads(str(st["history"]))]
    tr.rng.bit_generator.state = json.loads(str(st["rng"]))
    tr.stats = [{k: st[f"scaling_{k}{e}"] for k in ("min", "max", "mean", "sigma")} for e in range(n_elements)]
    return st


def restore_optimizer_state(tr, st: dict):
    """Adam's step and rate and the Kalman filter from a checkpoint record (Adam's moments are
    the trainer's own)."""
    tr._adam["step"] = int(st["adam_step"])
    tr._adam["lr"] = float(st["adam_lr"])
    if tr._kf is not None:
        tr._kf.load_state({k[3:]: st[k] for k in st if k.startswith("kf_")})


class Trainer:
    """Train the element networks of the potential set up in ``settings_dir/input.nn``.

    ``structures``: ``ase.Atoms`` in the potential's units with references (see data.py);
    ``atoms.info['set']`` = 'train'/'test' on every structure selects the split, otherwise a
    random split with ``config.test_fraction`` and ``config.seed``. An existing
    ``scaling.data`` in ``settings_dir`` is used, otherwise it is computed from all structures.
    """

    def __init__(self, settings_dir, structures: Sequence, config: Optional[TrainingConfig] = None):
        self.config = config or TrainingConfig()
        self.settings_dir = os.fspath(settings_dir)
        self.model = self._load_model()
        self.elements = list(self.model.elements)
        self.structures = list(structures)
        if not self.structures:
            raise DataError("no training structures")
        for k, a in enumerate(self.structures):
            check_reference(a, f"structure {k}", self.config.use_forces)
        self.train_idx, self.val_idx, self.test_idx = split_structures(self.structures, self.config)
        self.ce = self.model.conv_energy
        self.cl = self.model.conv_length
        self.me = self.model.mean_energy
        self.offsets = np.array(self.model.atom_energies)
        # The ZBL pair baseline (hdnnp_zbl): the networks learn the reference minus it; radii of
        # 'hdnnp_zbl auto' come from the training structures (never from the test set).
        self.baseline, self._baseline_lines = pair_baseline.resolve(
            self.model, [self.structures[k] for k in self.train_idx])
        self.offset_notes: List[str] = []
        if self.config.fit_offsets:
            if np.any(self.offsets != 0.0):
                raise DataError(f"{self.settings_dir}/input.nn already has atom_energy lines; fit_offsets "
                                f"would replace them (remove them or do not fit)")
            train = [self.structures[k] for k in self.train_idx]
            # what the networks do not give: the baseline, and the electrostatics of 3G/4G
            residual = [a.info["energy"] - self._fixed_energy(k) for k, a in zip(self.train_idx, train)]
            self.offsets, self.offset_notes = fit_offsets_report(train, self.elements, residual)
        self.nets: List[ElementNetwork] = self._make_networks()
        self.rng = np.random.default_rng(self.config.seed)
        for net in self.nets:
            initialise(net, self.rng, self.config.init, self.config.weights_min, self.config.weights_max)
        self.comm = parallel.world()
        self._prep: Dict[int, Prepared] = {}
        self._budget_left = self.config.memory_budget_mb * 2 ** 20
        self.stats = None
        self.transform = None       # set by compute_scaling / resume
        self.history: List[EpochStats] = []
        self.best_parameters = None
        self.best_epoch = -1
        self.best_score = np.inf
        self.epoch = 0
        self._resume_state = None

    def _load_model(self):
        """The core model that computes the descriptors (and holds the scaling, if any)."""
        return _core.Model.load(self.settings_dir, False)

    def _make_networks(self) -> List[ElementNetwork]:
        out = []
        for e in range(len(self.elements)):
            sizes, acts, _ = self.model.architecture(e)
            out.append(ElementNetwork(list(sizes), acts, self.model.normalize_nodes))
        return out

    # -- data ----------------------------------------------------------------------------------
    def _fixed_energy(self, k: int) -> float:
        """The part of structure k's energy that is not the networks' and not fitted: the pair
        baseline (3G/4G add their electrostatics)."""
        return self._baseline_of(self.structures[k], k)["energy"] if self.baseline is not None else 0.0

    def _baseline_of(self, atoms, k: int):
        return pair_baseline.compute(self.baseline, atoms, species_of(atoms, self.elements, f"structure {k}"))

    # Whether the forces and weight gradients of a structure whose descriptor derivatives do not
    # fit in memory_budget_mb may come from the core's contractions (Model.compute with dEdG,
    # Model.descriptor_jvp) instead of stored dG/dr. The 4G short trainer needs dG/dr itself
    # (its charges' response dQ/dR) and recomputes it on every use instead.
    _streams_derivatives = True

    def prepared(self, k: int) -> Prepared:
        """Structure k's descriptors, and their derivatives while they fit in memory_budget_mb
        (the structures beyond it keep G only: their forces and gradients are contracted in the
        core on every use, `streamed`)."""
        p = self._prep.get(k)
        if p is not None:
            return p
        cfg = self.config
        if cfg.descriptor_precision not in ("float64", "float32"):
            raise ValueError(f"descriptor_precision: float64 or float32, not {cfg.descriptor_precision!r}")
        label = f"structure {k}"
        geom = geometry(self.model, self.structures[k], label)
        jacobian, keep = cfg.use_forces, True
        if jacobian and self._streams_derivatives:
            # what storing dG/dr and G would take (Prepared.nbytes), at most: the pairs within the
            # largest cutoff x K x 3 derivatives, and K double-precision G per atom
            K = np.array([self.model.architecture(e)[0][0] for e in range(len(self.elements))])[geom[1]]
            bound = int(np.diff(geom[2][0]) @ K) * 3 * (4 if cfg.descriptor_precision == "float32" else 8)
            jacobian = bound + 8 * int(K.sum()) <= self._budget_left
        p = prepare(self.model, self.structures[k], label, jacobian=jacobian, threads=cfg.threads, geom=geom)
        if jacobian:
            if cfg.descriptor_precision == "float32":
                p.J = {e: J.astype(np.float32) for e, J in p.J.items()}
            keep = p.nbytes <= self._budget_left   # otherwise recomputed on every use
            if keep:
                self._budget_left -= p.nbytes
        if self.baseline is not None:
            b = self._baseline_of(self.structures[k], k)
            p.base_energy, p.base_forces, p.base_virial = b["energy"], b["forces"], b["virial"]
        if self.transform is not None:
            p.scale(self.transform)
        if keep:
            self._prep[k] = p
        return p

    def _streamed(self, preps) -> Dict[int, tuple]:
        """Batch position -> (positions, species, neighbour list) of the structures of a batch
        whose derivatives are not stored."""
        return {s: geometry(self.model, self.structures[k], f"structure {k}")
                for s, (k, p) in enumerate(preps) if p.J is None}

    def compute_scaling(self):
        path = os.path.join(self.settings_dir, "scaling.data")
        if self.model.scaling_mode != SCALING_NONE and os.path.exists(path):
            self.stats = [{k: np.asarray(self.model.scaling(e)[k]) for k in ("min", "max", "mean", "sigma")}
                          for e in range(len(self.elements))]
        else:
            # from the training structures only: validation and test data make no choice (each
            # process of a data-parallel run its own)
            mine = parallel.owned(self.train_idx, self.comm.rank, self.comm.size)
            self.stats = scaling_statistics([self.prepared(k) for k in mine], len(self.elements), self.comm)
        self.transform = scaling_transform(self.stats, self.model.scaling_mode, self.model.scale_min,
                                           self.model.scale_max)
        for p in self._prep.values():
            p.scale(self.transform)
        return self.stats

    # -- model evaluation ----------------------------------------------------------------------
    def _forward(self, ks: Sequence[int]):
        """Energies and forces of structures ks (physical units) and what gradients need."""
        cfg = self.config
        preps = [self.prepared(k) for k in ks]
        for p in preps:
            p.scale(self.transform)
        nat = np.array([p.n_atoms for p in preps])
        aoff = np.concatenate([[0], np.cumsum(nat)])
        ntot = int(aoff[-1])
        E = np.array([self.me * p.n_atoms + p.counts @ self.offsets for p in preps])
        F = np.zeros((ntot, 3))
        want_w = cfg.use_forces and any(p.stress is not None for p in preps)
        W = np.zeros((len(preps), 3, 3)) if want_w else None   # virial, -sum_p d_p (x) dE/dd_p
        per_el = []
        # structures whose dG/dr is not stored: forces and virial from dE/dG in the core
        streamed = self._streamed(list(zip(ks, preps))) if cfg.use_forces else {}
        dEdG = {s: np.zeros(int(sum(preps[s].G[e].size for e in preps[s].G))) for s in streamed}
        starts = {s: _descriptor_starts(species, preps[s].G) for s, (_, species, _) in streamed.items()}
        stored = [s for s in range(len(preps)) if s not in streamed]
        for e, net in enumerate(self.nets):
            X = [self._inputs(p, e) for p in preps]
            n_e = [len(x) for x in X]
            if sum(n_e) == 0:
                per_el.append(None)
                continue
            Xs = _cat(X)
            struct_of_row = np.repeat(np.arange(len(preps)), n_e)
            Ei, g, cache = net.forward(Xs, want_input_gradient=cfg.use_forces)
            E += np.bincount(struct_of_row, Ei, minlength=len(preps)) / self.ce
            pairs = None
            if cfg.use_forces:
                roff = np.concatenate([[0], np.cumsum(n_e)])
                if stored:
                    sp = [preps[s] for s in stored]
                    J = _cat([p.J[e] for p in sp])
                    prow = _cat([preps[s].prow[e] + roff[s] for s in stored])
                    pi = _cat([preps[s].pi[e] + aoff[s] for s in stored])
                    pj = _cat([preps[s].pj[e] + aoff[s] for s in stored])
                    pd = _cat([p.pd[e] for p in sp]) if want_w else None
                    ps = np.repeat(stored, [len(p.pi[e]) for p in sp]) if want_w else None
                    # dE/d(r_j - r_i) per pair: J_p^T g_i (batched matmul beats einsum here)
                    t = np.matmul(g[prow][:, None, :J.shape[1]], J)[:, 0, :] / self.ce
                    for c in range(3):
                        F[:, c] += np.bincount(pi, t[:, c], minlength=ntot) - np.bincount(pj, t[:, c], minlength=ntot)
                    if want_w:
                        for a_ in range(3):
                            for b_ in range(3):
                                W[:, a_, b_] -= np.bincount(ps, pd[:, a_] * t[:, b_], minlength=len(preps))
                    pairs = (J, prow, pi, pj, pd, ps)
                factor = self.transform[e][1] / self.ce    # dE/dG (raw, physical units) = factor g
                for s in streamed:
                    K = preps[s].G[e].shape[1]
                    at = starts[s][preps[s].rows[e]]
                    dEdG[s][at[:, None] + np.arange(K)] = g[roff[s]:roff[s + 1], :K] * factor
            per_el.append((cache, struct_of_row, pairs, len(Xs)))
            if cfg.use_forces:
                per_el[-1] += (g,)
        for s, (pos, species, nl) in streamed.items():
            out = self.model.compute(pos, species, len(pos), *nl, forces=True, virial=want_w, descriptors=False,
                                     threads=cfg.threads, baseline=False, dEdG=dEdG[s])
            F[aoff[s]:aoff[s + 1]] += out["forces"]
            if want_w:
                W[s] += out["virial"]
        self._add_long_range(preps, aoff, E, F, per_el, W)
        if self.baseline is not None:  # (constant in the weights: the networks see the residual)
            for i, p in enumerate(preps):
                E[i] += p.base_energy
                F[aoff[i]:aoff[i + 1]] += p.base_forces
                if W is not None:
                    W[i] += p.base_virial
        Fref = np.concatenate([p.forces for p in preps]) if cfg.use_forces else None
        Eref = np.array([p.energy for p in preps])
        state = {"el": per_el, "W": W, "preps": preps, "streamed": streamed}
        return E, F, Eref, Fref, nat, state

    def _inputs(self, p: Prepared, e: int) -> np.ndarray:
        """Network inputs of the element-e atoms of one structure (2G: the scaled G)."""
        return p.G[e]

    def _add_long_range(self, preps, aoff, E, F, per_el, W=None):
        """Add to the batch's energies E, forces F and virials W (when stresses are trained) what
        the networks' inputs bring beyond the symmetry functions (2G: nothing; 3G and 4G:
        electrostatics, 4G also the charge input)."""

    def _add_input_weights(self, state, e, struct_of_row, lam, V):
        """Add to V (rows of element e) the weights of the network-input gradients beyond the
        symmetry functions in sum lam . F (2G: none)."""

    @staticmethod
    def stress_of(state):
        """Predicted and reference stress (Voigt, energy/length^3) of the structures that have a
        reference stress, as two (n, 6) arrays, and their indices in the batch."""
        W = state["W"]
        idx = [s for s, p in enumerate(state["preps"]) if p.stress is not None]
        if W is None or not idx:
            return np.zeros((0, 6)), np.zeros((0, 6)), idx
        pred = []
        for s in idx:
            sym = 0.5 * (W[s] + W[s].T) / state["preps"][s].volume
            pred.append(-np.array([sym[0, 0], sym[1, 1], sym[2, 2], sym[1, 2], sym[0, 2], sym[0, 1]]))
        return np.array(pred), np.array([state["preps"][s].stress for s in idx]), idx

    def batch_counts(self, ks: Sequence[int]):
        """The loss's denominators of a batch: structures, force components, stress components."""
        n_f = 3 * sum(len(self.structures[k]) for k in ks) if self.config.use_forces else 0
        n_s = 6 * sum(1 for k in ks if self.structures[k].info.get("stress") is not None)
        return len(ks), n_f, n_s

    def _batch(self, ks: Sequence[int], want_grad: bool, counts=None):
        """Energies and forces of structures ks; with want_grad also the loss and its gradient.
        `counts` (batch_counts of a larger batch that ks is a share of): the loss of that batch is
        the sum of its shares' (data-parallel training)."""
        cfg = self.config
        E, F, Eref, Fref, nat, state = self._forward(ks)
        if not want_grad:
            return E, F, Eref, Fref, nat, state
        n_s, n_f, n_st = counts if counts is not None else self.batch_counts(ks)
        # loss = w_E mean_s ((E_s - Eref_s)/N_s)^2 + w_F mean_components (F - Fref)^2
        dE = (E - Eref) / nat
        loss = cfg.energy_weight * np.sum(dE ** 2) / n_s
        a_struct = 2.0 * cfg.energy_weight * dE / nat / n_s
        lam = None
        if cfg.use_forces:
            dF = F - Fref
            loss += cfg.force_weight * np.sum(dF ** 2) / n_f
            lam = 2.0 * cfg.force_weight * dF / n_f
        M = None  # dL/dW per structure
        if cfg.stress_weight > 0.0:
            pred, ref, idx = self.stress_of(state)
            if len(idx):
                dS = pred - ref
                loss += cfg.stress_weight * np.sum(dS ** 2) / n_st
                g = 2.0 * cfg.stress_weight * dS / n_st         # dL/dsigma (Voigt)
                M = np.zeros((len(ks), 3, 3))
                for r, s in enumerate(idx):
                    G = np.array([[g[r, 0], g[r, 5], g[r, 4]], [g[r, 5], g[r, 1], g[r, 3]],
                                  [g[r, 4], g[r, 3], g[r, 2]]])
                    # sigma_ab = -(W_ab + W_ba) / (2V); off-diagonal Voigt entries appear once
                    M[s] = -G * np.where(np.eye(3, dtype=bool), 1.0, 0.5) / state["preps"][s].volume
        return E, F, Eref, Fref, nat, (loss, self._gradient(state, a_struct, lam, M))

    def _gradient(self, state, a_struct, lam, M=None):
        """d/dw of sum_s a_s E_s + sum lam . F + sum_s M_s : W_s (physical units), per element in
        n2p2 order."""
        per_el, preps = state["el"], state["preps"]
        moved = lam is not None or M is not None
        # J u of the structures whose dG/dr is not stored, from the core (raw G per atom)
        jvp = {}
        if moved and state["streamed"]:
            aoff = np.concatenate([[0], np.cumsum([p.n_atoms for p in preps])])
            for s, (pos, species, nl) in state["streamed"].items():
                d = lam[aoff[s]:aoff[s + 1]] if lam is not None else np.zeros((len(pos), 3))
                jvp[s] = self.model.descriptor_jvp(pos, species, *nl, directions=d,
                                                   strain=None if M is None else M[s], threads=self.config.threads)
        grads = []
        for e, net in enumerate(self.nets):
            if per_el[e] is None:
                grads.append(np.zeros(net.n_parameters))
                continue
            cache, struct_of_row, pairs, nrow = per_el[e][:4]
            a = None if a_struct is None else a_struct[struct_of_row] / self.ce
            V = None
            if moved and (pairs is not None or jvp):
                V = np.zeros((nrow, net.sizes[0]))
            if V is not None and pairs is not None:
                J, prow, pi, pj, pd, ps = pairs
                u = lam[pi] - lam[pj] if lam is not None else np.zeros((len(pi), 3))   # dL/dt_p
                if M is not None:  # W_s = -sum_p d_p (x) t_p
                    u = u - np.einsum("pab,pa->pb", M[ps], pd)
                contrib = np.matmul(J, u[:, :, None])[:, :, 0] / self.ce
                if len(prow):  # pairs are sorted by centre row: sum each row's run
                    starts = np.flatnonzero(np.r_[True, prow[1:] != prow[:-1]])
                    V[prow[starts], :J.shape[1]] = np.add.reduceat(contrib, starts, axis=0)
            if V is not None:
                roff = np.concatenate([[0], np.cumsum(np.bincount(struct_of_row, minlength=len(preps)))])
                factor = self.transform[e][1] / self.ce
                for s, (v, vo) in jvp.items():
                    p = preps[s]
                    K = p.G[e].shape[1]
                    V[roff[s]:roff[s + 1], :K] = v[vo[p.rows[e]][:, None] + np.arange(K)] * factor
                self._add_input_weights(state, e, struct_of_row, lam, V)
            grads.append(net.loss_gradient(cache, a, V))
        return grads

    def _observation(self, k: int, atom: Optional[int] = None, comp: int = 0, jacobian: bool = True,
                     memo: Optional[dict] = None):
        """Kalman observation in n2p2's internal units: error y_ref - y and (with `jacobian`)
        dy/dw of the energy of structure k, or of force component (atom, comp). `memo` keeps
        forward passes for as long as the weights do not change (threshold trials)."""
        if memo is None and self._local_observations:
            return self._local_observation(k, atom, comp, jacobian)
        fw = memo.get(k) if memo is not None else None
        if fw is None:
            fw = self._forward([k])
            if memo is not None:
                memo[k] = fw
        E, F, Eref, Fref, nat, state = fw
        if atom is None:
            xi = (Eref[0] - E[0]) * self.ce
            return xi, (np.concatenate(self._gradient(state, np.ones(1), None)) * self.ce if jacobian else None)
        f = self.ce / self.cl
        xi = (Fref[atom, comp] - F[atom, comp]) * f
        if not jacobian:
            return xi, None
        lam = np.zeros_like(F)
        lam[atom, comp] = 1.0
        return xi, np.concatenate(self._gradient(state, None, lam)) * f

    # Whether an energy or force-component observation is a sum over the structure's atoms' (or
    # one atom's pairs') network terms alone (2G); the 3G/4G trainers add electrostatics in
    # _add_long_range and set this False.
    _local_observations = True

    def _local_observation(self, k: int, atom: Optional[int], comp: int, jacobian: bool):
        """_observation of a 2G potential without the whole batch machinery of _forward: the
        energy without forces, or one force component from the pairs of that atom only."""
        p = self.prepared(k)
        p.scale(self.transform)
        grads = []
        if atom is None:
            E = self.me * p.n_atoms + p.counts @ self.offsets + p.base_energy
            for e, net in enumerate(self.nets):
                X = self._inputs(p, e)
                if len(X) == 0:
                    grads.append(np.zeros(net.n_parameters))
                    continue
                Ei, _, cache = net.forward(X, want_input_gradient=False)
                E += Ei.sum() / self.ce
                if jacobian:
                    grads.append(net.loss_gradient(cache, np.full(len(X), 1.0 / self.ce), None))
            xi = (p.energy - E) * self.ce
            return xi, (np.concatenate(grads) * self.ce if jacobian else None)
        F = p.base_forces[atom, comp] if p.base_forces is not None else 0.0
        if p.J is None:   # dG/dr not stored: the core's J u along the one moving component
            pos, species, nl = geometry(self.model, self.structures[k], f"structure {k}")
            one = np.zeros((p.n_atoms, 3))
            one[atom, comp] = 1.0
            v, vo = self.model.descriptor_jvp(pos, species, *nl, directions=one, threads=self.config.threads)
        for e, net in enumerate(self.nets):
            X = self._inputs(p, e)
            if p.J is None:
                if len(X) == 0:
                    grads.append(np.zeros(net.n_parameters))
                    continue
                K = X.shape[1]
                V = v[vo[p.rows[e]][:, None] + np.arange(K)] * (self.transform[e][1] / self.ce)
                Ei, g, cache = net.forward(X, want_input_gradient=True)
                F += np.einsum("ik,ik->", V, g[:, :K])
                if jacobian:
                    grads.append(net.loss_gradient(cache, None, V))
                continue
            pi, pj = p.pi[e], p.pj[e]
            # +1 where the atom is the pair's centre, -1 where it is the neighbour (0 for its own
            # periodic images: F_i += t, F_j -= t cancel)
            sign = (pi == atom).astype(float) - (pj == atom)
            sel = np.flatnonzero(sign)
            if len(X) == 0 or (len(sel) == 0 and not jacobian):
                grads.append(np.zeros(net.n_parameters))
                continue
            Ei, g, cache = net.forward(X, want_input_gradient=True)
            Jc = p.J[e][sel, :, comp] * sign[sel, None] / self.ce      # d(F term)/d(input) per pair
            rows = p.prow[e][sel]
            F += np.einsum("pk,pk->", Jc, g[rows, :Jc.shape[1]])
            if jacobian:
                V = np.zeros((len(X), net.sizes[0]))
                np.add.at(V[:, :Jc.shape[1]], rows, Jc)
                grads.append(net.loss_gradient(cache, None, V))
        f = self.ce / self.cl
        xi = (p.forces[atom, comp] - F) * f
        return xi, (np.concatenate(grads) * f if jacobian else None)

    def errors(self, ks: Sequence[int], chunk: int = 16):
        """RMSE and MAE of energies per atom and of force components over structures ks."""
        if len(ks) == 0:
            return (np.nan,) * 5
        de, df, ds = [np.zeros(0)], [np.zeros(0)], [np.zeros(0)]
        mine = parallel.owned(ks, self.comm.rank, self.comm.size)   # (all of them on one process)
        for s in range(0, len(mine), chunk):
            E, F, Eref, Fref, nat, state = self._batch(mine[s:s + chunk], False)
            de.append((E - Eref) / nat)
            if self.config.use_forces:
                df.append((F - Fref).ravel())
                pred, ref, _ = self.stress_of(state)
                ds.append((pred - ref).ravel())
        de, df, ds = (np.concatenate(self.comm.gather_all(np.concatenate(x))) for x in (de, df, ds))
        if not self.config.use_forces:
            df = np.array([np.nan])
        return (float(np.sqrt(np.mean(de ** 2))), float(np.mean(np.abs(de))),
                float(np.sqrt(np.mean(df ** 2))), float(np.mean(np.abs(df))),
                float(np.sqrt(np.mean(ds ** 2))) if len(ds) else float("nan"))

    def parameters(self) -> List[np.ndarray]:
        return [n.get_parameters() for n in self.nets]

    def set_parameters(self, ps: Sequence[np.ndarray]):
        for n, p in zip(self.nets, ps):
            n.set_parameters(p)

    # -- training ------------------------------------------------------------------------------
    def train(self, output_dir=None, progress: bool = True, log=print) -> List[EpochStats]:
        import time

        cfg = self.config
        root = self.comm.rank == 0   # (data-parallel: one process writes and reports)
        if not root:
            progress, log = False, (lambda *a, **k: None)
        if self.stats is None:
            self.compute_scaling()
        if cfg.optimizer not in ("adam", "kalman"):
            raise ValueError(f"unknown optimizer {cfg.optimizer!r} (adam, kalman)")
        self._adam = {"m": [np.zeros(n.n_parameters) for n in self.nets],
                      "v": [np.zeros(n.n_parameters) for n in self.nets], "step": 0, "lr": cfg.learning_rate}
        self._kf = None
        if cfg.optimizer == "kalman":
            n_e, n_f = self._kalman_counts()
            S = kalman_streams(cfg, self.comm)
            n_w, updates = sum(n.n_parameters for n in self.nets), -(-(n_e + n_f) // S)
            blocks = kalman_blocks(self.nets, cfg.kalman.decoupling)
            # Over processes the full covariance goes in column blocks, a decoupled filter's blocks
            # whole. Several observations per update take the column-block filter on one process
            # too: its one-pass kernel beats BLAS's symm + syrk there (2,752 weights, 2
            # observations: 6.0 ms per update on one thread against 11.3, or 7.4 on two), while
            # symv + syr win for one observation (4.0 ms against 5.3 on one thread).
            self._kf = (DistributedKalmanFilter(n_w, cfg.kalman, updates, self.comm)
                        if blocks is None and (self.comm.size > 1 or S > 1) else
                        KalmanFilter(n_w, cfg.kalman, updates, blocks, self.comm))
        if self._resume_state is not None:
            self._restore_optimizer(self._resume_state)
            self._resume_state = None
        log(split_line(self))
        if self.comm.size > 1:
            log(f"data-parallel over {self.comm.size} MPI processes" +
                (f" ({kalman_streams(cfg, self.comm)} observations per Kalman update)" if cfg.optimizer == "kalman" else
                 f" (Adam batches of {cfg.batch_size} structures shared out)"))
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=cfg.epochs, initial=self.epoch, desc="train", unit="epoch")
        t_start, last = time.perf_counter(), 0.0
        if not self.history:
            self._record(0, 0.0, log)
        for epoch in range(self.epoch + 1, cfg.epochs + 1):
            if over_time(cfg, t_start, last, self.comm):
                log(f"time limit of {cfg.time_limit:g} s: stopping after epoch {self.epoch} (best: epoch "
                    f"{self.best_epoch})")
                if output_dir is not None:
                    self.checkpoint(os.path.join(output_dir, "checkpoint.npz"))
                break
            t0 = time.perf_counter()
            if cfg.optimizer == "adam":
                self._epoch_adam()
            else:
                self._epoch_kalman()
            last = time.perf_counter() - t0
            st = self._record(epoch, last, log)
            last = time.perf_counter() - t0          # (an epoch's cost includes its error evaluation)
            score = self.score(st)
            if score < self.best_score:
                self.best_score = score
                self.best_parameters = self.parameters()
                self.best_epoch = epoch
            self.epoch = epoch
            if bar:
                bar.update(1)
                bar.set_postfix(E=f"{st.rmse_energy_validation:.3g}", F=f"{st.rmse_force_validation:.3g}")
            stop = cfg.patience is not None and epoch - self.best_epoch >= cfg.patience
            if output_dir is not None:
                if root:
                    self.write_learning_curve(os.path.join(output_dir, "learning-curve.out"))
                if checkpoint_due(self, epoch, stop or epoch == cfg.epochs):
                    self.checkpoint(os.path.join(output_dir, "checkpoint.npz"))
            if stop:
                log(f"early stopping at epoch {epoch}: no better validation score since epoch {self.best_epoch}")
                break
        if bar:
            bar.close()
        if self.best_parameters is not None:
            self.set_parameters(self.best_parameters)
        if output_dir is not None:
            pr = self.predictions()   # (collective: every process its structures)
            if root:
                self.write(output_dir, pr)
        return self.history

    def score(self, st) -> float:
        """The best-epoch criterion of an epoch (data.selection_score) on the validation set
        (the training set when there is none)."""
        v = len(self.val_idx) > 0
        e = st.rmse_energy_validation if v else st.rmse_energy_train
        f = (st.rmse_force_validation if v else st.rmse_force_train) if self.config.use_forces else float("nan")
        return selection_score(e, f, self.config.selection_energy_weight, self.config.selection_force_weight)

    def _epoch_adam(self):
        cfg, A = self.config, self._adam
        order = self.rng.permutation(self.train_idx)
        comm = self.comm
        sizes = np.cumsum([n.n_parameters for n in self.nets])[:-1]
        for s in range(0, len(order), cfg.batch_size):
            batch = order[s:s + cfg.batch_size]
            if comm.size == 1:
                _, _, _, _, _, (loss, grads) = self._batch(batch, True)
            else:   # this process's share of the batch; the gradients summed over the processes
                mine = parallel.owned(batch, comm.rank, comm.size)
                if mine:
                    _, _, _, _, _, (loss, grads) = self._batch(mine, True, self.batch_counts(batch))
                else:
                    grads = [np.zeros(n.n_parameters) for n in self.nets]
                grads = np.split(comm.sum(np.concatenate(grads)), sizes)
            A["step"] += 1
            for e, net in enumerate(self.nets):
                A["m"][e], A["v"][e], step = adam_update(A["m"][e], A["v"][e], grads[e], A["step"], A["lr"], cfg)
                net.set_parameters(net.get_parameters() - step)
        A["lr"] *= cfg.learning_rate_decay

    def _kalman_counts(self):
        cfg = self.config
        n_e = int(round(cfg.energy_fraction * len(self.train_idx)))
        n_f = 0
        if cfg.use_forces:
            comps = 3 * sum(len(self.structures[k]) for k in self.train_idx)
            n_f = int(round(cfg.force_fraction * comps))
        return n_e, n_f

    def _epoch_kalman(self):
        """One epoch of per-observation Kalman updates, energies and force components mixed at
        random in the ratio of their counts (n2p2's combined update strategy)."""
        cfg = self.config
        n_e, n_f = self._kalman_counts()
        kinds = np.array([0] * n_e + [1] * n_f)
        self.rng.shuffle(kinds)
        e_cand = list(self.rng.permutation(self.train_idx))
        f_cand = [(k, a, c) for k in self.train_idx for a in range(len(self.structures[k])) for c in range(3)]
        f_order = list(self.rng.permutation(len(f_cand))) if cfg.use_forces else []
        if cfg.selection == "sort":
            e_cand = self._sorted_energy_candidates(e_cand)
            f_order = self._sorted_force_candidates(f_cand, f_order)
        elif cfg.selection not in ("random", "threshold"):
            raise ValueError(f"unknown selection {cfg.selection!r} (random, sort, threshold)")
        w = np.concatenate(self.parameters())
        sizes = np.cumsum([n.n_parameters for n in self.nets])[:-1]
        self._kalman_updates(kinds, e_cand, f_cand, f_order, w, sizes, kalman_streams(cfg, self.comm))

    def _threshold_candidate(self, kind, cand, next_candidate, last, memo):
        """n2p2's threshold selection: the first of up to threshold_trials candidates whose error
        relative to the training RMSE exceeds the threshold, else the largest of them."""
        cfg = self.config
        best = None
        for trial in range(cfg.threshold_trials):
            if trial:
                cand = next_candidate(kind)
            xi, _ = self._observation(*cand, jacobian=False, memo=memo)
            if kind == 0:
                frac = abs(xi / self.ce) / (len(self.structures[cand[0]]) * max(last.rmse_energy_train, 1e-300))
                thr = cfg.energy_threshold
            else:
                frac = abs(xi * self.cl / self.ce) / max(last.rmse_force_train, 1e-300)
                thr = cfg.force_threshold
            if best is None or frac > best[0]:
                best = (frac, cand)
            if frac > thr:
                break
        return best[1]

    def _kalman_updates(self, kinds, e_cand, f_cand, f_order, w, sizes, S):
        """The epoch's Kalman updates, S observations each (n2p2's multi-stream update; S = 1:
        one observation per update): stream j draws its candidates, in the epoch's order, from
        the structures with index % S == j (its process's data: stream j runs on process j % P),
        and the observations of an update are gathered, so that every process makes the same
        update. One process with S streams takes the same steps. Threshold selection: each
        stream tries its own candidates (n2p2 does so per MPI task)."""
        cfg, comm = self.config, self.comm
        e_part = [[k for k in e_cand if k % S == j] for j in range(S)]
        f_part = [[t for t in f_order if f_cand[t][0] % S == j] for j in range(S)]
        pos = [{0: 0, 1: 0} for _ in range(S)]
        last = self.history[-1]

        def next_candidate(j, kind):
            cands = e_part[j] if kind == 0 else f_part[j]
            c = cands[pos[j][kind] % len(cands)]
            pos[j][kind] += 1
            return (c, None, 0) if kind == 0 else f_cand[c]

        for u in range(0, len(kinds), S):
            mine = []
            memo = {} if cfg.selection == "threshold" else None   # (forward passes at this update's weights)
            for j, kind in enumerate(kinds[u:u + S]):
                # (stream j runs on process j % P, which alone keeps its place in its candidates)
                if j % comm.size != comm.rank or not (e_part[j] if kind == 0 else f_part[j]):
                    continue
                cand = next_candidate(j, kind)
                if memo is not None:
                    cand = self._threshold_candidate(kind, cand, lambda kd, j=j: next_candidate(j, kd), last, memo)
                xi, H = self._observation(*cand, memo=memo)
                if kind == 1:
                    xi, H = xi * cfg.force_weight, H * cfg.force_weight
                mine.append(np.concatenate([[j, xi], H]))
            rows = parallel.gathered_rows(comm, mine, len(w) + 2)
            w = self._kf.update_many(w, rows[:, 2:], rows[:, 1])
            self.set_parameters(np.split(w, sizes))

    def _sorted_energy_candidates(self, cand):
        E, _, Eref, _, nat, _ = self._forward(cand)
        return [cand[i] for i in np.argsort(-np.abs((E - Eref) / nat))]

    def _sorted_force_candidates(self, f_cand, f_order):
        err = np.empty(len(f_cand))
        offs, i = {}, 0
        for k in self.train_idx:
            _, F, _, Fref, _, _ = self._forward([k])
            offs[k] = np.abs(F - Fref)
        for t, (k, a, c) in enumerate(f_cand):
            err[t] = offs[k][a, c]
        return list(np.argsort(-err))

    def _record(self, epoch, seconds, log):
        tr = self.errors(self.train_idx)
        te = self.errors(self.test_idx)
        va = self.errors(self.val_idx)
        st = EpochStats(epoch, tr[0], te[0], tr[2], te[2], tr[1], te[1], tr[3], te[3], seconds, tr[4], te[4],
                        rmse_energy_validation=va[0], rmse_force_validation=va[2], mae_energy_validation=va[1],
                        mae_force_validation=va[3], rmse_stress_validation=va[4])
        self.history.append(st)
        return st

    # -- checkpoints ---------------------------------------------------------------------------
    def checkpoint(self, path):
        """Everything needed to continue exactly as if uninterrupted (written atomically; every
        process of a data-parallel run calls it, one writes)."""
        state = run_state(self)
        if self.comm.rank != 0:
            return
        for e in range(len(self.nets)):
            state[f"w{e}"] = self.nets[e].get_parameters()
            state[f"best{e}"] = self.best_parameters[e] if self.best_parameters is not None else np.zeros(0)
            state[f"adam_m{e}"] = self._adam["m"][e]
            state[f"adam_v{e}"] = self._adam["v"][e]
        save_state(path, state)

    def resume(self, path):
        """Load a checkpoint written by ``train``; the next ``train`` call continues from it."""
        st = load_run_state(self, path, EpochStats, len(self.nets))
        self.set_parameters([st[f"w{e}"] for e in range(len(self.nets))])
        self.best_parameters = ([st[f"best{e}"] for e in range(len(self.nets))]
                                if st["best0"].size else None)
        self.transform = scaling_transform(self.stats, self.model.scaling_mode, self.model.scale_min,
                                           self.model.scale_max)
        self._resume_state = st
        return self

    def _restore_optimizer(self, st):
        restore_optimizer_state(self, st)
        self._adam["m"] = [st[f"adam_m{e}"] for e in range(len(self.nets))]
        self._adam["v"] = [st[f"adam_v{e}"] for e in range(len(self.nets))]

    # -- output --------------------------------------------------------------------------------
    def write_learning_curve(self, path):
        write_learning_curve(path, self.history, "energies per atom, force components; potential units")

    def predictions(self):
        """Reference and predicted energies per atom and force components, with their set."""
        # (data-parallel: each process its own structures, gathered; collective)
        every = list(self.train_idx) + list(self.val_idx) + list(self.test_idx)
        mine = {}
        for k in parallel.owned(every, self.comm.rank, self.comm.size):
            E, F, Eref, Fref, nat, _ = self._forward([k])
            mine[k] = (Eref / nat, E / nat, Fref.ravel() if self.config.use_forces else None,
                       F.ravel() if self.config.use_forces else None)
        got = {}
        for part in self.comm.gather_objects(mine):
            got.update(part)
        rows = {"E_ref": [], "E": [], "E_set": [], "F_ref": [], "F": [], "F_set": []}
        for name, idx in (("train", self.train_idx), ("validation", self.val_idx), ("test", self.test_idx)):
            for k in idx:
                e_ref, e, f_ref, f = got[k]
                rows["E_ref"].append(e_ref)
                rows["E"].append(e)
                rows["E_set"].append([name])
                if self.config.use_forces:
                    rows["F_ref"].append(f_ref)
                    rows["F"].append(f)
                    rows["F_set"].append([name] * f.size)
        return {k: np.concatenate(v) if v else np.zeros(0) for k, v in rows.items()}

    def write_plots(self, output_dir, predictions=None):
        """parity-*.dat (always) and learning-curve.png, parity-*.png when matplotlib is
        installed (hdnnp[plot]); `predictions`: those of predictions(), when at hand."""
        pr = predictions if predictions is not None else self.predictions()
        for key, unit in (("E", "energy per atom"), ("F", "force component")):
            if len(pr[f"{key}_ref"]):
                rows = "\n".join(f"{r:.10e} {p:.10e} {st}" for r, p, st in zip(pr[f"{key}_ref"], pr[key], pr[f"{key}_set"]))
                name = "parity-energy.dat" if key == "E" else "parity-forces.dat"
                _core.write_file_atomic(os.path.join(output_dir, name),
                                        f"# reference  predicted  set ({unit}, the potential's units)\n" + rows + "\n")
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            return
        from . import plots

        eu, fu = self.plot_units()
        if self.history:
            plots.learning_curve(self.history, os.path.join(output_dir, "learning-curve.png"),
                                 units=(f"energy per atom, {eu}", f"force, {fu}"), best_epoch=self.best_epoch)
        plots.parity(pr["E_ref"], pr["E"], os.path.join(output_dir, "parity-energy.png"), f"energy per atom ({eu})",
                     pr["E_set"])
        if self.config.use_forces:
            plots.parity(pr["F_ref"], pr["F"], os.path.join(output_dir, "parity-forces.png"),
                         f"force component ({fu})", pr["F_set"])

    def plot_units(self):
        """(energy unit, force unit) for plot labels: the potential's declared units, or the words
        'potential's units' when input.nn declares none."""
        e, l = self.model.energy_unit, self.model.length_unit
        if not e or not l:
            return "potential's energy unit", "potential's energy/length unit"
        return e, f"{e}/{l}"

    def write(self, output_dir, predictions=None):
        """input.nn (copied), scaling.data, weights.ZZZ.data: a potential n2p2 and hdnnp load
        (`predictions`: for the parity files, when at hand)."""
        os.makedirs(output_dir, exist_ok=True)
        with open(os.path.join(self.settings_dir, "input.nn")) as fh:
            text = fh.read()
        text = pair_baseline.written_input_nn(text, self._baseline_lines)
        if self.config.fit_offsets:
            text += "\n# atomic energy offsets fitted to the training energies (hdnnp)\n" + "".join(
                f"atom_energy {e} {x:.16e}\n" for e, x in zip(self.elements, self.offsets))
        _core.write_file_atomic(os.path.join(output_dir, "input.nn"), text)
        _core.write_file_atomic(os.path.join(output_dir, "scaling.data"), format_scaling(self.stats))
        for z, net in zip(self.model.atomic_numbers, self.nets):
            _core.write_file_atomic(os.path.join(output_dir, f"weights.{z:03d}.data"), format_weights(net))
        self.write_plots(output_dir, predictions)
        info = {"best_epoch": self.best_epoch, "structures": split_sizes(self),
                "best": asdict(self.history[self.best_epoch]) if 0 <= self.best_epoch < len(self.history) else None,
                "config": asdict(self.config), "final": asdict(self.history[-1]) if self.history else None}
        _core.write_file_atomic(os.path.join(output_dir, "training.json"), json.dumps(info, indent=1) + "\n")


def normalization_from_data(structures: Sequence, use_forces: bool = True):
    """(mean_energy, conv_energy, conv_length) as n2p2's nnp-norm computes them: the mean and
    sample standard deviation of the energy per atom, the standard deviation of the force
    components, conv_energy = 1/sigma_E, conv_length = sigma_F/sigma_E (1 without forces)."""
    e = np.array([a.info["energy"] / len(a) for a in structures])
    if len(e) < 2:
        raise DataError("normalisation needs at least two structures")
    sigma_e = float(np.std(e, ddof=1))
    if not sigma_e > 0:
        raise DataError("the energies per atom are all equal: no energy scale to normalise with")
    conv_length = 1.0
    if use_forces:
        f = np.concatenate([np.asarray(a.arrays["ref_forces"]).ravel() for a in structures])
        conv_length = float(np.std(f, ddof=1)) / sigma_e
    return float(e.mean()), 1.0 / sigma_e, conv_length


def normalize_input_nn(settings_dir, structures: Sequence, use_forces: bool = True):
    """Write mean_energy, conv_energy and conv_length computed from `structures` into
    settings_dir/input.nn (replacing earlier ones; atomically). Training then runs in these
    normalised internal units; the written potential converts back by itself."""
    path = os.path.join(os.fspath(settings_dir), "input.nn")
    me, ce, cl = normalization_from_data(structures, use_forces)
    with open(path) as fh:
        lines = [l for l in fh.read().splitlines()
                 if not (l.split()[:1] and l.split()[0] in ("mean_energy", "conv_energy", "conv_length"))]
    head = ["# normalisation from the training data (hdnnp, as nnp-norm)", f"mean_energy {me:.16e}",
            f"conv_energy {ce:.16e}", f"conv_length {cl:.16e}"]
    _core.write_file_atomic(path, "\n".join(head + lines) + "\n")
    return me, ce, cl
