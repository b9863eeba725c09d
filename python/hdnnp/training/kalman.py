"""Global extended Kalman filter with n2p2's semantics (KalmanFilter.cpp, THEORY.md B.8).

State w (n), covariance P (n x n, P0 = I/epsilon), one observation per update (an energy or
one force component): H = dy/dw (n), error xi = y_ref - y.

standard (type 0):   X = P H;  a = H.X + 1/eta;  K = X/a;  P <- P - K X^T + q I;  w <- w + K xi
                     eta <- min(eta e^{etatau}, etamax) before, q <- max(q e^{-qtau}, qmin) after
fading memory (1):   a = H.X + lambda;  P <- (P - K X^T)/lambda + q I;  lambda <- nu lambda + 1 - nu

etatau and qtau are per epoch and divided by the number of updates per epoch, as n2p2 does.
P is kept symmetric and updated in place with BLAS (symv, syr): O(n^2) per update.

Decoupled filters (`decoupling`, hdnnp's own; n2p2 has none): P block-diagonal over groups of
weights (each element's network, or each layer of each network), as in the element- and
node-decoupled filters of Gastegger & Marquetand (JCTC 11, 2187 (2015)) and Puskorius & Feldkamp:
the gain of block b is P_b H_b / (sum_b H_b P_b H_b + 1/eta), so all blocks see the same
innovation; work and memory sum_b n_b^2 instead of n^2.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.linalg import blas

from .. import _core


@dataclass
class KalmanSettings:
    kalman_type: int = 0
    epsilon: float = 1e-2
    q0: float = 0.01
    qtau: float = 2.302
    qmin: float = 1e-6
    eta: float = 0.01
    etatau: float = 2.302
    etamax: float = 1.0
    lambda_: float = 0.96
    nu: float = 0.9995
    decoupling: str = "none"      # none | element | layer (hdnnp; see the module)


class KalmanFilter:
    """`blocks`: sizes of consecutive groups of weights with a covariance each (decoupled
    filter); None: one block, the full covariance."""

    def __init__(self, n: int, settings: KalmanSettings, updates_per_epoch: int, blocks=None, comm=None):
        """`comm` (parallel.py, more than one process, more than one block): the blocks are shared
        out, each process keeping and updating its own (the largest first to the least loaded);
        P H^T is summed over the processes. Same arithmetic as one process."""
        self._start(n, settings, updates_per_epoch)
        blocks = [n] if blocks is None else [int(b) for b in blocks]
        if sum(blocks) != n or min(blocks) < 1:
            raise ValueError(f"Kalman filter blocks {blocks} do not partition {n} weights")
        edges = np.concatenate([[0], np.cumsum(blocks)])
        self.slices = [slice(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:])]
        self.comm = comm if comm is not None and comm.size > 1 and len(blocks) > 1 else None
        self.mine = list(range(len(blocks)))
        if self.comm is not None:
            load = np.zeros(self.comm.size)
            owner = {}
            for b in sorted(range(len(blocks)), key=lambda b: -blocks[b]):
                owner[b] = int(np.argmin(load))
                load[owner[b]] += float(blocks[b]) ** 2
            self.mine = [b for b in range(len(blocks)) if owner[b] == self.comm.rank]
        self.Ps = [np.asfortranarray(np.eye(m) / settings.epsilon) if b in self.mine else None
                   for b, m in enumerate(blocks)]

    def _all_blocks(self) -> list:
        """Every block's matrix (shared-out blocks gathered: collective)."""
        if self.comm is None:
            return list(self.Ps)
        got = {}
        for part in self.comm.gather_objects({b: self.Ps[b] for b in self.mine}):
            got.update(part)
        return [got[b] for b in range(len(self.slices))]

    @property
    def P(self):
        """The covariance (one block: the matrix itself, upper triangle valid; shared-out
        blocks: gathered, collective)."""
        if len(self.Ps) == 1:
            return self.Ps[0]
        P = np.zeros((self.n, self.n), order="F")
        for sl, Pb in zip(self.slices, self._all_blocks()):
            P[sl, sl] = Pb
        return P

    def _start(self, n: int, settings: KalmanSettings, updates_per_epoch: int):
        """The filter's scalars at the start (eta, q, lambda and their schedules)."""
        self.s = settings
        self.n = n
        self.q = settings.q0
        self.eta = settings.eta
        self.lam = settings.lambda_
        u = max(int(updates_per_epoch), 1)
        self.qdecay = np.exp(-settings.qtau / u)
        self.etagrow = np.exp(settings.etatau / u)
        self.count = 0

    def _grow_eta(self):
        """Before an update: eta <- min(eta e^{etatau}, etamax) (standard filter)."""
        if self.s.kalman_type == 0:
            self.eta = min(self.eta * self.etagrow, self.s.etamax)

    def _noise(self) -> float:
        """The observation-noise term of the innovation: 1/eta, or lambda (fading memory)."""
        return 1.0 / self.eta if self.s.kalman_type == 0 else self.lam

    def _gain(self, H: np.ndarray, X: np.ndarray):
        """For S observations (rows of H) and X = P H^T: Y with Y Y^T = X A^-1 X^T and the gain
        K = X A^-1, A = H X + noise I."""
        A = H @ X + self._noise() * np.eye(H.shape[0])
        L = np.linalg.cholesky(0.5 * (A + A.T))
        Y = np.linalg.solve(L, X.T).T
        K = np.linalg.solve(L.T, np.linalg.solve(L, X.T)).T
        return Y, K

    def _advance(self):
        """After an update: lambda <- nu lambda + 1 - nu (fading memory), q <- max(q e^{-qtau},
        qmin), one more update counted."""
        if self.s.kalman_type == 1:
            self.lam = self.s.nu * self.lam + 1.0 - self.s.nu
        self.q = max(self.q * self.qdecay, self.s.qmin)
        self.count += 1

    def _finish_covariance(self):
        """P <- P / lambda (fading memory) + q I, after P - X A^-1 X^T (before _advance)."""
        for Pb in (self.Ps[b] for b in self.mine):
            if self.s.kalman_type == 1:
                Pb /= self.lam
            if self.q > 0.0:
                Pb[np.diag_indices(len(Pb))] += self.q

    def update(self, w: np.ndarray, H: np.ndarray, xi: float) -> np.ndarray:
        """New weights after one observation with Jacobian H and error xi (w is not modified)."""
        H = np.ascontiguousarray(H, dtype=float)
        self._grow_eta()
        X = np.zeros(self.n)
        for b in self.mine:
            X[self.slices[b]] = blas.dsymv(1.0, self.Ps[b], H[self.slices[b]], lower=0)
        if self.comm is not None:
            X = self.comm.sum(X)
        a = float(H @ X) + self._noise()
        K = X / a
        # P - K X^T = P - X X^T / a (symmetric): rank-1 update of the upper triangle in place
        for b in self.mine:
            self.Ps[b] = blas.dsyr(-1.0 / a, X[self.slices[b]], a=self.Ps[b], lower=0, overwrite_a=1)
        self._finish_covariance()
        self._advance()
        return w + K * xi

    def update_many(self, w: np.ndarray, H: np.ndarray, xi: np.ndarray) -> np.ndarray:
        """New weights after S observations at once (rows of H: their Jacobians, xi: errors), as
        n2p2 combines the observations of its MPI tasks: X = P H^T, A = H X + 1/eta I (fading
        memory: lambda I), K = X A^-1, P <- P - K X^T (+ q I), w <- w + K xi; eta, q and lambda
        advance once per update."""
        H = np.atleast_2d(np.asarray(H, dtype=float))
        if H.shape[0] == 1:
            return self.update(w, H[0], float(np.asarray(xi).ravel()[0]))
        self._grow_eta()
        Ht = np.asfortranarray(H.T)
        X = np.zeros((self.n, H.shape[0]))
        for b in self.mine:     # P H^T (P's upper triangle)
            X[self.slices[b]] = blas.dsymm(1.0, self.Ps[b], Ht[self.slices[b]], side=0, lower=0)
        if self.comm is not None:
            X = self.comm.sum(X)
        Y, K = self._gain(H, X)
        for b in self.mine:
            self.Ps[b] = blas.dsyrk(-1.0, np.asfortranarray(Y[self.slices[b]]), beta=1.0, c=self.Ps[b], trans=0,
                                    lower=0, overwrite_c=1)
        self._finish_covariance()
        self._advance()
        return w + K @ np.asarray(xi, dtype=float)

    def state(self) -> dict:
        """The filter's state; P as its upper triangle, packed (symv/syr with lower=0 never read
        the rest): n(n+1)/2 numbers, half the full matrix, exact (a decoupled filter: each block's,
        one after the other)."""
        packed = np.concatenate([Pb[np.triu_indices(len(Pb))] for Pb in self._all_blocks()])
        return {"P_upper": packed, "q": self.q, "eta": self.eta, "lam": self.lam, "count": self.count}

    def load_state(self, st: dict):
        if "P_upper" in st:
            packed, o = np.asarray(st["P_upper"]), 0
            if len(packed) != self.state_bytes // 8:
                raise ValueError("the checkpoint's Kalman covariance does not match this filter's weights or "
                                 "decoupling")
            for b, sl in enumerate(self.slices):
                m = sl.stop - sl.start
                if b in self.mine:
                    P = np.zeros((m, m), order="F")
                    P[np.triu_indices(m)] = packed[o:o + m * (m + 1) // 2]
                    self.Ps[b] = P
                o += m * (m + 1) // 2
        else:  # (checkpoints of earlier versions: the full matrix)
            self.Ps = [np.asfortranarray(np.asarray(st["P"])[sl, sl]) if b in self.mine else None
                       for b, sl in enumerate(self.slices)]
        self.q, self.eta, self.lam, self.count = float(st["q"]), float(st["eta"]), float(st["lam"]), int(st["count"])

    @property
    def state_bytes(self) -> int:
        return sum(8 * (sl.stop - sl.start) * (sl.stop - sl.start + 1) // 2 for sl in self.slices)


class DistributedKalmanFilter(KalmanFilter):
    """The same filter with its covariance shared out over the processes of a data-parallel run
    (parallel.py): the upper triangle's columns in 2P blocks, process r holding blocks r and
    2P-1-r (equal areas), each as its rectangle above the diagonal block and the diagonal block's
    upper triangle. An update computes P H^T block by block and sums it over the processes, then
    every process updates its blocks: O(n^2 / P) work and memory per process instead of O(n^2)."""

    def __init__(self, n: int, settings: KalmanSettings, updates_per_epoch: int, comm):
        self.comm = comm
        self._start(n, settings, updates_per_epoch)
        nb = 2 * comm.size
        edges = [n * b // nb for b in range(nb + 1)]
        self.blocks = []   # (c0, c1, R = P[:c0, c0:c1], T = P[c0:c1, c0:c1] upper)
        for b in sorted({comm.rank, nb - 1 - comm.rank}):
            c0, c1 = edges[b], edges[b + 1]
            self.blocks.append([c0, c1, np.zeros((c0, c1 - c0), order="F"),
                                np.asfortranarray(np.eye(c1 - c0) / settings.epsilon)])
        self.Ps = None
        self._pending = None   # (Y, div, q) of the last update, applied by the next pass

    def update(self, w: np.ndarray, H: np.ndarray, xi: float) -> np.ndarray:
        return self.update_many(w, np.atleast_2d(H), np.atleast_1d(xi))

    def update_many(self, w: np.ndarray, H: np.ndarray, xi: np.ndarray) -> np.ndarray:
        # The covariance's update P <- (P - Y Y^T) / div + q I is deferred to the next update's
        # pass over the blocks, which applies it and computes P H^T in one read and write of each
        # block (_core.kalman_block_pass); state() applies a pending one.
        H = np.atleast_2d(np.asarray(H, dtype=float))
        self._grow_eta()
        h = np.ascontiguousarray(H.T)                                 # n x S
        X = np.zeros((self.n, H.shape[0]))
        Y, div, q = self._pending if self._pending is not None else (None, 1.0, 0.0)
        for c0, c1, R, T in self.blocks:
            _core.kalman_block_pass(R, T, Y, div, q, h, X)
        self._pending = None
        Y, K = self._gain(H, self.comm.sum(X))
        self._pending = (np.ascontiguousarray(Y), self.lam if self.s.kalman_type == 1 else 1.0,
                         self.q if self.q > 0.0 else 0.0)
        self._advance()
        return w + K @ np.asarray(xi, dtype=float)

    def _flush(self):
        """Apply a pending covariance update (collective-free)."""
        if self._pending is not None:
            Y, div, q = self._pending
            for c0, c1, R, T in self.blocks:
                _core.kalman_block_pass(R, T, Y, div, q, None, np.zeros((0, 0)))
            self._pending = None

    @property
    def P(self):
        """The whole covariance, gathered (collective: every process calls it)."""
        return self._full_upper()

    def _full_upper(self) -> np.ndarray:
        """The whole covariance (upper triangle filled), gathered from every process (collective)."""
        self._flush()
        mine = [np.concatenate([[c0, c1], R.ravel(order="F"), np.triu(T).ravel(order="F")])
                for c0, c1, R, T in self.blocks]
        P = np.zeros((self.n, self.n), order="F")
        for part in self.comm.gather_all(np.concatenate(mine)):
            o = 0
            while o < len(part):
                c0, c1 = int(part[o]), int(part[o + 1])
                w = c1 - c0
                o += 2
                P[:c0, c0:c1] = part[o:o + c0 * w].reshape((c0, w), order="F")
                o += c0 * w
                P[c0:c1, c0:c1] = part[o:o + w * w].reshape((w, w), order="F")
                o += w * w
        return P

    def state(self) -> dict:
        """As KalmanFilter.state (the same checkpoint format; collective: every process calls it)."""
        iu = np.triu_indices(self.n)
        return {"P_upper": self._full_upper()[iu], "q": self.q, "eta": self.eta, "lam": self.lam,
                "count": self.count}

    def load_state(self, st: dict):
        P = np.zeros((self.n, self.n), order="F")
        if "P_upper" in st:
            P[np.triu_indices(self.n)] = st["P_upper"]
        else:
            P = np.triu(np.asarray(st["P"]))
        for blk in self.blocks:
            c0, c1 = blk[0], blk[1]
            blk[2] = np.array(P[:c0, c0:c1], order="F")
            blk[3] = np.array(P[c0:c1, c0:c1], order="F")
        self._pending = None
        self.q, self.eta, self.lam, self.count = float(st["q"]), float(st["eta"]), float(st["lam"]), int(st["count"])

    @property
    def state_bytes(self) -> int:
        return 8 * self.n * (self.n + 1) // 2
