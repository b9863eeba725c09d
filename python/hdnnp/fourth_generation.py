"""4th-generation HDNNP prediction, first part: non-periodic energies, charges and forces (numpy).

THEORY.md B.0, B.1, B.3, B.5 (n2p2's Mode::evaluateNNP): electronegativity networks
chi_i = NN_e(G_i) -> charge equilibration with Gaussian charges under the total charge (dense KKT
solve) -> short networks on [G_i, Q_i] -> E = sum_i E_i^short + E_elec + offsets, with the
screened electrostatic energy E_elec = sum_{i<j} Q_i Q_j erf(r_ij / (sqrt(2) gamma_ij)) f_s(r_ij)
/ (4 pi eps0 r_ij). Symmetry functions come from the C++ core. Not yet: stress,
periodic systems (Ewald), normalised potentials, the C++ implementation; this module is the
reference those will be checked against. Forces use one adjoint solve with the same LU
factorisation as the charges.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from typing import Optional

import numpy as np
import scipy.linalg
from scipy.special import erf

from . import _core
from .training.n2p2 import read_keyword_lines
from .training.network import ElementNetwork

_4G_ONLY = ("nnp_generation", "nnp_type", "global_hidden_layers_electrostatic", "global_nodes_electrostatic",
            "global_activation_electrostatic", "initial_hardness", "fixed_gausswidth", "screen_electrostatics",
            "ewald_truncation_error_method", "ewald_prec", "four_pi_epsilon")


def _column(path: str) -> np.ndarray:
    rows = []
    with open(path) as fh:
        for no, line in enumerate(fh, 1):
            tok = line.split("#", 1)[0].split()
            if tok:
                try:
                    rows.append(float(tok[0]))
                except ValueError:
                    raise ValueError(f"{path}:{no}: not a number: {tok[0]!r}") from None
    return np.array(rows)


class FourthGeneration:
    """A 4G potential directory (input.nn with nnp_generation 4, scaling.data, weights.ZZZ.data,
    weightse.ZZZ.data, hardness.ZZZ.data), evaluated for non-periodic structures."""

    def __init__(self, directory):
        directory = os.fspath(directory)
        path = os.path.join(directory, "input.nn")
        kw = {k: [args for _, args in v] for k, v in read_keyword_lines(path).items()}
        gen = (kw.get("nnp_generation") or kw.get("nnp_type") or [["2"]])[0][0]
        if gen not in ("4", "4G-HDNNP"):
            raise ValueError(f"{path}: not a 4G potential (nnp_generation {gen})")
        # Descriptors: the core reads the same file without the 4G keywords (read at load time).
        with open(path) as fh:
            lines = [l for l in fh.read().splitlines() if not (l.split()[:1] and l.split()[0] in _4G_ONLY)]
        with tempfile.TemporaryDirectory(prefix="hdnnp-4g-") as tmp:
            with open(os.path.join(tmp, "input.nn"), "w") as fh:
                fh.write("\n".join(lines) + "\n")
            shutil.copy(os.path.join(directory, "scaling.data"), tmp)
            self.model = _core.Model.load(tmp, False)
        self.elements = list(self.model.elements)
        if self.model.mean_energy != 0.0 or self.model.conv_energy != 1.0:
            raise ValueError(f"{path}: normalised 4G potentials are not supported yet")
        self.sigma = np.zeros(len(self.elements))
        for el, s in (a[:2] for a in kw.get("fixed_gausswidth", [])):
            self.sigma[self.elements.index(el)] = float(s)
        if np.any(self.sigma <= 0):
            raise ValueError(f"{path}: fixed_gausswidth must be given for every element")
        screen = kw.get("screen_electrostatics")
        self.r_in, self.r_out = (float(screen[0][0]), float(screen[0][1])) if screen else (-2.0, -1.0)
        if screen and len(screen[0]) > 2 and screen[0][2] != "c":
            raise ValueError(f"{path}: only the cosine screening core ('c') is supported yet")
        self.four_pi_eps = float(kw["four_pi_epsilon"][0][0]) if "four_pi_epsilon" in kw else 1.0
        self.offsets = np.array(self.model.atom_energies)
        self.transform = self._scaling()

        def arch(kind):
            n = int(kw[f"global_hidden_layers_{kind}"][0][0])
            nodes = [int(x) for x in kw[f"global_nodes_{kind}"][0][:n]]
            acts = "".join(kw[f"global_activation_{kind}"][0][:n + 1])
            return nodes, acts

        def network(kind, n_in, fname):
            nodes, acts = arch(kind)
            net = ElementNetwork([n_in, *nodes, 1], acts)
            p = _column(os.path.join(directory, fname))
            if len(p) != net.n_parameters:
                raise ValueError(f"{os.path.join(directory, fname)}: expected {net.n_parameters} weights for the "
                                 f"declared architecture {'-'.join(map(str, net.sizes))}, found {len(p)}")
            net.set_parameters(p)
            return net

        self.elec, self.short, self.hardness = [], [], np.zeros(len(self.elements))
        for e, el in enumerate(self.elements):
            K = int(self.model.architecture(e)[0][0])
            z = self.model.atomic_numbers[e]
            self.elec.append(network("electrostatic", K, f"weightse.{z:03d}.data"))
            self.short.append(network("short", K + 1, f"weights.{z:03d}.data"))
            self.hardness[e] = _column(os.path.join(directory, f"hardness.{z:03d}.data"))[0]

    def screening(self, r):
        if self.r_out <= 0:
            return np.ones_like(r)
        x = np.clip((r - self.r_in) / (self.r_out - self.r_in), 0.0, 1.0)
        return 0.5 * (1.0 - np.cos(np.pi * x))

    def _scaling(self):
        from .training.trainer import scaling_transform

        stats = [{k: np.asarray(self.model.scaling(e)[k]) for k in ("min", "max", "mean", "sigma")}
                 for e in range(len(self.elements))]
        return scaling_transform(stats, self.model.scaling_mode, self.model.scale_min, self.model.scale_max)

    def evaluate(self, atoms, total_charge: Optional[float] = None, forces: bool = False):
        """Energy (offsets included), atomic charges and atomic short-range energies of a
        non-periodic structure, in the potential's units; with `forces`, the forces from one
        adjoint solve (THEORY B.4): F = -dE/dR|_Q - lambda^T [(dA/dR) Q + dchi/dR], with
        K lambda = -[dE/dQ; 0]."""
        if atoms.pbc.any():
            raise ValueError("periodic 4G structures (Ewald) are not supported yet")
        q_tot = float(atoms.info.get("charge", 0.0) if total_charge is None else total_charge)
        index = {s: i for i, s in enumerate(self.elements)}
        species = np.array([index[s] for s in atoms.get_chemical_symbols()], dtype=np.int32)
        pos = np.ascontiguousarray(atoms.positions, dtype=float)
        offs, idx, sid, sh, _, _ = _core.neighbor_list(pos, None, [False] * 3, self.model.cutoff)
        out = self.model.compute(pos, species, len(atoms), offs, idx, sid, sh, forces=False, virial=False,
                                 descriptors=True, scaled=True)
        G = [out["descriptors"][out["descriptor_offsets"][i]:out["descriptor_offsets"][i + 1]]
             for i in range(len(atoms))]
        n = len(atoms)
        chi_out = [self.elec[species[i]].forward(G[i][None, :], True) for i in range(n)]
        chi = np.array([c[0][0] for c in chi_out])
        sig = self.sigma[species]
        d = pos[:, None, :] - pos[None, :, :]
        r = np.linalg.norm(d, axis=2)
        gam = np.sqrt(sig[:, None] ** 2 + sig[None, :] ** 2)
        off = ~np.eye(n, dtype=bool)
        A = np.zeros((n, n))
        A[off] = erf(r[off] / (np.sqrt(2.0) * gam[off])) / r[off]
        A[off] /= self.four_pi_eps
        A[np.diag_indices(n)] = self.hardness[species] + 1.0 / (sig * np.sqrt(np.pi) * self.four_pi_eps)
        K = np.zeros((n + 1, n + 1))
        K[:n, :n] = A
        K[n, :n] = K[:n, n] = 1.0
        lu = scipy.linalg.lu_factor(K)  # factorised once: charges and the adjoint
        Q = scipy.linalg.lu_solve(lu, np.concatenate([-chi, [q_tot]]))[:n]
        iu = np.triu_indices(n, 1)
        fs = np.zeros((n, n))
        fs[off] = self.screening(r[off])
        erfg = np.zeros((n, n))
        erfg[off] = erf(r[off] / (np.sqrt(2.0) * gam[off]))
        e_elec = float(np.sum(Q[iu[0]] * Q[iu[1]] * erfg[iu] * fs[iu] / r[iu]) / self.four_pi_eps)
        short_out = [self.short[species[i]].forward(np.append(G[i], Q[i])[None, :], True) for i in range(n)]
        e_short = np.array([s_[0][0] for s_ in short_out])
        energy = float(e_short.sum() + e_elec + self.offsets[species].sum())
        res = {"energy": energy, "charges": Q, "atom_energies_short": e_short, "electrostatic_energy": e_elec,
               "electronegativities": chi}
        if not forces:
            return res
        # dE/dQ: electrostatics (screened) + the short networks' charge input
        rinv = np.zeros((n, n))
        rinv[off] = 1.0 / r[off]
        W = erfg * fs * rinv / self.four_pi_eps                    # pair kernel of E_elec
        dEdQ = W @ Q + np.array([s_[1][0, -1] for s_ in short_out])
        lam = scipy.linalg.lu_solve(lu, np.concatenate([-dEdQ, [0.0]]))[:n]
        # pair terms d/dR_i of kernels k(r_ij): k'(r) (R_i - R_j)/r
        gauss = np.zeros((n, n))
        gauss[off] = np.sqrt(2.0 / np.pi) / gam[off] * np.exp(-r[off] ** 2 / (2.0 * gam[off] ** 2))
        dfs = np.zeros((n, n))
        if self.r_out > 0:
            x = (r - self.r_in) / (self.r_out - self.r_in)
            inside = off & (x > 0) & (x < 1)
            dfs[inside] = 0.5 * np.pi * np.sin(np.pi * x[inside]) / (self.r_out - self.r_in)
        dA = (gauss - erfg * rinv) * rinv / self.four_pi_eps          # dA_ij/dr
        dW = ((gauss - erfg * rinv) * fs + erfg * dfs) * rinv / self.four_pi_eps
        # d/dR_i of E_elec = 1/2 sum_ij Q_i Q_j W_ij and of lambda^T A Q (A symmetric, i != j):
        # sum_j [Q_i Q_j W'_ij + (lambda_i Q_j + Q_i lambda_j) A'_ij] (R_i - R_j)/r_ij
        coef = Q[:, None] * Q[None, :] * dW + (lam[:, None] * Q[None, :] + Q[:, None] * lam[None, :]) * dA
        F = -np.einsum("ij,ijc->ic", coef, d * rinv[:, :, None])
        # network terms through the symmetry functions: w_i = dE_i/dG_i + lambda_i dchi_i/dG_i
        tf = self.transform
        jac = self.model.descriptor_jacobian(pos, species, offs, idx, sid, sh)
        po = jac["pair_offsets"]
        for i in range(n):
            e = species[i]
            w = short_out[i][1][0, :-1] + lam[i] * chi_out[i][1][0]
            w = w * tf[e][1]                                          # d/dG raw
            for p in range(po[i], po[i + 1]):
                blk = jac["dG"][jac["dg_offsets"][p]:jac["dg_offsets"][p + 1]].reshape(-1, 3)
                t = w @ blk                                           # dE/d(R_j - R_i)
                F[jac["pair_atom"][p]] -= t
                F[i] += t
        res["forces"] = F
        return res
