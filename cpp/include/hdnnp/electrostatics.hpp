// Electrostatics of Gaussian charges for 4G (and 3G) potentials, THEORY.md B.1, B.2, B.4, B.5.
//
// The QEq matrix without hardness, A0 (A = A0 + diag(J)):
//   non-periodic  A0_ii = 1/(sigma_i sqrt(pi)),   A0_ij = erf(r_ij / (sqrt2 gamma_ij)) / r_ij
//   periodic      Ewald for Gaussian charges with the splitting width eta:
//                 real space [erfc(r/(sqrt2 eta)) - erfc(r/(sqrt2 gamma))]/r over images r < r_cut,
//                 reciprocal sum over the half sphere |k| < k_cut, self terms (tin-foil, no k = 0);
// all divided by 4 pi eps0. The electrostatic energy that enters the total energy is n2p2's
// screened one:
//   E_elec(Q) = 1/2 Q^T A0 Q - sum_i Q_i^2 / (2 sigma_i sqrt(pi)) + sum_{pairs r < r_out} Q_i Q_j
//               erf(r/(sqrt2 gamma)) (f_s(r) - 1) / r           (all / 4 pi eps0).
// Periodic structures must be periodic in all three directions (the charge-neutral or
// background-neutralised cell of the Ewald sum).
//
// A width sigma_i = 0 makes atom i a point charge (3G): its pairs use erf(...) = 1 and it has no
// self term, so with all widths zero E_elec is the screened point-charge Coulomb (Ewald) energy
// 1/2 Q^T A0 Q + screening pairs (A0 is then not positive definite: no QEq with point charges).
//
// The operator is matrix-free: real-space pair kernels come from a neighbour list and are
// evaluated when applied, the reciprocal part through structure factors. dense() builds A0
// for the direct solver. Units: the potential's own (positions in its length unit).
#pragma once
#include <cmath>
#include <algorithm>
#include <cstdint>
#include <vector>

#include <memory>

#include "hdnnp/neighbor.hpp"
#include "hdnnp/pme.hpp"

namespace hdnnp {

/// Screening function f_s of n2p2 (`screen_electrostatics r_in r_out [core]`): 0 below
/// r_in, 1 - core((r - r_in)/(r_out - r_in)) between, 1 above. Inactive (f_s = 1) when
/// r_out <= 0.
struct Screening {
    double r_in = -2.0, r_out = -1.0;
    char core = 'c';  ///< c (cosine), p1..p4 as '1'..'4', e (exponential)
    bool active() const { return r_out > 0.0; }
    void eval(double r, double& f, double& df) const;
};

struct ElectrostaticsSetup {
    int64_t n = 0;
    const double* positions = nullptr;  ///< n x 3
    const double* cell = nullptr;       ///< lattice vectors as rows; null = non-periodic
    const double* sigma = nullptr;      ///< Gaussian width per atom
    double four_pi_eps = 1.0;
    double eta = 0.0, r_cut = 0.0, k_cut = 0.0;  ///< Ewald parameters (periodic only)
    Screening screening;
    int threads = 0;
    /// Periodic real space from a stored neighbour list even for small n (the default above
    /// 4,096 atoms); otherwise every pair with the lattice translations that reach r_cut.
    bool neighbor_list = false;
    /// Reciprocal part by smooth particle-mesh Ewald on a mesh[0] x mesh[1] x mesh[2] grid (products
    /// of 2, 3 and 5; 0 = Ewald structure factors over |k| < k_cut), B-splines of order mesh_order.
    /// Matrix-free products, energies and derivatives only (dense() and charge_response() need
    /// the structure factors).
    int mesh[3] = {0, 0, 0};
    int mesh_order = 6;
    FftEngine fft = FftEngine::Eigen;   ///< the mesh's FFTs (pme.hpp)
};

class Electrostatics {
public:
    explicit Electrostatics(const ElectrostaticsSetup& setup);

    int64_t size() const { return n_; }
    /// The stored half neighbour list of a periodic structure (list mode) and its reach
    /// max(r_cut, screening r_out); null in the other modes.
    const NeighborList* half_list() const { return periodic_ && !direct_ ? &nl_ : nullptr; }
    double list_reach() const { return std::max(r_cut_, scr_.r_out); }
    bool periodic() const { return periodic_; }
    int64_t n_kvectors() const { return static_cast<int64_t>(kcoef_.size()); }
    int64_t n_real_pairs() const { return static_cast<int64_t>(nl_.index.size()); }
    int64_t mesh_points() const { return pme_ ? pme_->grid_points() : 0; }

