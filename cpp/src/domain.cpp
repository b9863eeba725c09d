#include "hdnnp/domain.hpp"

#include <algorithm>
#include <cmath>
#include <functional>
#include <string>

#include "electrostatic_kernels.hpp"
#include "hdnnp/errors.hpp"
#include "hdnnp/long_range.hpp"
#include "hdnnp/threads.hpp"
#include "qeq_cg.hpp"

#include <unsupported/Eigen/FFT>

#ifdef _OPENMP
#include <omp.h>
#endif

namespace hdnnp {
using namespace kernels;

namespace {
/// the independent components of a symmetric 3 x 3 tensor (xx yy zz xy xz yz)
constexpr int kPQ[6][2] = {{0, 0}, {1, 1}, {2, 2}, {0, 1}, {0, 2}, {1, 2}};
double dot3(const double* a, const double* b) { return a[0] * b[0] + a[1] * b[1] + a[2] * b[2]; }
void cross3(const double* a, const double* b, double* c) {
    c[0] = a[1] * b[2] - a[2] * b[1];
    c[1] = a[2] * b[0] - a[0] * b[2];
    c[2] = a[0] * b[1] - a[1] * b[0];
}
/// inverse of a cell given by rows (fractional = cartesian . inv); returns the volume
double invert_cell(const double* cell, double* inv) {
    double bxc[3], cxa[3], axb[3];
    cross3(cell + 3, cell + 6, bxc);
    cross3(cell + 6, cell, cxa);
    cross3(cell, cell + 3, axb);
    const double det = dot3(cell, bxc);
    if (!(std::fabs(det) > 0.0)) throw InputError("the cell is singular");
    for (int r = 0; r < 3; ++r) {
        inv[3 * r + 0] = bxc[r] / det;
        inv[3 * r + 1] = cxa[r] / det;
        inv[3 * r + 2] = axb[r] / det;
    }
    return std::fabs(det);
}
}  // namespace

// ---------------------------------------------------------------------------------------------
// The particle mesh on this domain's brick. Every atom image the domain has (local or ghost)
// spreads onto the grid points of the brick that its B-spline stencil covers, in the unwrapped
// frame (fractional coordinates not reduced into the cell): a grid point m of the brick receives a
// given atom from exactly one of its periodic images, the one whose stencil contains m, and that
// image lies within (order + 2) grid spacings of the sub-domain, so within the ghost cutoff. The
// same partial sums, taken back at the atoms, are completed by the reverse communication. No grid
// halos are exchanged; the FFT is the caller's (distributed over the bricks). A domain whose brick
// is the whole grid (one process) takes its own atoms only, with stencils wrapped around the cell.
class DomainElectrostatics::Mesh {
public:
    Mesh(const double* inv_cell, const double* origin, double volume, const MeshBrick& brick, int order, double eta,
         double fpe, const double* pos, int64_t n_local, int64_t n_all, DomainFft* fft, DomainComm& comm, int threads)
        : b_(brick), p_(order), fft_(fft), eta_(eta), threads_(threads) {
        if (!fft) throw InputError("a particle-mesh Ewald sum on a domain needs a distributed FFT");
        if (order < 4 || order > 12 || order % 2) throw InputError("particle mesh: the B-spline order must be even, 4..12");
        whole_ = true;
        for (int d = 0; d < 3; ++d) {
            if (b_.K[d] < order) throw InputError("particle mesh: the grid is smaller than the B-spline order");
            if (b_.lo[d] < 0 || b_.hi[d] > b_.K[d] || b_.hi[d] < b_.lo[d])
                throw InputError("particle mesh: this domain's brick lies outside the grid");
            n_[d] = b_.hi[d] - b_.lo[d];
            whole_ = whole_ && b_.lo[d] == 0 && b_.hi[d] == b_.K[d];
            for (int c = 0; c < 3; ++c) {
                recip_[3 * d + c] = 2.0 * kPi * inv_cell[3 * c + d];
                dudr_[3 * d + c] = b_.K[d] * inv_cell[3 * c + d];
            }
        }
        // the atom images whose stencils meet the brick: per direction the stencil's brick index
        // (base - c - lo, or -1 outside the brick)
        const int64_t n_use = whole_ ? n_local : n_all;
        for (int64_t a = 0; a < n_use; ++a) {
            int idx[3][16];
            double frac[3];
            bool meets = true;
            for (int d = 0; d < 3 && meets; ++d) {
                double s = 0.0;
                for (int c = 0; c < 3; ++c) s += (pos[3 * a + c] - origin[c]) * inv_cell[3 * c + d];
                if (whole_) s -= std::floor(s);
                const double u = s * b_.K[d], fl = std::floor(u);
                const int base = static_cast<int>(fl);
                frac[d] = u - fl;
                meets = false;
                for (int c = 0; c < p_; ++c) {
                    int m = base - c;
                    if (whole_) m = m < 0 ? m + b_.K[d] : m;   // (base in [0, K), c < p <= K)
                    idx[d][c] = m >= b_.lo[d] && m < b_.hi[d] ? m - b_.lo[d] : -1;
                    meets = meets || idx[d][c] >= 0;
                }
            }
            if (!meets) continue;
            atoms_.push_back(a);
            for (int d = 0; d < 3; ++d) {
                idx_.insert(idx_.end(), idx[d], idx[d] + p_);
                frac_.push_back(frac[d]);
                const size_t o = w_.size();
                w_.resize(o + p_);
                bspline(frac[d], p_, &w_[o], nullptr);
            }
        }
        // influence function on the brick, and on the FFT's half spectrum for real convolutions
        std::vector<double> bsq[3];
        for (int d = 0; d < 3; ++d) bsq[d] = bspline_moduli(b_.K[d], p_);
        const double pre = 4.0 * kPi / volume / fpe;
        double diag = 0.0;
        auto influence = [&](int m0, int m1, int m2, double* c_out) {
            if (m0 == 0 && m1 == 0 && m2 == 0) return 0.0;
            double k[3];
            kvector(m0, m1, m2, k);
            const double k2 = dot3(k, k);
            const double c = pre * std::exp(-0.5 * eta * eta * k2) / k2;
            if (c_out) *c_out += c;
            return c * bsq[0][m0] * bsq[1][m1] * bsq[2][m2];
        };
        // diag(A_rec): sum_k G(k) over the whole grid (this brick's share, summed over the domains)
        for (int m0 = b_.lo[0]; m0 < b_.hi[0]; ++m0)
            for (int m1 = b_.lo[1]; m1 < b_.hi[1]; ++m1)
                for (int m2 = b_.lo[2]; m2 < b_.hi[2]; ++m2) influence(m0, m1, m2, &diag);
        comm.sum(&diag, 1);
        diag_ = diag;
        // (the B-spline moduli product per point, for the preconditioner's kernel)
        bmod_ = [bsq](int m0, int m1, int m2) { return bsq[0][m0] * bsq[1][m1] * bsq[2][m2]; };
        int *lo = hlo_, *hi = hhi_;
        fft_->half_spectrum_box(lo, hi);
        Gh_.reserve(static_cast<size_t>(hi[0] - lo[0]) * (hi[1] - lo[1]) * (hi[2] - lo[2]));
        for (int m0 = lo[0]; m0 < hi[0]; ++m0)
            for (int m1 = lo[1]; m1 < hi[1]; ++m1)
                for (int m2 = lo[2]; m2 < hi[2]; ++m2) Gh_.push_back(influence(m0, m1, m2, nullptr));
    }

