// Ewald parameters for Gaussian-charge electrostatics (THEORY.md B.2): the splitting width eta,
// the real-space cutoff r_cut and the reciprocal cutoff k_cut of a periodic structure, chosen
//  - as n2p2 does, step by step (same formulas, iterations and stopping rules), so that results
//    equal n2p2's: Jackson & Catlow (ewald_truncation_error_method 0, ewald_prec eps) and
//    Kolafa & Perram (method 1, ewald_prec dF [q_max [r_cut]]), which controls the RMS force
//    error only;
//  - or so that the estimated energy truncation error of the structure (Kolafa & Perram's
//    energy estimates, real and reciprocal space each held to 1/20) stays below an absolute
//    tolerance; for matrix-free products optionally with a particle-mesh reciprocal part.
// Lengths and energies in the potential's units; recomputed per structure (volume, atoms).
#pragma once
#include <string>
#include <vector>

namespace hdnnp {

struct EwaldParameters {
    double eta = 0.0, r_cut = 0.0, k_cut = 0.0;
    std::string method;
    bool reliable = true;         ///< n2p2's "estimate reliable" flag (eta >= max sigma)
    int mesh[3] = {0, 0, 0};      ///< particle-mesh grid (0: structure factors over |k| < k_cut)
    int mesh_order = 6;
};

/// n2p2's EwaldTruncJackson / EwaldTruncKolafaFixR / EwaldTruncKolafaOptEta.
EwaldParameters n2p2_ewald_parameters(int method, const std::vector<double>& prec_args, double volume,
                                      long n_atoms, double four_pi_eps = 1.0, double max_sigma = 0.0);

/// Cutoffs whose estimated energy truncation error is below `energy_tolerance` (absolute, for
/// the whole structure); r_cut <= 0: eta is the cost-balanced guess (dense matrices, or
/// matrix-free products with `per_particle`) and r_cut follows; else eta follows from r_cut.
/// eta is never below sqrt2 max(sigma) (r_cut then grows beyond a requested one).
EwaldParameters accuracy_ewald_parameters(double energy_tolerance, double volume, long n_atoms, double q_max = 1.0,
                                          double four_pi_eps = 1.0, double r_cut = 0.0, double max_sigma = 0.0,
                                          bool per_particle = false);

/// Matrix-free products with a particle-mesh reciprocal part: the real-space cutoff encloses
/// about `neighbours` atoms, eta follows from the tolerance there, the mesh spacing along each
/// lattice vector (rows of `cell`) is at most 0.6 eta (tolerance / 1e-3)^(1/8), grid sizes
/// rounded up to products of 2, 3 and 5.
EwaldParameters pme_ewald_parameters(double energy_tolerance, const double* cell, long n_atoms, double q_max = 1.0,
                                     double four_pi_eps = 1.0, double max_sigma = 0.0, double neighbours = 150.0,
                                     int order = 6);

/// The smallest product of 2, 3 and 5 that is >= n.
int fft_size(int n);

/// |det| of a cell given by its lattice vectors as rows (row-major 3 x 3).
inline double cell_volume(const double* a) {
    const double det = a[0] * (a[4] * a[8] - a[5] * a[7]) - a[1] * (a[3] * a[8] - a[5] * a[6]) +
                       a[2] * (a[3] * a[7] - a[4] * a[6]);
    return det < 0.0 ? -det : det;
}

}  // namespace hdnnp
