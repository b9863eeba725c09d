"""Element networks (prediction of 3G/4G/CENT and training): batched numpy forward passes and exact weight gradients.

Same semantics as the C++ core (n2p2's NeuralNetwork): layer l computes
``y_l = f_l(u_l / n_{l-1}^[normalize_nodes])`` with ``u_l = W_l y_{l-1} + b_l``. Parameters are
exchanged in n2p2's weight-file order (per layer: weights with the source neuron outer and the
target neuron inner, then the biases).

``loss_gradient`` returns, for seeds ``a_i`` (dL/dE_i) and ``v_i`` (dL/dg_i, where
``g_i = dE_i/dx_i`` is the input gradient that forces are made of), the exact gradient
``sum_i a_i dE_i/dw + sum_i d(g_i . v_i)/dw`` in one reverse pass over the primal and tangent
(forward-mode along v) computations, so force losses never need per-component Jacobians.

The C++ core does the work (``_core.Network``: NeuralNetwork::forward_batch/loss_gradient);
``forward_reference``/``loss_gradient_reference`` are the same mathematics in numpy, kept as an
independent check.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional, Sequence

import numpy as np

from . import _core


def _logistic(x):
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def activation(letter: str, x: np.ndarray):
    """f, f', f'' of an n2p2 activation letter."""
    if letter == "l":
        return x, np.ones_like(x), np.zeros_like(x)
    if letter == "t":
        f = np.tanh(x)
        d = 1.0 - f * f
        return f, d, -2.0 * f * d
    if letter in ("s", "S"):
        s = _logistic(x)
        d = s * (1.0 - s)
        d2 = d * (1.0 - 2.0 * s)
        return (s, d, d2) if letter == "s" else (1.0 - s, -d, -d2)
    if letter == "p":
        s = _logistic(x)
        return np.logaddexp(0.0, x), s, s * (1.0 - s)
    if letter == "r":
        pos = x > 0.0
        return np.where(pos, x, 0.0), pos.astype(float), np.zeros_like(x)
    if letter == "g":
        f = np.exp(-0.5 * x * x)
        return f, -x * f, (x * x - 1.0) * f
    if letter == "c":
        c = np.cos(x)
        return c, -np.sin(x), -c
    if letter == "e":
        f = np.exp(-x)
        return f, -f, f
    if letter == "h":
        return x * x, 2.0 * x, np.full_like(x, 2.0)
    raise ValueError(f"unknown activation letter {letter!r} (known: l t s p r g c S e h)")