    double diagonal() const { return diag_; }

    /// The kernel H = G / (1 + c g) of the CG's preconditioner (g = G / moduli: the influence
    /// function without the B-spline correction; c = sum over all atoms of 1 / diag(A)), for
    /// DomainElectrostatics::precondition. Kept for the next call with the same c.
    void set_preconditioner(double c) const {
        if (c == pc_) return;
        pc_ = c;
        auto h = [&](double G, int m0, int m1, int m2) {
            const double mod = bmod_(m0, m1, m2);
            return G != 0.0 && mod > 0.0 ? G / (1.0 + c * G / mod) : 0.0;
        };
        Hh_.assign(Gh_.size(), 0.0);
        size_t k = 0;
        for (int m0 = hlo_[0]; m0 < hhi_[0]; ++m0)
            for (int m1 = hlo_[1]; m1 < hhi_[1]; ++m1)
                for (int m2 = hlo_[2]; m2 < hhi_[2]; ++m2, ++k) Hh_[k] = h(Gh_[k], m0, m1, m2);
    }
    int64_t points() const { return static_cast<int64_t>(b_.K[0]) * b_.K[1] * b_.K[2]; }

    /// y (n_all) += the brick's part of (A_rec x) at every atom image (x: n_all, ghosts filled);
    /// `preconditioner`: of the kernel H instead of G (set_preconditioner).
    void apply(const double* x, double* y, bool preconditioner = false) const {
        std::vector<double>& real = scratch_;   // (kept: no page faults of a fresh grid per product)
        real.assign(b_.size(), 0.0);
        spread(x, real.data(), 1);
        fft_->convolve_real(real.data(), preconditioner ? Hh_.data() : Gh_.data());
        const int64_t nt = static_cast<int64_t>(atoms_.size());
#pragma omp parallel for schedule(static) num_threads(thread_count(threads_))
        for (int64_t t = 0; t < nt; ++t) y[atoms_[t]] += interpolate(real.data(), t);
    }

    /// phi (n_all x 6, xx yy zz xy xz yz) += the brick's part of d(A_rec v)_i/d(strain) at every
    /// atom image: the convolutions of v with G(k) dG-factor(k) (the reciprocal virial kernel),
    /// one forward transform of v for the six.
    void add_strain_potentials(const double* v, double* phi) const {
        std::vector<double> real(b_.size(), 0.0);
        spread(v, real.data(), 1);
        std::vector<std::complex<double>> sv(Gh_.size()), spec(Gh_.size());
        fft_->forward_real(real.data(), sv.data());
        // -(d/d strain_pq) of the influence G(k) = G(k) (delta_pq - h k_p k_q) (kernels'
        // subtract_recip_virial with B = 1)
        auto factor = [&](int m0, int m1, int m2, int c) {
            double kv[3], w[9] = {0};
            kvector(m0, m1, m2, kv);
            subtract_recip_virial(1.0, kv, eta_, w);
            return w[3 * kPQ[c][0] + kPQ[c][1]];
        };
        for (int c = 0; c < 6; ++c) {
            size_t k = 0;
            for (int m0 = hlo_[0]; m0 < hhi_[0]; ++m0)
                for (int m1 = hlo_[1]; m1 < hhi_[1]; ++m1)
                    for (int m2 = hlo_[2]; m2 < hhi_[2]; ++m2, ++k)
                        spec[k] = Gh_[k] == 0.0 ? 0.0 : sv[k] * (Gh_[k] * factor(m0, m1, m2, c));
            fft_->inverse_real(spec.data(), real.data());
            for (size_t t = 0; t < atoms_.size(); ++t) phi[6 * atoms_[t] + c] += interpolate(real.data(), t);
        }
    }

    /// F (n_all) -= the brick's part of d/dR (u^T A_rec v) at every atom image, W -= its part of
    /// d(u^T A_rec v)/d(strain): the half spectra of u and v (their product gives the virial; -k is
    /// k's conjugate, so the points 0 < k_2 < K_2 / 2 count twice), then phi_u = F^-1 [G u^] and
    /// phi_v one after the other (three grids at a time)
    void add_derivatives(const double* u, const double* v, double* F, double* W) const {
        // (the products' scratch and the preconditioner's kernel are not needed any more: room for
        // the transforms below)
        for (auto* g : {&scratch_, &Hh_}) { g->clear(); g->shrink_to_fit(); }
        pc_ = -1.0;
        fft_->release();
        using cd = std::complex<double>;
        std::vector<cd> su(Gh_.size()), sv(Gh_.size());
        std::vector<double> g(b_.size(), 0.0);
        spread(u, g.data(), 1);
        fft_->forward_real(g.data(), su.data());
        std::fill(g.begin(), g.end(), 0.0);
        spread(v, g.data(), 1);
        fft_->forward_real(g.data(), sv.data());
        double w[9] = {0};
        size_t k = 0;
        for (int m0 = hlo_[0]; m0 < hhi_[0]; ++m0)
            for (int m1 = hlo_[1]; m1 < hhi_[1]; ++m1)
                for (int m2 = hlo_[2]; m2 < hhi_[2]; ++m2, ++k) {
                    if (Gh_[k] == 0.0) continue;
                    const double twice = m2 == 0 || 2 * m2 == b_.K[2] ? 1.0 : 2.0;
                    const double B = twice * Gh_[k] * (su[k] * std::conj(sv[k])).real();
                    if (B == 0.0) continue;
                    double kv[3];
                    kvector(m0, m1, m2, kv);
                    subtract_recip_virial(B, kv, eta_, w);
                }
        for (int c = 0; c < 9; ++c) W[c] += w[c];
        for (size_t j = 0; j < su.size(); ++j) su[j] *= Gh_[j];
        fft_->inverse_real(su.data(), g.data());   // phi_u: moves the atoms with v
        su.clear();
        su.shrink_to_fit();
        add_gradients(g.data(), v, F);
        for (size_t j = 0; j < sv.size(); ++j) sv[j] *= Gh_[j];
        fft_->inverse_real(sv.data(), g.data());   // phi_v: with u
        add_gradients(g.data(), u, F);
    }

private:
    /// F_i -= c_i grad phi (phi: a real grid on the brick) at every atom image i
    void add_gradients(const double* phi, const double* c, double* F) const {
        const int64_t nt = static_cast<int64_t>(atoms_.size());
#pragma omp parallel for schedule(static) num_threads(thread_count(threads_))
        for (int64_t t = 0; t < nt; ++t) {
            const int64_t i = atoms_[t];
            if (c[i] == 0.0) continue;
            const double* w0 = &w_[(3 * t) * p_];
            const double* w1 = &w_[(3 * t + 1) * p_];
            const double* w2 = &w_[(3 * t + 2) * p_];
            const int* i0 = &idx_[(3 * t) * p_];
            const int* i1 = &idx_[(3 * t + 1) * p_];
            const int* i2 = &idx_[(3 * t + 2) * p_];
            double d0[16], d1[16], d2[16], scratch[16];
            bspline(frac_[3 * t], p_, scratch, d0);
            bspline(frac_[3 * t + 1], p_, scratch, d1);
            bspline(frac_[3 * t + 2], p_, scratch, d2);
            double gr[3] = {0, 0, 0};
            for (int a = 0; a < p_; ++a) {
                if (i0[a] < 0) continue;
                for (int b = 0; b < p_; ++b) {
                    if (i1[b] < 0) continue;
                    const double* row = &phi[index(i0[a], i1[b], 0)];
                    for (int cc = 0; cc < p_; ++cc) {
                        if (i2[cc] < 0) continue;
                        const double z = c[i] * row[i2[cc]];
                        gr[0] += d0[a] * w1[b] * w2[cc] * z;
                        gr[1] += w0[a] * d1[b] * w2[cc] * z;
                        gr[2] += w0[a] * w1[b] * d2[cc] * z;
                    }
                }
            }
            for (int cc = 0; cc < 3; ++cc)
                for (int d = 0; d < 3; ++d) F[3 * i + cc] -= gr[d] * dudr_[3 * d + cc];
        }
    }