    /// A0 as a dense n x n row-major matrix.
    void dense(double* A) const;
    /// y = A0 x.
    void apply(const double* x, double* y) const;
    /// diag(A0).
    void diagonal(double* d) const;
    /// E_elec(Q) (screened, see above); dE_elec/dQ into dEdQ when not null. `AQ` = A0 Q when
    /// the caller has it (e.g. from the dense matrix), else computed.
    double energy(const double* Q, double* dEdQ, const double* AQ = nullptr) const;
    /// Adds -d/dR [E_elec(Q) + lam^T A0 Q] at fixed Q and lam to F (n x 3) and the virial
    /// W = -dE/d(strain) (row-major 3 x 3; periodic structures: at fixed eta, r_cut, k_cut).
    void add_derivatives(const double* Q, const double* lam, double* F, double* W) const;
    /// R[(j * n + a) * 3 + c] = d(A0 Q)_j / dR_ac at fixed Q (n x n x 3, dense): the position
    /// response of the QEq right-hand side that dQ/dR needs (4G training; O(n^2) memory).
    void charge_response(const double* Q, double* R) const;

private:
    void recip_sums(const double* x, std::vector<double>& sc, std::vector<double>& ss) const;
    /// fn(thread, i, j, dx, dy, dz, r) once per unordered pair image with i <= j, d = R_j + T - R_i,
    /// r < max(r_cut, r_out) (periodic; all pairs otherwise). i == j: the self-images T != 0,
    /// both T and -T. Runs in parallel over i; returns the number of threads used.
    /// With `screening_only`, only pairs r < r_out are needed (a short list serves them).
    /// Every pair image (i <= j) within reach, row by row: fn(tid, i, m, J, DX, DY, DZ, R) gets the m
    /// images of row i (partner, displacement R_j + T - R_i, distance) in thread-local arrays, so
    /// that the kernels run as vector loops.
    /// (`displacements` false: DX, DY, DZ are not filled.)
    template <class BatchFn>
    int for_pair_batches(BatchFn&& fn, bool screening_only = false, bool displacements = true) const;
    /// The same, one image at a time: fn(tid, i, j, dx, dy, dz, r).
    template <class PairFn> int for_half_pairs(PairFn&& fn, bool screening_only = false) const;
    int threads() const;
    /// 1/(sqrt2 gamma_ij), gamma_ij = sqrt(sigma_i^2 + sigma_j^2): the Gaussian pair's erf scale
    /// (infinite for two point charges: erf(a r) = 1).
    double inv_sqrt2_gamma(int64_t i, int64_t j) const {
        const double g2 = sigma_[i] * sigma_[i] + sigma_[j] * sigma_[j];
        return g2 > 0.0 ? 1.0 / std::sqrt(2.0 * g2) : HUGE_VAL;
    }
    /// 1/(sigma_i sqrt(pi)): the Gaussian's self-interaction (none for a point charge).
    double gaussian_self(int64_t i) const { return sigma_[i] > 0.0 ? 1.0 / (sigma_[i] * 1.7724538509055160273) : 0.0; }
    /// The position-independent diagonal of A0: Gaussian self term (minus the Ewald self term).
    double self_term(int64_t i) const;
    /// List mode: kvals_ from nl_ (the constructor's last step).
    void cache_kernel();
    /// k[e] = [erfc(b r) - erfc(a r)] / (4 pi eps0 r) of the m images of row i (partners J,
    /// distances R), 0 from r_cut `rc` on: the real-space kernel (b = 0: molecules).
    void row_kernel(int64_t i, int64_t m, const int64_t* J, const double* R, double b, double rc, double* k,
                    std::vector<int64_t>& near) const;
    /// The entries of a batch (distances R) near enough to atom i (width si) for a Gaussian-width
    /// term erfc(a r) to be nonzero with any partner; their count.
    int64_t near_images(double si, int64_t m, const double* R, std::vector<int64_t>& near) const;
    /// cos and sin of k . R_i (tabulated when small enough, else computed).
    void phase(int64_t i, int64_t k, double& c, double& s) const {
        if (!cos_.empty()) {
            c = cos_[i * n_kvectors() + k];
            s = sin_[i * n_kvectors() + k];
        } else {
            const double* kv = &kvec_[3 * k];
            const double* x = &pos_[3 * i];
            const double ph = kv[0] * x[0] + kv[1] * x[1] + kv[2] * x[2];
            c = std::cos(ph);
            s = std::sin(ph);
        }
    }

    int64_t n_ = 0;
    bool periodic_ = false;
    std::vector<double> pos_, sigma_;
    double sigma_max_ = 0.0;
    double cell_[9] = {0};
    double fpe_ = 1.0, eta_ = 0.0, r_cut_ = 0.0, k_cut_ = 0.0, volume_ = 0.0;
    Screening scr_;
    int threads_ = 0;
    bool direct_ = true;                 ///< periodic: pairs x lattice translations (no stored list)
    double recip_len_[3] = {0, 0, 0};   ///< direct mode: 1 / lattice plane spacing per direction
    double inv_cell_[9] = {0};           ///< fractional = cartesian . inv_cell_
    NeighborList nl_;                    ///< periodic, large n: full list to max(r_cut, r_out)
    NeighborList snl_;                   ///< periodic, direct mode: full list to r_out
    std::vector<double> kvals_;          ///< periodic, list mode: the real-space kernel of each nl_ entry
    std::vector<double> kvec_, kcoef_;   ///< half sphere: k (3 each), 2 c_k / (4 pi eps0)
    std::vector<double> cos_, sin_;      ///< cos/sin(k . R_i), n x n_k, when they fit in memory
    std::shared_ptr<const ParticleMesh> pme_;  ///< reciprocal part on a mesh (replaces the k-vectors)
};

struct QEqSolution {
    int iterations = 0;
    double residual = 0.0;   ///< ||P(A x - b)|| / ||b|| (projected onto the constraint)
    double lagrange = 0.0;   ///< the multiplier of sum(x) = total
};

/// Solves [A0 + diag(J)  1; 1^T 0] [x; mu] = [b; total] by preconditioned conjugate
/// gradients on the affine subspace sum(x) = total (Jacobi preconditioner, projected in its
/// metric). `x` holds the starting guess (shifted onto the constraint) and receives the
/// solution. Converged when the relative projected residual is below `tol`.
/// With `A0x` set, A0 x of the solution is written there and the multiplier computed.
QEqSolution solve_qeq_cg(const Electrostatics& op, const double* hardness, const double* b, double total,
                         double* x, double tol, int max_iterations, std::vector<double>* A0x = nullptr);

}  // namespace hdnnp