@dataclass
class ElementNetwork:
    sizes: List[int]                  # input, hidden..., 1
    activations: str                  # one letter per non-input layer
    normalize: bool = False
    W: List[np.ndarray] = field(default_factory=list)  # (n_out, n_in)
    b: List[np.ndarray] = field(default_factory=list)

    def __post_init__(self):
        if len(self.activations) != len(self.sizes) - 1:
            raise ValueError("one activation per non-input layer")
        if not self.W:
            self.W = [np.zeros((o, i)) for i, o in zip(self.sizes[:-1], self.sizes[1:])]
            self.b = [np.zeros(o) for o in self.sizes[1:]]
        self._core = _core.Network(list(self.sizes), self.activations, self.normalize)
        self._core.set_parameters(self.get_parameters())

    @property
    def n_parameters(self) -> int:
        return sum(o * (i + 1) for i, o in zip(self.sizes[:-1], self.sizes[1:]))

    # -- parameters in n2p2 order ---------------------------------------------------------------
    def get_parameters(self) -> np.ndarray:
        return np.concatenate([np.concatenate([W.T.ravel(), b]) for W, b in zip(self.W, self.b)])

    def set_parameters(self, p: np.ndarray):
        p = np.asarray(p, dtype=float)
        if p.shape != (self.n_parameters,):
            raise ValueError(f"expected {self.n_parameters} parameters, got {p.shape}")
        k = 0
        for l, (i, o) in enumerate(zip(self.sizes[:-1], self.sizes[1:])):
            self.W[l] = p[k:k + i * o].reshape(i, o).T.copy()
            k += i * o
            self.b[l] = p[k:k + o].copy()
            k += o
        self._core.set_parameters(np.ascontiguousarray(p))

    def pack(self, W: Sequence[np.ndarray], b: Sequence[np.ndarray]) -> np.ndarray:
        """Gradients shaped like (W, b) as one vector in n2p2 order."""
        return np.concatenate([np.concatenate([w.T.ravel(), c]) for w, c in zip(W, b)])

    def _inv(self, l: int) -> float:
        return 1.0 / self.sizes[l] if self.normalize else 1.0

    # -- evaluation -----------------------------------------------------------------------------
    def forward(self, X: np.ndarray, want_input_gradient: bool = True):
        """Energies E (N,), input gradients g = dE/dX (N, K) or None, and the cache for
        loss_gradient (C++ core)."""
        return self._core.forward(np.ascontiguousarray(X, dtype=np.float64), want_input_gradient)

    def loss_gradient(self, cache, a: Optional[np.ndarray], V: Optional[np.ndarray]):
        """Gradient (n2p2 order) of sum_i a_i E_i + sum_i g_i . V_i with respect to the parameters."""
        a = None if a is None else np.ascontiguousarray(a, dtype=np.float64).reshape(-1)
        V = None if V is None else np.ascontiguousarray(V, dtype=np.float64)
        return self._core.loss_gradient(cache, a, V)

    def forward_reference(self, X: np.ndarray, want_input_gradient: bool = True):
        """Energies E (N,) and input gradients g = dE/dX (N, K); keeps what the gradient needs."""
        ys, d1s, d2s = [X], [], []
        y = X
        for l, (W, b, a) in enumerate(zip(self.W, self.b, self.activations)):
            inv = self._inv(l)
            u = y @ W.T + b
            f, d1, d2 = activation(a, u * inv)
            y = f
            ys.append(y)
            d1s.append(d1 * inv)
            d2s.append(d2 * inv * inv)
        cache = (ys, d1s, d2s)
        E = ys[-1][:, 0]
        if not want_input_gradient:
            return E, None, cache
        delta = d1s[-1]                       # dE/du_L, (N, 1)
        for l in range(len(self.W) - 1, -1, -1):
            gy = delta @ self.W[l]            # dE/dy_{l-1}
            if l == 0:
                return E, gy, cache
            delta = gy * d1s[l - 1]

    def loss_gradient_reference(self, cache, a: Optional[np.ndarray], V: Optional[np.ndarray]):
        """numpy version of loss_gradient, for a cache from forward_reference."""
        ys, d1s, d2s = cache
        N = ys[0].shape[0]
        L = len(self.W)
        gW = [np.zeros_like(W) for W in self.W]
        gb = [np.zeros_like(b) for b in self.b]
        # tangent forward pass along V
        udots = []
        if V is not None:
            ydot = V
            for l in range(L):
                udot = ydot @ self.W[l].T
                udots.append(udot)
                ydot = d1s[l] * udot
        ybar = (np.zeros((N, 1)) if a is None else a.reshape(N, 1).astype(float))
        ydotbar = np.ones((N, 1)) if V is not None else None
        for l in range(L - 1, -1, -1):
            ubar = d1s[l] * ybar
            if V is not None:
                udotbar = d1s[l] * ydotbar
                ubar = ubar + d2s[l] * udots[l] * ydotbar
                ydot_prev = V if l == 0 else d1s[l - 1] * udots[l - 1]
                gW[l] += udotbar.T @ ydot_prev
                if l > 0:
                    ydotbar = udotbar @ self.W[l]
            gW[l] += ubar.T @ ys[l]
            gb[l] += ubar.sum(axis=0)
            if l > 0:
                ybar = ubar @ self.W[l]
        return self.pack(gW, gb)


def initialise(net: ElementNetwork, rng: np.random.Generator, method: str = "nguyen-widrow",
               wmin: float = -1.0, wmax: float = 1.0):
    """Random weights: uniform in [wmin, wmax]; 'n2p2' (nnp-train's default: uniform in [wmin,
    wmax], weights into tanh layers scaled by sqrt(6/(n_in+n_out)), biases 0); 'glorot' (Glorot-Bengio
    uniform with limit sqrt(6/(n_in+n_out)), biases 0); 'nguyen-widrow' (uniform, then each
    hidden layer's weights rescaled to norm 0.7 H^(1/n_in) per neuron, biases spread over
    [-that, that])."""
    for l, (i, o) in enumerate(zip(net.sizes[:-1], net.sizes[1:])):
        if method == "uniform":
            net.W[l] = rng.uniform(wmin, wmax, (o, i))
            net.b[l] = rng.uniform(wmin, wmax, o)
        elif method == "n2p2":  # nnp-train without nguyen_widrow_weights_*: uniform, then Glorot on tanh layers
            W = rng.uniform(wmin, wmax, (o, i))
            net.W[l] = W * np.sqrt(6.0 / (i + o)) if net.activations[l] == "t" else W
            net.b[l] = np.zeros(o)
        elif method == "glorot":
            lim = np.sqrt(6.0 / (i + o))
            net.W[l] = rng.uniform(-lim, lim, (o, i))
            net.b[l] = np.zeros(o)
        elif method == "nguyen-widrow":
            W = rng.uniform(-1.0, 1.0, (o, i))
            if l < len(net.W) - 1:
                beta = 0.7 * o ** (1.0 / i)
                W *= beta / np.maximum(np.linalg.norm(W, axis=1, keepdims=True), 1e-300)
                net.b[l] = rng.uniform(-beta, beta, o)
            else:
                W *= np.sqrt(6.0 / (i + o))
                net.b[l] = np.zeros(o)
            net.W[l] = W
        else:
            raise ValueError(f"unknown initialisation {method!r} (uniform, glorot, nguyen-widrow, n2p2)")
    net.set_parameters(net.get_parameters())  # the core's copy