    /// sum of the brick's grid values at atom image t's stencil, weighted by its B-splines
    double interpolate(const double* real, size_t t) const {
        const double* w0 = &w_[(3 * t) * p_];
        const double* w1 = &w_[(3 * t + 1) * p_];
        const double* w2 = &w_[(3 * t + 2) * p_];
        const int* i0 = &idx_[(3 * t) * p_];
        const int* i1 = &idx_[(3 * t + 1) * p_];
        const int* i2 = &idx_[(3 * t + 2) * p_];
        double s = 0.0;
        for (int a = 0; a < p_; ++a) {
            if (i0[a] < 0) continue;
            for (int b = 0; b < p_; ++b) {
                if (i1[b] < 0) continue;
                const double* row = &real[index(i0[a], i1[b], 0)];
                double r = 0.0;
                for (int c = 0; c < p_; ++c)
                    if (i2[c] >= 0) r += w2[c] * row[i2[c]];
                s += w0[a] * w1[b] * r;
            }
        }
        return s;
    }
    /// brick-relative indices
    int64_t index(int i0, int i1, int i2) const { return (static_cast<int64_t>(i0) * n_[1] + i1) * n_[2] + i2; }
    void kvector(int m0, int m1, int m2, double k[3]) const {
        int m[3] = {m0, m1, m2};
        for (int d = 0; d < 3; ++d)
            if (m[d] >= b_.K[d] / 2) m[d] -= b_.K[d];
        for (int c = 0; c < 3; ++c) k[c] = m[0] * recip_[c] + m[1] * recip_[3 + c] + m[2] * recip_[6 + c];
    }
    /// the values x of the atom images spread on the brick, into g[stride * point]
    void spread(const double* x, double* g, int stride) const {
        for (size_t t = 0; t < atoms_.size(); ++t) {
            const double xa = x[atoms_[t]];
            if (xa == 0.0) continue;
            const double* w0 = &w_[(3 * t) * p_];
            const double* w1 = &w_[(3 * t + 1) * p_];
            const double* w2 = &w_[(3 * t + 2) * p_];
            const int* i0 = &idx_[(3 * t) * p_];
            const int* i1 = &idx_[(3 * t + 1) * p_];
            const int* i2 = &idx_[(3 * t + 2) * p_];
            for (int a = 0; a < p_; ++a) {
                if (i0[a] < 0) continue;
                for (int b = 0; b < p_; ++b) {
                    if (i1[b] < 0) continue;
                    const double f = xa * w0[a] * w1[b];
                    double* row = g + stride * index(i0[a], i1[b], 0);
                    for (int c = 0; c < p_; ++c)
                        if (i2[c] >= 0) row[stride * i2[c]] += f * w2[c];
                }
            }
        }
    }

    MeshBrick b_;
    int p_ = 6, n_[3] = {0, 0, 0};
    bool whole_ = false;
    DomainFft* fft_ = nullptr;
    double eta_ = 0.0, diag_ = 0.0, recip_[9] = {0}, dudr_[9] = {0};
    int threads_ = 0;
    std::vector<double> Gh_;   ///< the influence function on the FFT's half-spectrum box
    mutable std::vector<double> scratch_;   ///< apply()'s grid
    std::function<double(int, int, int)> bmod_;
    mutable std::vector<double> Hh_;    ///< the preconditioner's kernel (half spectrum)
    mutable double pc_ = -1.0;
    int hlo_[3] = {0, 0, 0}, hhi_[3] = {0, 0, 0};   ///< its half-spectrum box
    std::vector<int64_t> atoms_;
    std::vector<int> idx_;
    std::vector<double> w_, frac_;
};

// ---------------------------------------------------------------------------------------------

DomainElectrostatics::DomainElectrostatics(const DomainAtoms& A, const double* sigma, double fpe,
                                           const Screening& screening, const EwaldParameters& ewald, DomainComm& comm,
                                           DomainFft* fft, int threads)
    : nl_(A.n_local), na_(A.n_all), ntot_(A.n_total), periodic_(A.cell != nullptr), comm_(comm), threads_(threads),
      fpe_(fpe), eta_(ewald.eta), r_cut_(ewald.r_cut), scr_(screening) {
    if (!(fpe_ > 0.0)) throw InputError("four_pi_epsilon must be positive");
    pos_.assign(A.positions, A.positions + 3 * na_);
    sigma_.assign(sigma, sigma + na_);
    ids_.assign(A.ids, A.ids + na_);
    for (int64_t i = 0; i < na_; ++i) {
        sigma_max_ = std::max(sigma_max_, sigma_[i]);
        for (int c = 0; c < 3; ++c)
            if (!std::isfinite(pos_[3 * i + c]))
                throw InputError("atom " + std::to_string(ids_[i]) + " has a non-finite coordinate");
    }
    if (!periodic_) {
        // molecules: every atom's position and width on every domain (no cutoff)
        std::vector<double> mine(4 * nl_);
        for (int64_t i = 0; i < nl_; ++i) {
            for (int c = 0; c < 3; ++c) mine[4 * i + c] = pos_[3 * i + c];
            mine[4 * i + 3] = sigma_[i];
        }
        std::vector<double> all;
        offset_ = comm_.gather(mine.data(), nl_, 4, all);
        const int64_t n = static_cast<int64_t>(all.size()) / 4;
        all_pos_.resize(3 * n);
        all_sigma_.resize(n);
        for (int64_t i = 0; i < n; ++i) {
            for (int c = 0; c < 3; ++c) all_pos_[3 * i + c] = all[4 * i + c];
            all_sigma_[i] = all[4 * i + 3];
        }
        return;
    }
    std::copy(A.cell, A.cell + 9, cell_);
    volume_ = invert_cell(cell_, inv_cell_);
    if (!(eta_ > 0.0) || !(r_cut_ > 0.0))
        throw InputError("periodic electrostatics needs positive Ewald eta and r_cut");
    real_rows(A.neighbors);
    if (ewald.mesh[0] > 0) {
        MeshBrick b = A.brick;
        for (int d = 0; d < 3; ++d)
            if (b.K[d] != ewald.mesh[d]) throw InputError("the domain's mesh brick does not match the Ewald mesh");
        mesh_ = std::make_shared<const Mesh>(inv_cell_, A.origin, volume_, b, ewald.mesh_order, eta_, fpe_,
                                             pos_.data(), nl_, na_, fft, comm_, threads_);
    } else {
        if (!(ewald.k_cut > 0.0)) throw InputError("periodic electrostatics needs a positive Ewald k_cut");
        half_sphere_kvectors(cell_, ewald.k_cut, eta_, fpe_, kvec_, kcoef_);
    }
}

void DomainElectrostatics::real_rows(const NeighborView& nb) {
    // the local atoms' rows: partners within max(r_cut, r_out) and the A0 kernel of each
    // ([erfc(b r) - erfc(a r)] / (4 pi eps0 r), 0 from r_cut on). A pair of two local atoms is
    // stored once (in the row of the lower index, used for both); a pair with a ghost is stored
    // in the local atom's row (its mirror image lives in the ghost's owner's row)
    std::vector<int64_t> centre(nl_, -1);
    for (int64_t c = 0; c < nb.n_centers; ++c) {
        const int64_t i = nb.center(c);
        if (i < nl_) centre[i] = c;
    }
    const double reach = std::max(r_cut_, scr_.r_out), reach2 = reach * reach;
    const double b = 1.0 / (std::sqrt(2.0) * eta_);
    row_.assign(nl_ + 1, 0);
    for (int64_t i = 0; i < nl_; ++i) {
        const int64_t c = centre[i];
        if (c < 0) throw InputError("atom " + std::to_string(ids_[i]) + " has no neighbour-list entry");
        const double* xi = &pos_[3 * i];
        for (int64_t p = nb.offsets[c]; p < nb.offsets[c + 1]; ++p) {
            const int32_t j = nb.neighbor(c, p);
            if (j < i) continue;   // (a local partner with a lower index: stored in its row)
            double d[3];
            for (int k = 0; k < 3; ++k) d[k] = pos_[3 * j + k] - xi[k];
            const double r2 = dot3(d, d);
            if (r2 >= reach2) continue;
            const double r = std::sqrt(r2);
            if (r < 1e-6)
                throw InputError("atoms " + std::to_string(ids_[i]) + " and " + std::to_string(ids_[j]) +
                                 " overlap (distance " + std::to_string(r) + ")");
            col_.push_back(j);
            double k = 0.0;
            if (r < r_cut_) {
                double eb, gb, ea, ga;
                erfc_gauss(b * r, eb, gb);
                erfc_gauss(inv_sqrt2_gamma_of(sigma_[i], sigma_[j]) * r, ea, ga);
                k = (eb - ea) / r / fpe_;
            }
            k_.push_back(k);
        }
        row_[i + 1] = static_cast<int64_t>(col_.size());
    }
}

void DomainElectrostatics::diagonal(double* d) const {
    const double recip = (mesh_ ? mesh_->diagonal() : 0.0) + [&] {
        double s = 0.0;
        for (double c : kcoef_) s += c;
        return s;
    }();
    for (int64_t i = 0; i < nl_; ++i) {
        d[i] = self_term(i) + recip;
        if (!periodic_) continue;
        for (int64_t e = row_[i]; e < row_[i + 1]; ++e)
            if (ids_[col_[e]] == ids_[i]) d[i] += k_[e];   // the atom's own periodic images
    }
}

void DomainElectrostatics::apply(const double* x, double* y) const {
    if (!periodic_) {
        std::vector<double> all;
        comm_.gather(x, nl_, 1, all);
        const int64_t n = static_cast<int64_t>(all.size());
#pragma omp parallel for schedule(static) num_threads(thread_count(threads_))
        for (int64_t i = 0; i < nl_; ++i) {
            const int64_t gi = offset_ + i;
            const double* xi = &all_pos_[3 * gi];
            double s = self_term(i) * x[i];
            for (int64_t j = 0; j < n; ++j) {
                if (j == gi) continue;
                double d[3];
                for (int k = 0; k < 3; ++k) d[k] = all_pos_[3 * j + k] - xi[k];
                const double r = std::sqrt(dot3(d, d));
                s += erf_fast(inv_sqrt2_gamma_of(all_sigma_[gi], all_sigma_[j]) * r) / r / fpe_ * all[j];
            }
            y[i] = s;
        }
        return;
    }
    const std::vector<double> xg = with_ghosts(x, 1);
    const int nt = thread_count(threads_);
    std::vector<std::vector<double>> yt(nt, std::vector<double>(nl_, 0.0));
#pragma omp parallel num_threads(nt)
    {
        int tid = 0;
#ifdef _OPENMP
        tid = omp_get_thread_num();
#endif
        double* __restrict yy = yt[tid].data();
        const int32_t* __restrict col = col_.data();
        const double* __restrict kk = k_.data();
#pragma omp for schedule(dynamic, 64)
        for (int64_t i = 0; i < nl_; ++i) {
            double s = self_term(i) * x[i];
            const double xi = x[i];
            for (int64_t e = row_[i]; e < row_[i + 1]; ++e) {
                const int32_t j = col[e];
                s += kk[e] * xg[j];
                if (j < nl_) yy[j] += kk[e] * xi;
            }
            yy[i] += s;
        }
    }
    std::fill(y, y + nl_, 0.0);
    for (const auto& v : yt)
        for (int64_t i = 0; i < nl_; ++i) y[i] += v[i];
    if (mesh_) {
        std::vector<double> part(na_, 0.0);
        mesh_->apply(xg.data(), part.data());
        comm_.reverse(part.data(), 1);
        for (int64_t i = 0; i < nl_; ++i) y[i] += part[i];
    }
    const int64_t nk = n_kvectors();
    if (!nk) return;
    std::vector<double> S(2 * nk, 0.0);   // sum_i x_i cos(k.R_i), then the sines
    for (int64_t i = 0; i < nl_; ++i)
        for (int64_t k = 0; k < nk; ++k) {
            const double ph = dot3(&kvec_[3 * k], &pos_[3 * i]);
            S[k] += x[i] * std::cos(ph);
            S[nk + k] += x[i] * std::sin(ph);
        }
    comm_.sum(S.data(), static_cast<int>(2 * nk));
#pragma omp parallel for schedule(static) num_threads(thread_count(threads_))
    for (int64_t i = 0; i < nl_; ++i) {
        double s = 0.0;
        for (int64_t k = 0; k < nk; ++k) {
            const double ph = dot3(&kvec_[3 * k], &pos_[3 * i]);
            s += kcoef_[k] * (std::cos(ph) * S[k] + std::sin(ph) * S[nk + k]);
        }
        y[i] += s;
    }
}

double DomainElectrostatics::energy(const double* Q, double* dEdQ, const std::vector<double>* AQ) const {
    std::vector<double> y(nl_), scr(nl_, 0.0);
    if (AQ) y = *AQ;   // (a vector, not its data: a domain without atoms has none but must agree)
    else apply(Q, y.data());
    if (scr_.active()) {
        // sum over the screening pairs r < r_out of Q_i Q_j erf(a r) (f_s - 1) / r
        auto s_of = [&](double r, double si, double sj) {
            double f, df;
            scr_.eval(r, f, df);
            return erf_fast(inv_sqrt2_gamma_of(si, sj) * r) * (f - 1.0) / r / fpe_;
        };
        if (periodic_) {
            const std::vector<double> Qg = with_ghosts(Q, 1);
            for (int64_t i = 0; i < nl_; ++i)
                for (int64_t e = row_[i]; e < row_[i + 1]; ++e) {
                    const int32_t j = col_[e];
                    const double r = distance(i, j);
                    if (r >= scr_.r_out) continue;
                    const double sij = s_of(r, sigma_[i], sigma_[j]);
                    scr[i] += Qg[j] * sij;
                    if (j < nl_) scr[j] += Q[i] * sij;
                }
        } else {
            std::vector<double> all;
            comm_.gather(Q, nl_, 1, all);
            const int64_t n = static_cast<int64_t>(all.size());
            for (int64_t i = 0; i < nl_; ++i) {
                const int64_t gi = offset_ + i;
                for (int64_t j = 0; j < n; ++j) {
                    if (j == gi) continue;
                    double d[3];
                    for (int k = 0; k < 3; ++k) d[k] = all_pos_[3 * j + k] - all_pos_[3 * gi + k];
                    const double r = std::sqrt(dot3(d, d));
                    if (r < scr_.r_out) scr[i] += all[j] * s_of(r, all_sigma_[gi], all_sigma_[j]);
                }
            }
        }
    }
    CompensatedSum e;
    for (int64_t i = 0; i < nl_; ++i) {
        const double self = (sigma_[i] > 0.0 ? 1.0 / (sigma_[i] * std::sqrt(kPi)) : 0.0) / fpe_;
        e.add(0.5 * Q[i] * y[i] - 0.5 * Q[i] * Q[i] * self + 0.5 * Q[i] * scr[i]);
        if (dEdQ) dEdQ[i] = y[i] - Q[i] * self + scr[i];
    }
    return e.value();
}

void DomainElectrostatics::add_derivatives(const double* Q, const double* lam, double* F, double* W,
                                           std::vector<double>* atom_virials) const {
    double* Wat = atom_virials ? atom_virials->data() : nullptr;
    const bool per_atom = atom_virials != nullptr;
    // B(u, v) = u^T A0 v with u = Q/2 + lam, v = Q (E_elec + lam^T A0 Q up to position-independent
    // terms), plus the screening pairs. Every ordered pair (i local, j) of every domain is one
    // term u_i A0_ij v_j, so each entry moves i and j (j's share goes to its owner).
    std::vector<double> uv(2 * nl_);
    for (int64_t i = 0; i < nl_; ++i) { uv[2 * i] = 0.5 * Q[i] + lam[i]; uv[2 * i + 1] = Q[i]; }
    const double inv_fpe = 1.0 / fpe_;
    auto pair_slope = [&](double r, double si, double sj, double b, bool ewald) {
        // d/dr of the kernel [erfc(b r) - erfc(a r)] / r (b = 0: erf(a r) / r)
        const double a = inv_sqrt2_gamma_of(si, sj);
        double ea, ga, slope = 0.0;
        erfc_gauss(a * r, ea, ga);
        slope = (kTwoOverSqrtPi * a * ga + ea / r) / r;
        if (ewald) {
            double eb, gb;
            erfc_gauss(b * r, eb, gb);
            slope += (-kTwoOverSqrtPi * b * gb - eb / r) / r;
        } else {
            slope -= 1.0 / (r * r);
        }
        return slope * inv_fpe;
    };
    auto screen_slope = [&](double r, double si, double sj) {
        const double a = inv_sqrt2_gamma_of(si, sj);
        const double aea = gauss_slope(a, r), erfa = erf_fast(a * r);
        double f, df;
        scr_.eval(r, f, df);
        const double s = erfa * (f - 1.0) / r;
        return ((kTwoOverSqrtPi * aea * (f - 1.0) + erfa * df) / r - s / r) * inv_fpe;
    };
    double w[9] = {0};
    // atom i's share of an ordered pair term: -c d (x) d (c = the term's slope / r)
    auto pair_virial = [&](int64_t i, double c, const double* d) {
        for (int p = 0; p < 3; ++p)
            for (int q = 0; q < 3; ++q) Wat[9 * i + 3 * p + q] -= c * d[p] * d[q];
    };
    if (!periodic_) {
        std::vector<double> all;
        comm_.gather(uv.data(), nl_, 2, all);
        const int64_t n = static_cast<int64_t>(all.size()) / 2;
        for (int64_t i = 0; i < nl_; ++i) {
            const int64_t gi = offset_ + i;
            const double ui = all[2 * gi], qi = all[2 * gi + 1];
            for (int64_t j = 0; j < n; ++j) {
                if (j == gi) continue;
                double d[3];
                for (int k = 0; k < 3; ++k) d[k] = all_pos_[3 * j + k] - all_pos_[3 * gi + k];
                const double r = std::sqrt(dot3(d, d));
                const double uj = all[2 * j], qj = all[2 * j + 1];
                const double slope = pair_slope(r, all_sigma_[gi], all_sigma_[j], 0.0, false);
                const double scr = scr_.active() && r < scr_.r_out ? qi * qj * screen_slope(r, all_sigma_[gi], all_sigma_[j]) : 0.0;
                double g = (ui * qj + uj * qi) * slope + scr;
                if (per_atom) pair_virial(i, (ui * qj * slope + 0.5 * scr) / r, d);
                g /= r;   // F_i = g d (the pair is i's and j's: both orders are in the sum)
                for (int k = 0; k < 3; ++k) F[3 * i + k] += g * d[k];
                for (int p = 0; p < 3; ++p)
                    for (int q = 0; q < 3; ++q) w[3 * p + q] -= 0.5 * g * d[p] * d[q];
            }
        }
        for (int k = 0; k < 9; ++k) W[k] += w[k];
        return;
    }
    const std::vector<double> g2 = with_ghosts(uv.data(), 2);
    const double b = 1.0 / (std::sqrt(2.0) * eta_);
    for (int64_t i = 0; i < nl_; ++i) {
        const double ui = g2[2 * i], qi = g2[2 * i + 1];
        for (int64_t e = row_[i]; e < row_[i + 1]; ++e) {
            const int32_t j = col_[e];
            double d[3];
            for (int k = 0; k < 3; ++k) d[k] = pos_[3 * j + k] - pos_[3 * i + k];
            const double r = std::sqrt(dot3(d, d));
            // a local pair is stored once: both orders' terms; with a ghost, this order's
            const bool both = j < nl_;
            const double uj = g2[2 * j], qj = g2[2 * j + 1];
            const double slope = r < r_cut_ ? pair_slope(r, sigma_[i], sigma_[j], b, true) : 0.0;
            const double scr = scr_.active() && r < scr_.r_out ? 0.5 * qi * qj * screen_slope(r, sigma_[i], sigma_[j]) : 0.0;
            const double g_ij = ui * qj * slope + scr, g_ji = both ? uj * qi * slope + scr : 0.0;
            double g = g_ij + g_ji;
            if (g == 0.0) continue;
            if (per_atom) {
                pair_virial(i, g_ij / r, d);
                if (both) pair_virial(j, g_ji / r, d);
            }
            g /= r;
            for (int k = 0; k < 3; ++k) {
                F[3 * i + k] += g * d[k];
                F[3 * j + k] -= g * d[k];
            }
            for (int p = 0; p < 3; ++p)
                for (int q = 0; q < 3; ++q) w[3 * p + q] -= g * d[p] * d[q];
        }
    }
    if (mesh_) {
        std::vector<double> u(na_), v(na_);
        for (int64_t a = 0; a < na_; ++a) { u[a] = g2[2 * a]; v[a] = g2[2 * a + 1]; }
        mesh_->add_derivatives(u.data(), v.data(), F, w);
        if (per_atom) {
            std::vector<double> phi(6 * na_, 0.0);
            mesh_->add_strain_potentials(v.data(), phi.data());
            comm_.reverse(phi.data(), 6);
            add_strain_shares(u.data(), phi.data(), Wat);
        }
    }
    const int64_t nk = n_kvectors();
    if (nk) {
        std::vector<double> S(4 * nk, 0.0);   // u cos, u sin, Q cos, Q sin
        for (int64_t i = 0; i < nl_; ++i)
            for (int64_t k = 0; k < nk; ++k) {
                const double ph = dot3(&kvec_[3 * k], &pos_[3 * i]), c = std::cos(ph), s = std::sin(ph);
                S[k] += uv[2 * i] * c;
                S[nk + k] += uv[2 * i] * s;
                S[2 * nk + k] += Q[i] * c;
                S[3 * nk + k] += Q[i] * s;
            }
        comm_.sum(S.data(), static_cast<int>(4 * nk));
        const double *uc = &S[0], *us = &S[nk], *vc = &S[2 * nk], *vs = &S[3 * nk];
#pragma omp parallel for schedule(static) num_threads(thread_count(threads_))
        for (int64_t i = 0; i < nl_; ++i) {
            double f[3] = {0, 0, 0};
            for (int64_t k = 0; k < nk; ++k) {
                const double ph = dot3(&kvec_[3 * k], &pos_[3 * i]), c = std::cos(ph), s = std::sin(ph);
                const double t = kcoef_[k] * (uv[2 * i] * (-s * vc[k] + c * vs[k]) + Q[i] * (-s * uc[k] + c * us[k]));
                for (int p = 0; p < 3; ++p) f[p] -= t * kvec_[3 * k + p];
            }
            for (int p = 0; p < 3; ++p) F[3 * i + p] += f[p];
        }
        if (comm_.root())   // (the sums are the whole system's: one domain adds their virial)
            for (int64_t k = 0; k < nk; ++k)
                subtract_recip_virial(kcoef_[k] * (uc[k] * vc[k] + us[k] * vs[k]), &kvec_[3 * k], eta_, w);
        if (per_atom) {
            // u_i times the strain derivative of the potential of Q at atom i
            std::vector<double> phi(6 * nl_, 0.0);
    #pragma omp parallel for schedule(static) num_threads(thread_count(threads_))
            for (int64_t i = 0; i < nl_; ++i)
                for (int64_t k = 0; k < nk; ++k) {
                    const double ph = dot3(&kvec_[3 * k], &pos_[3 * i]);
                    double f[9] = {0};
                    subtract_recip_virial(kcoef_[k] * (std::cos(ph) * vc[k] + std::sin(ph) * vs[k]), &kvec_[3 * k],
                                          eta_, f);
                    for (int c = 0; c < 6; ++c) phi[6 * i + c] += f[3 * kPQ[c][0] + kPQ[c][1]];
                }
            std::vector<double> u(nl_);
            for (int64_t i = 0; i < nl_; ++i) u[i] = uv[2 * i];
            add_strain_shares(u.data(), phi.data(), Wat);
        }
    }
    for (int k = 0; k < 9; ++k) W[k] += w[k];
}

// ---------------------------------------------------------------------------------------------

int64_t DistributedRealFft::Box::size() const {
    int64_t n = 1;
    for (int d = 0; d < 3; ++d) n *= std::max(0, hi[d] - lo[d]);
    return n;
}

DistributedRealFft::DistributedRealFft(const MeshBrick& brick, DomainComm& comm, int threads)
    : comm_(comm), K_{brick.K[0], brick.K[1], brick.K[2]}, threads_(threads) {
    H_ = K_[2] / 2 + 1;
    const int P = comm_.size();
    // every domain's brick
    double mine[6];
    for (int d = 0; d < 3; ++d) { mine[d] = brick.lo[d]; mine[3 + d] = brick.hi[d]; }
    std::vector<double> all;
    comm_.gather(mine, 1, 6, all);
    if (static_cast<int>(all.size()) != 6 * P) throw InputError("distributed FFT: the domains' bricks do not add up");
    // pencils: P = pa x pb domains, (ia, ib) of domain r = (r / pb, r % pb)
    int pb = 1;
    for (int f = 1; f * f <= P; ++f)
        if (P % f == 0) pb = f;
    const int pa = P / pb;
    auto split = [](int K, int parts, int i, int& lo, int& hi) {
        lo = static_cast<int>(static_cast<int64_t>(K) * i / parts);
        hi = static_cast<int>(static_cast<int64_t>(K) * (i + 1) / parts);
    };
    for (int r = 0; r < P; ++r) {
        Box b;
        for (int d = 0; d < 3; ++d) { b.lo[d] = static_cast<int>(all[6 * r + d]); b.hi[d] = static_cast<int>(all[6 * r + 3 + d]); }
        brick_.push_back(b);
        const int ia = r / pb, ib = r % pb;
        Box l1, l2, l3;
        split(K_[0], pa, ia, l1.lo[0], l1.hi[0]);
        split(K_[1], pb, ib, l1.lo[1], l1.hi[1]);
        l1.lo[2] = 0; l1.hi[2] = K_[2];
        Box l1c = l1;
        l1c.hi[2] = H_;
        split(K_[0], pa, ia, l2.lo[0], l2.hi[0]);
        l2.lo[1] = 0; l2.hi[1] = K_[1];
        split(H_, pb, ib, l2.lo[2], l2.hi[2]);
        l3.lo[0] = 0; l3.hi[0] = K_[0];
        split(K_[1], pa, ia, l3.lo[1], l3.hi[1]);
        l3.lo[2] = l2.lo[2]; l3.hi[2] = l2.hi[2];
        l1_.push_back(l1); l1c_.push_back(l1c); l2_.push_back(l2); l3_.push_back(l3);
    }
}

void DistributedRealFft::release() {
    for (auto* v : {&real_}) { v->clear(); v->shrink_to_fit(); }
    for (auto* v : {&c1_, &c2_, &c3_}) { v->clear(); v->shrink_to_fit(); }
    send_.clear();
    recv_.clear();
    send_.shrink_to_fit();
    recv_.shrink_to_fit();
}

void DistributedRealFft::half_spectrum_box(int lo[3], int hi[3]) const {
    const Box& b = l3_[comm_.rank()];
    for (int d = 0; d < 3; ++d) { lo[d] = b.lo[d]; hi[d] = b.hi[d]; }
}

void DistributedRealFft::move(const std::vector<Box>& from, const std::vector<Box>& to, const double* in, double* out,
                              int w) {
    const int P = comm_.size(), me = comm_.rank();
    auto overlap = [](const Box& a, const Box& b) {
        Box o;
        for (int d = 0; d < 3; ++d) { o.lo[d] = std::max(a.lo[d], b.lo[d]); o.hi[d] = std::min(a.hi[d], b.hi[d]); }
        return o;
    };
    // (points of box `o` in the row-major layout of box `b`, w doubles each)
    auto walk = [w](const Box& o, const Box& b, auto&& fn) {
        if (o.size() == 0) return;
        const int64_t n1 = b.hi[1] - b.lo[1], n2 = b.hi[2] - b.lo[2];
        for (int i0 = o.lo[0]; i0 < o.hi[0]; ++i0)
            for (int i1 = o.lo[1]; i1 < o.hi[1]; ++i1) {
                const int64_t base = ((static_cast<int64_t>(i0 - b.lo[0]) * n1 + (i1 - b.lo[1])) * n2 + (o.lo[2] - b.lo[2])) * w;
                fn(base, static_cast<int64_t>(o.hi[2] - o.lo[2]) * w);
            }
    };
    // (the buffers persist between calls: no page faults of fresh allocations per transform)
    auto& send = send_;
    auto& recv = recv_;
    send.resize(P);
    recv.resize(P);
    for (int r = 0; r < P; ++r) {
        send[r].clear();
        recv[r].clear();
        if (r == me) continue;   // (this domain's own part is copied directly below)
        const Box o = overlap(from[me], to[r]);
        send[r].reserve(o.size() * w);
        walk(o, from[me], [&](int64_t base, int64_t len) { send[r].insert(send[r].end(), in + base, in + base + len); });
        recv[r].resize(overlap(from[r], to[me]).size() * w);
    }
    comm_.alltoall(send, recv);
    {
        // own part: rows of the overlap, from layout `from` to layout `to`
        const Box o = overlap(from[me], to[me]);
        std::vector<int64_t> src_rows;
        walk(o, from[me], [&](int64_t base, int64_t) { src_rows.push_back(base); });
        size_t k = 0;
        walk(o, to[me], [&](int64_t base, int64_t len) {
            std::copy(in + src_rows[k], in + src_rows[k] + len, out + base);
            ++k;
        });
    }
    for (int r = 0; r < P; ++r) {
        if (r == me) continue;
        const double* src = recv[r].data();
        walk(overlap(from[r], to[me]), to[me], [&](int64_t base, int64_t len) {
            std::copy(src, src + len, out + base);
            src += len;
        });
    }
}

void DistributedRealFft::lines(std::complex<double>* data, int direction, bool forward) {
    // the lines of L2 (along 1; start (i0, ih)) or L3 (along 0; start (i1, ih)): strided copies
    // in and out of a buffer
    using cd = std::complex<double>;
    const int me = comm_.rank();
    const Box &b2 = l2_[me], &b3 = l3_[me];
    const int64_t n20 = b2.hi[0] - b2.lo[0], n22 = b2.hi[2] - b2.lo[2];
    const int64_t n31 = b3.hi[1] - b3.lo[1], n32 = b3.hi[2] - b3.lo[2];
    const int64_t nlines = direction == 1 ? n20 * n22 : n31 * n32;
    const int64_t n = K_[direction == 1 ? 1 : 0];
    const int64_t stride = direction == 1 ? n22 : n31 * n32;
#pragma omp parallel num_threads(thread_count(threads_))
    {
        std::vector<cd> a(n), b(n);
        Eigen::FFT<double> eig;
        eig.SetFlag(Eigen::FFT<double>::Unscaled);
#pragma omp for schedule(static)
        for (int64_t l = 0; l < nlines; ++l) {
            cd* p = data + (direction == 1 ? (l / n22) * K_[1] * n22 + l % n22 : l);
            for (int64_t k = 0; k < n; ++k) a[k] = p[k * stride];
            if (forward) eig.fwd(b.data(), a.data(), n);
            else eig.inv(b.data(), a.data(), n);
            for (int64_t k = 0; k < n; ++k) p[k * stride] = b[k];
        }
    }
}

void DistributedRealFft::forward_real(const double* grid, std::complex<double>* spec) {
    const int me = comm_.rank();
    const Box &b1 = l1_[me], &b2 = l2_[me];
    real_.resize(b1.size());
    move(brick_, l1_, grid, real_.data(), 1);
    const int64_t lines1 = static_cast<int64_t>(b1.hi[0] - b1.lo[0]) * (b1.hi[1] - b1.lo[1]);
    c1_.resize(lines1 * H_);
    c2_.resize(b2.size());
#pragma omp parallel num_threads(thread_count(threads_))
    {
        Eigen::FFT<double> eig;
        eig.SetFlag(Eigen::FFT<double>::Unscaled);
        eig.SetFlag(Eigen::FFT<double>::HalfSpectrum);
#pragma omp for schedule(static)
        for (int64_t l = 0; l < lines1; ++l) eig.fwd(&c1_[l * H_], &real_[l * K_[2]], K_[2]);
    }
    move(l1c_, l2_, reinterpret_cast<double*>(c1_.data()), reinterpret_cast<double*>(c2_.data()), 2);
    lines(c2_.data(), 1, true);
    move(l2_, l3_, reinterpret_cast<double*>(c2_.data()), reinterpret_cast<double*>(spec), 2);
    lines(spec, 0, true);
}

void DistributedRealFft::inverse_real(std::complex<double>* spec, double* grid) {
    const int me = comm_.rank();
    const Box &b1 = l1_[me], &b2 = l2_[me];
    const int64_t lines1 = static_cast<int64_t>(b1.hi[0] - b1.lo[0]) * (b1.hi[1] - b1.lo[1]);
    real_.resize(b1.size());
    c1_.resize(lines1 * H_);
    c2_.resize(b2.size());
    lines(spec, 0, false);
    move(l3_, l2_, reinterpret_cast<double*>(spec), reinterpret_cast<double*>(c2_.data()), 2);
    lines(c2_.data(), 1, false);
    move(l2_, l1c_, reinterpret_cast<double*>(c2_.data()), reinterpret_cast<double*>(c1_.data()), 2);
#pragma omp parallel num_threads(thread_count(threads_))
    {
        Eigen::FFT<double> eig;
        eig.SetFlag(Eigen::FFT<double>::Unscaled);
        eig.SetFlag(Eigen::FFT<double>::HalfSpectrum);
#pragma omp for schedule(static)
        for (int64_t l = 0; l < lines1; ++l) eig.inv(&real_[l * K_[2]], &c1_[l * H_], K_[2]);
    }
    move(l1_, brick_, real_.data(), grid, 1);
}

void DistributedRealFft::convolve_real(double* grid, const double* G) {
    c3_.resize(l3_[comm_.rank()].size());
    forward_real(grid, c3_.data());
    for (size_t k = 0; k < c3_.size(); ++k) c3_[k] *= G[k];
    inverse_real(c3_.data(), grid);
}

QEqSolution solve_qeq_cg(const DomainElectrostatics& op, DomainComm& comm, int64_t n_total, const double* J,
                         const double* b, double total, double* x, double tol, int max_iterations, std::vector<double>* A0x,
                         bool mesh_preconditioner) {
    const int64_t n = op.n_local();
    std::vector<double> diag(n);
    op.diagonal(diag.data());
    auto matvec = [&](const double* v, double* out) { op.apply(v, out); };
    auto sum = [&](double* v, int k) { comm.sum(v, k); };
    if (mesh_preconditioner && op.has_mesh())
        return pcg_qeq(n, n_total, diag.data(), matvec, sum, J, b, total, x, tol, max_iterations, A0x,
                       [&](const double* r, double* y, const std::vector<double>& dinv, double sum_dinv) {
                           op.precondition(r, y, dinv.data(), sum_dinv);
                       });
    return pcg_qeq(n, n_total, diag.data(), matvec, sum, J, b, total, x, tol, max_iterations, A0x);
}

void DomainElectrostatics::precondition(const double* r, double* y, const double* dinv, double sum_dinv) const {
    // M^-1 = D^-1 - D^-1 S^T H S D^-1 (Woodbury's inverse of D + S^T G S, the diagonal plus the
    // mesh part, with S D^-1 S^T taken as sum(1/d) / moduli in k space): the long waves of the
    // Coulomb operator, whose eigenvalues grow like L^2 with the box and make Jacobi's iteration
    // count grow with the system, are inverted on the mesh.
    for (int64_t i = 0; i < nl_; ++i) y[i] = dinv[i] * r[i];
    mesh_->set_preconditioner(sum_dinv);
    const std::vector<double> yg = with_ghosts(y, 1);
    std::vector<double> part(na_, 0.0);
    mesh_->apply(yg.data(), part.data(), true);
    comm_.reverse(part.data(), 1);
    for (int64_t i = 0; i < nl_; ++i) y[i] -= dinv[i] * part[i];
}

int64_t DomainElectrostatics::mesh_points() const { return mesh_ ? mesh_->points() : 0; }

double DomainElectrostatics::distance(int64_t i, int64_t j) const {
    double d[3];
    for (int k = 0; k < 3; ++k) d[k] = pos_[3 * j + k] - pos_[3 * i + k];
    return std::sqrt(dot3(d, d));
}

double DomainElectrostatics::self_term(int64_t i) const {
    const double gs = sigma_[i] > 0.0 ? 1.0 / (sigma_[i] * std::sqrt(kPi)) : 0.0;
    return (gs - (periodic_ ? 2.0 / (std::sqrt(2.0) * eta_ * std::sqrt(kPi)) : 0.0)) / fpe_;
}

void DomainElectrostatics::add_strain_shares(const double* u, const double* phi, double* Wat) const {
    for (int64_t i = 0; i < nl_; ++i)
        for (int c = 0; c < 6; ++c) {
            const int p = kPQ[c][0], q = kPQ[c][1];
            Wat[9 * i + 3 * p + q] += u[i] * phi[6 * i + c];
            if (p != q) Wat[9 * i + 3 * q + p] += u[i] * phi[6 * i + c];
        }
}

std::vector<double> DomainElectrostatics::with_ghosts(const double* u, int w) const {
    std::vector<double> g(static_cast<size_t>(na_) * w, 0.0);
    std::copy(u, u + nl_ * w, g.begin());
    comm_.forward(g.data(), w);
    return g;
}

}  // namespace hdnnp
