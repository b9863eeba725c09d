#include "hdnnp/electrostatics.hpp"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

#include "electrostatic_kernels.hpp"
#include "qeq_cg.hpp"
#include "hdnnp/errors.hpp"
#include "hdnnp/functions.hpp"
#include "hdnnp/threads.hpp"

#ifdef _OPENMP
#include <omp.h>
#endif

namespace hdnnp {
using namespace kernels;

namespace {
// Structure-factor tables (cos and sin of k.R per atom and k-vector) are kept when they cost
// at most this many k-vectors per atom (16 bytes each); otherwise they are recomputed.
constexpr int64_t kMaxTabulatedK = 64;
constexpr int64_t kDirectMaxAtoms = 4096;
constexpr double kListMaxNeighbours = 1000.0;

double dot3(const double* a, const double* b) { return a[0] * b[0] + a[1] * b[1] + a[2] * b[2]; }
void cross3(const double* a, const double* b, double* c) {
    c[0] = a[1] * b[2] - a[2] * b[1];
    c[1] = a[2] * b[0] - a[0] * b[2];
    c[2] = a[0] * b[1] - a[1] * b[0];
}
}  // namespace

void Screening::eval(double r, double& f, double& df) const {
    if (!active() || r >= r_out) { f = 1.0; df = 0.0; return; }
    if (r <= r_in) { f = 0.0; df = 0.0; return; }
    const double w = r_out - r_in, x = (r - r_in) / w;
    double c = 0.0, dc = 0.0;  // core function and its derivative in x
    switch (core) {
        case 'c': c = 0.5 * (std::cos(kPi * x) + 1.0); dc = -0.5 * kPi * std::sin(kPi * x); break;
        case '1': c = (2.0 * x - 3.0) * x * x + 1.0; dc = 6.0 * x * (x - 1.0); break;
        case '2': c = ((15.0 - 6.0 * x) * x - 10.0) * x * x * x + 1.0;
                  dc = -30.0 * x * x * (x - 1.0) * (x - 1.0); break;
        case '3': c = (x * (x * (20.0 * x - 70.0) + 84.0) - 35.0) * x * x * x * x + 1.0;
                  dc = 140.0 * x * x * x * (x - 1.0) * (x - 1.0) * (x - 1.0); break;
        case '4': c = (x * (x * ((315.0 - 70.0 * x) * x - 540.0) + 420.0) - 126.0) * std::pow(x, 5) + 1.0;
                  dc = -630.0 * std::pow(x, 4) * std::pow(x - 1.0, 4); break;
        case 'e': {
            const double y = 1.0 - x * x;
            c = std::exp(1.0 - 1.0 / y);
            dc = c * (-2.0 * x / (y * y));
            break;
        }
        default: throw std::invalid_argument(std::string("unknown screening core '") + core + "'");
    }
    f = 1.0 - c;
    df = -dc / w;
}

namespace kernels {
void half_sphere_kvectors(const double* cell, double k_cut, double eta, double fpe, std::vector<double>& kvec,
                          std::vector<double>& kcoef) {
    double bxc[3], cxa[3], axb[3];
    cross3(cell + 3, cell + 6, bxc);
    cross3(cell + 6, cell, cxa);
    cross3(cell, cell + 3, axb);
    const double volume = std::fabs(dot3(cell, bxc));
    kvec.clear();
    kcoef.clear();
    // Reciprocal vectors and the half sphere |k| < k_cut (n2p2's KspaceGrid: the same index
    // ranges and strict inequality, so the same set of k-vectors).
    double kb[9];
    const double pre = 2.0 * kPi / volume;
    for (int c = 0; c < 3; ++c) { kb[c] = pre * bxc[c]; kb[3 + c] = pre * cxa[c]; kb[6 + c] = pre * axb[c]; }
    int nmax[3];
    for (int d = 0; d < 3; ++d) {
        double nrm[3];
        cross3(kb + 3 * ((d + 1) % 3), kb + 3 * ((d + 2) % 3), nrm);
        const double len = std::sqrt(dot3(nrm, nrm));
        const double proj = std::fabs(dot3(kb + 3 * d, nrm)) / len;
        int m = 0;
        while (m * proj <= k_cut) ++m;
        nmax[d] = m;
    }
    for (int i = 0; i <= nmax[0]; ++i)
        for (int j = (i == 0 ? 0 : -nmax[1]); j <= nmax[1]; ++j)
            for (int k = (i == 0 && j == 0 ? 0 : -nmax[2]); k <= nmax[2]; ++k) {
                if (i == 0 && j == 0 && k == 0) continue;
                double kv[3];
                for (int c = 0; c < 3; ++c) kv[c] = i * kb[c] + j * kb[3 + c] + k * kb[6 + c];
                const double k2 = dot3(kv, kv);
                if (k2 < k_cut * k_cut) {
                    kvec.insert(kvec.end(), kv, kv + 3);
                    kcoef.push_back(2.0 * std::exp(-0.5 * eta * eta * k2) * 2.0 * pre / k2 / fpe);
                }
            }
}
}  // namespace kernels

Electrostatics::Electrostatics(const ElectrostaticsSetup& s)
    : n_(s.n), periodic_(s.cell != nullptr), fpe_(s.four_pi_eps), eta_(s.eta), r_cut_(s.r_cut),
      k_cut_(s.k_cut), scr_(s.screening), threads_(s.threads) {
    if (n_ < 1) throw InputError("electrostatics needs at least one atom");
    if (!(fpe_ > 0.0)) throw InputError("four_pi_epsilon must be positive");
    pos_.assign(s.positions, s.positions + 3 * n_);
    sigma_.assign(s.sigma, s.sigma + n_);
    sigma_max_ = n_ ? *std::max_element(sigma_.begin(), sigma_.end()) : 0.0;
    for (int64_t i = 0; i < n_; ++i) {
        for (int c = 0; c < 3; ++c)
            if (!std::isfinite(pos_[3 * i + c]))
                throw InputError("atom " + std::to_string(i) + " has a non-finite coordinate");
        if (!(sigma_[i] >= 0.0))
            throw InputError("atom " + std::to_string(i) + " has no valid Gaussian width (>= 0; 0: point charge)");
    }
    if (!periodic_) return;
    std::copy(s.cell, s.cell + 9, cell_);
    double bxc[3], cxa[3], axb[3];
    cross3(cell_ + 3, cell_ + 6, bxc);
    cross3(cell_ + 6, cell_, cxa);
    cross3(cell_, cell_ + 3, axb);
    volume_ = std::fabs(dot3(cell_, bxc));
    if (!(volume_ > 0.0)) throw InputError("the cell is singular");
    if (!(eta_ > 0.0) || !(r_cut_ > 0.0) || !(k_cut_ > 0.0))
        throw InputError("periodic electrostatics needs positive Ewald eta, r_cut and k_cut");
    const double r_max = std::max(r_cut_, scr_.r_out);
    // Real space: up to kDirectMaxAtoms atoms every pair with the lattice translations that can
    // bring it within r_max (no stored list: the Ewald cutoff of n2p2's parameters grows with
    // the cell, to ~10^4 neighbours per atom); beyond, or with at most kListMaxNeighbours
    // neighbours per atom, a neighbour list.
    // Small cells with few neighbours per atom (particle-mesh parameters: ~150) take the list too.
    const double neighbours = 4.0 / 3.0 * kPi * r_max * r_max * r_max * n_ / volume_;
    direct_ = n_ <= kDirectMaxAtoms && neighbours > kListMaxNeighbours && !s.neighbor_list;
    {
        // inverse of the cell (rows a, b, c): columns are (b x c, c x a, a x b) / det
        const double det = dot3(cell_, bxc);
        for (int r = 0; r < 3; ++r) {
            inv_cell_[3 * r + 0] = bxc[r] / det;
            inv_cell_[3 * r + 1] = cxa[r] / det;
            inv_cell_[3 * r + 2] = axb[r] / det;
        }
    }
    if (direct_) {
        // |reciprocal vectors| = 1 / the lattice plane spacings (bounds of the image search)
        for (int k = 0; k < 3; ++k)
            recip_len_[k] = std::sqrt(inv_cell_[k] * inv_cell_[k] + inv_cell_[3 + k] * inv_cell_[3 + k] +
                                      inv_cell_[6 + k] * inv_cell_[6 + k]);
        if (scr_.active()) {
            const bool pbc[3] = {true, true, true};
            snl_ = build_neighbor_list(pos_.data(), n_, cell_, pbc, scr_.r_out, 1e-6, false, true);
        }
    } else {
        const bool pbc[3] = {true, true, true};
        nl_ = build_neighbor_list(pos_.data(), n_, cell_, pbc, r_max, 1e-6, false, true);  // j >= i
    }
    if (s.mesh[0] > 0) {
        pme_ = std::make_shared<const ParticleMesh>(cell_, inv_cell_, volume_, s.mesh, s.mesh_order, eta_, fpe_,
                                                    pos_.data(), n_, threads_, s.fft);
        cache_kernel();
        return;
    }
    half_sphere_kvectors(cell_, k_cut_, eta_, fpe_, kvec_, kcoef_);
    const int64_t nk = n_kvectors();
    if (nk <= kMaxTabulatedK) {
        cos_.resize(n_ * nk);
        sin_.resize(n_ * nk);
        for (int64_t i = 0; i < n_; ++i)
            for (int64_t k = 0; k < nk; ++k) {
                const double ph = dot3(&kvec_[3 * k], &pos_[3 * i]);
                cos_[i * nk + k] = std::cos(ph);
                sin_[i * nk + k] = std::sin(ph);
            }
    }
    cache_kernel();
}

void Electrostatics::cache_kernel() {
    if (!periodic_ || direct_) return;
    {
        // matrix-free products on a stored list (the CG solver's): the real-space kernel of every
        // listed pair image once, so that each product is a sparse matrix-vector product
        kvals_.assign(nl_.index.size(), 0.0);
        const double b = 1.0 / (std::sqrt(2.0) * eta_), rc = r_cut_;
        std::vector<std::vector<int64_t>> near_scratch(threads());
        for_pair_batches([&](int tid, int64_t i, int64_t m, const int64_t* J, const double*, const double*,
                             const double*, const double* R) {
            // (for_pair_batches skips j < i; the half list has none, so row i is these m entries)
            row_kernel(i, m, J, R, b, rc, &kvals_[nl_.offsets[i]], near_scratch[tid]);
        }, false, false);
    }
}

void Electrostatics::row_kernel(int64_t i, int64_t m, const int64_t* J, const double* R, double b, double rc,
                                double* __restrict k, std::vector<int64_t>& near) const {
    const double si = sigma_[i], inv_fpe = 1.0 / fpe_;
    const double* __restrict sig = sigma_.data();
#pragma omp simd
    for (int64_t e = 0; e < m; ++e) {   // the Ewald term erfc(b r) / r (b = 0: the bare 1 / r)
        const double r = R[e];
        double eb, gb;
        erfc_gauss(b * r, eb, gb);
        k[e] = r < rc ? eb / r * inv_fpe : 0.0;
    }
    // the Gaussian-width term -erfc(a r) / r, zero from a r = 6 on: only the near images
    const int64_t nn = near_images(si, m, R, near);
    const int64_t* __restrict nr = near.data();
#pragma omp simd
    for (int64_t q = 0; q < nn; ++q) {
        const int64_t e = nr[q];
        const double r = R[e], a = inv_sqrt2_gamma_of(si, sig[J[e]]);
        double ea, ga;
        erfc_gauss(a * r, ea, ga);
        k[e] -= r < rc ? ea / r * inv_fpe : 0.0;
    }
}

int64_t Electrostatics::near_images(double si, int64_t m, const double* R, std::vector<int64_t>& near) const {
    // a r < 6 with some partner only if r < 6 / a_min, a_min = 1/(sqrt2 gamma) with the widest partner
    const double r_near = 6.0 / inv_sqrt2_gamma_of(si, sigma_max_);
    near.resize(m);
    int64_t nn = 0;
    for (int64_t e = 0; e < m; ++e)
        if (R[e] < r_near) near[nn++] = e;
    return nn;
}

int Electrostatics::threads() const { return thread_count(threads_); }

template <class BatchFn>
int Electrostatics::for_pair_batches(BatchFn&& fn, bool screening_only, bool displacements) const {
    const NeighborList& list = direct_ && screening_only && !snl_.offsets.empty() ? snl_ : nl_;
    const bool use_list = periodic_ && (!direct_ || &list == &snl_);
    const int nthreads = threads();
    const double r_max = periodic_ ? std::max(r_cut_, scr_.r_out) : 0.0, r2max = r_max * r_max;
    const double* c2 = cell_ + 6;
    const double cc = dot3(c2, c2), icc = 1.0 / cc;
    constexpr double kEps = 1e-9;
#pragma omp parallel num_threads(nthreads)
    {
        int tid = 0;
#ifdef _OPENMP
        tid = omp_get_thread_num();
#endif
        // the row's images, written by index into arrays grown ahead of each block of candidates
        std::vector<int64_t> J;
        std::vector<double> DX, DY, DZ, R;
        int64_t m = 0;
        auto reserve = [&](int64_t extra) {
            if (m + extra <= static_cast<int64_t>(R.size())) return;
            const size_t c = std::max<size_t>(2 * R.size(), static_cast<size_t>(m + extra + 256));
            J.resize(c); DX.resize(c); DY.resize(c); DZ.resize(c); R.resize(c);
        };
        auto add = [&](int64_t j, double dx, double dy, double dz, double r2) {   // (R holds r^2 here)
            J[m] = j; R[m] = r2;
            if (displacements) { DX[m] = dx; DY[m] = dy; DZ[m] = dz; }
            ++m;
        };
#pragma omp for schedule(dynamic, 8)
        for (int64_t i = 0; i < n_; ++i) {
            const double* xi = &pos_[3 * i];
            m = 0;
            if (!periodic_) {
                reserve(n_ - i);
                for (int64_t j = i + 1; j < n_; ++j) {
                    const double dx = pos_[3 * j] - xi[0], dy = pos_[3 * j + 1] - xi[1], dz = pos_[3 * j + 2] - xi[2];
                    add(j, dx, dy, dz, dx * dx + dy * dy + dz * dz);
                }
            } else if (!use_list) {
                for (int64_t j = i; j < n_; ++j) {
                    // wrap the displacement into the cell around 0; then only the images that can
                    // lie within r_max: lattice indices n0, n1 bounded by the plane spacings, and
                    // for each the contiguous n2 range where |d + n0 a + n1 b + n2 c| < r_max
                    // (a quadratic in n2, widened by one on each side for round-off)
                    double d[3], f[3];
                    for (int k = 0; k < 3; ++k) d[k] = pos_[3 * j + k] - xi[k];
                    for (int k = 0; k < 3; ++k)
                        f[k] = std::nearbyint(d[0] * inv_cell_[k] + d[1] * inv_cell_[3 + k] + d[2] * inv_cell_[6 + k]);
                    for (int k = 0; k < 3; ++k) d[k] -= f[0] * cell_[k] + f[1] * cell_[3 + k] + f[2] * cell_[6 + k];
                    for (int k = 0; k < 3; ++k)
                        f[k] = d[0] * inv_cell_[k] + d[1] * inv_cell_[3 + k] + d[2] * inv_cell_[6 + k];
                    // (bounds widened by kEps for round-off; the r2 test below decides)
                    const int lo0 = static_cast<int>(std::ceil(-r_max * recip_len_[0] - f[0] - kEps));
                    const int hi0 = static_cast<int>(std::floor(r_max * recip_len_[0] - f[0] + kEps));
                    const int lo1 = static_cast<int>(std::ceil(-r_max * recip_len_[1] - f[1] - kEps));
                    const int hi1 = static_cast<int>(std::floor(r_max * recip_len_[1] - f[1] + kEps));
                    for (int n0 = lo0; n0 <= hi0; ++n0)
                        for (int n1 = lo1; n1 <= hi1; ++n1) {
                            double b[3];
                            for (int k = 0; k < 3; ++k) b[k] = d[k] + n0 * cell_[k] + n1 * cell_[3 + k];
                            const double bc = dot3(b, c2), bb = dot3(b, b);
                            const double disc = bc * bc - cc * (bb - r2max);
                            if (disc < 0.0) continue;
                            const double sq = std::sqrt(disc);
                            const int lo2 = static_cast<int>(std::ceil((-bc - sq) * icc - kEps));
                            const int hi2 = static_cast<int>(std::floor((-bc + sq) * icc + kEps));
                            reserve(hi2 - lo2 + 1);
                            for (int n2 = lo2; n2 <= hi2; ++n2) {
                                const double dx = b[0] + n2 * c2[0], dy = b[1] + n2 * c2[1], dz = b[2] + n2 * c2[2];
                                const double r2 = dx * dx + dy * dy + dz * dz;
                                if (r2 >= r2max || (j == i && r2 == 0.0)) continue;
                                add(j, dx, dy, dz, r2);
                            }
                        }
                }
            } else {
                reserve(list.offsets[i + 1] - list.offsets[i]);
                for (int64_t p = list.offsets[i]; p < list.offsets[i + 1]; ++p) {
                    const int32_t j = list.index[p];
                    if (j < i) continue;
                    const double* sh = &list.shifts[3 * list.shift_id[p]];
                    const double dx = pos_[3 * j] + sh[0] - xi[0], dy = pos_[3 * j + 1] + sh[1] - xi[1],
                                 dz = pos_[3 * j + 2] + sh[2] - xi[2];
                    add(j, dx, dy, dz, dx * dx + dy * dy + dz * dz);
                }
            }
            if (m) {
                double* __restrict r = R.data();
#pragma omp simd
                for (int64_t e = 0; e < m; ++e) r[e] = std::sqrt(r[e]);
                fn(tid, i, m, J.data(), DX.data(), DY.data(), DZ.data(), R.data());
            }
        }
    }
    return nthreads;
}

template <class PairFn>
int Electrostatics::for_half_pairs(PairFn&& fn, bool screening_only) const {
    return for_pair_batches([&](int tid, int64_t i, int64_t m, const int64_t* J, const double* DX, const double* DY,
                                const double* DZ, const double* R) {
        for (int64_t e = 0; e < m; ++e) fn(tid, i, J[e], DX[e], DY[e], DZ[e], R[e]);
    }, screening_only);
}

namespace {
/// Per-thread accumulation buffers, reduced in thread order (deterministic for a given
/// number of threads).
struct ThreadBuffers {
    std::vector<std::vector<double>> b;
    ThreadBuffers(int threads, size_t size) : b(threads, std::vector<double>(size, 0.0)) {}
    void reduce_into(double* out) const {
        for (const auto& v : b)
            for (size_t k = 0; k < v.size(); ++k) out[k] += v[k];
    }
};
}  // namespace

double Electrostatics::self_term(int64_t i) const {
    const double sp = std::sqrt(kPi);
    return (gaussian_self(i) - (periodic_ ? 2.0 / (std::sqrt(2.0) * eta_ * sp) : 0.0)) / fpe_;
}

void Electrostatics::diagonal(double* d) const {
    double recip = pme_ ? pme_->diagonal() : 0.0;
    for (double c : kcoef_) recip += c;
    for (int64_t i = 0; i < n_; ++i) d[i] = self_term(i) + recip;
    if (!periodic_) return;
    const double b = 1.0 / (std::sqrt(2.0) * eta_);
    ThreadBuffers tb(threads(), n_);
    for_half_pairs([&](int tid, int64_t i, int64_t j, double, double, double, double r) {
        if (j != i || r >= r_cut_) return;  // self-images
        const double a = inv_sqrt2_gamma(i, i);
        tb.b[tid][i] += (erf_fast(a * r) - std::erf(b * r)) / r / fpe_;
    });
    tb.reduce_into(d);
}

void Electrostatics::dense(double* A) const {
    if (pme_) throw InputError("the dense QEq matrix needs Ewald structure factors, not a particle mesh");
    std::fill(A, A + n_ * n_, 0.0);
    const double b = periodic_ ? 1.0 / (std::sqrt(2.0) * eta_) : 0.0;
    const double rc = periodic_ ? r_cut_ : 1e300;
    // upper triangle and diagonal (the thread of row i writes row i only), mirrored below;
    // k = [erf(a r) - erf(b r)] / r = [erfc(b r) - erfc(a r)] / r (b = 0 for molecules)
    std::vector<std::vector<double>> scratch(threads());
    std::vector<std::vector<int64_t>> near_scratch(threads());
    for_pair_batches([&](int tid, int64_t i, int64_t m, const int64_t* J, const double*, const double*,
                         const double*, const double* R) {
        auto& kv = scratch[tid];
        kv.resize(m);
        double* __restrict k = kv.data();
        row_kernel(i, m, J, R, b, rc, k, near_scratch[tid]);
        double* row = A + i * n_;
        for (int64_t e = 0; e < m; ++e) row[J[e]] += k[e];
    }, false, false);
    for (int64_t i = 0; i < n_; ++i)
        for (int64_t j = i + 1; j < n_; ++j) A[j * n_ + i] = A[i * n_ + j];
    for (int64_t i = 0; i < n_; ++i) A[i * n_ + i] += self_term(i);
    const int64_t nk = n_kvectors();
    if (!nk) return;
    // Reciprocal part: A_ij += sum_k c_k (cos_i cos_j + sin_i sin_j).
    std::vector<double> cs(n_ * nk), sn(n_ * nk);
    for (int64_t i = 0; i < n_; ++i)
        for (int64_t k = 0; k < nk; ++k) {
            const double ph = dot3(&kvec_[3 * k], &pos_[3 * i]);
            cs[i * nk + k] = std::sqrt(kcoef_[k]) * std::cos(ph);
            sn[i * nk + k] = std::sqrt(kcoef_[k]) * std::sin(ph);
        }
#pragma omp parallel for schedule(dynamic, 16) num_threads(threads())
    for (int64_t i = 0; i < n_; ++i)
        for (int64_t j = 0; j < n_; ++j) {
            double s = 0.0;
            const double *ci = &cs[i * nk], *cj = &cs[j * nk], *si = &sn[i * nk], *sj = &sn[j * nk];
#pragma omp simd reduction(+ : s)
            for (int64_t k = 0; k < nk; ++k) s += ci[k] * cj[k] + si[k] * sj[k];
            A[i * n_ + j] += s;
        }
}

void Electrostatics::recip_sums(const double* x, std::vector<double>& sc, std::vector<double>& ss) const {
    const int64_t nk = n_kvectors();
    sc.assign(nk, 0.0);
    ss.assign(nk, 0.0);
    for (int64_t i = 0; i < n_; ++i) {
        if (x[i] == 0.0) continue;
        for (int64_t k = 0; k < nk; ++k) {
            double c, s;
            phase(i, k, c, s);
            sc[k] += x[i] * c;
            ss[k] += x[i] * s;
        }
    }
}

void Electrostatics::apply(const double* x, double* y) const {
    const double b = periodic_ ? 1.0 / (std::sqrt(2.0) * eta_) : 0.0;
    const double rc = periodic_ ? r_cut_ : 1e300;
    std::fill(y, y + n_, 0.0);
    ThreadBuffers tb(threads(), n_);
    if (!kvals_.empty()) {
#pragma omp parallel num_threads(threads())
        {
            int tid = 0;
#ifdef _OPENMP
            tid = omp_get_thread_num();
#endif
            double* yt = tb.b[tid].data();
#pragma omp for schedule(dynamic, 64)
            for (int64_t i = 0; i < n_; ++i) {
                const int64_t p0 = nl_.offsets[i], p1 = nl_.offsets[i + 1];
                const int32_t* __restrict J = nl_.index.data();
                const double* __restrict k = kvals_.data();
                double yi = 0.0;
                for (int64_t p = p0; p < p1; ++p) {
                    yi += k[p] * x[J[p]];
                    if (J[p] != i) yt[J[p]] += k[p] * x[i];
                }
                yt[i] += yi;
            }
        }
    } else {
        std::vector<std::vector<double>> scratch(threads());
        std::vector<std::vector<int64_t>> near_scratch(threads());
        for_pair_batches([&](int tid, int64_t i, int64_t m, const int64_t* J, const double*, const double*,
                             const double*, const double* R) {
            auto& kv = scratch[tid];
            kv.resize(m);
            double* __restrict k = kv.data();
            row_kernel(i, m, J, R, b, rc, k, near_scratch[tid]);
            double yi = 0.0;
#pragma omp simd reduction(+ : yi)
            for (int64_t e = 0; e < m; ++e) yi += k[e] * x[J[e]];
            double* yt = tb.b[tid].data();
            yt[i] += yi;
            for (int64_t e = 0; e < m; ++e)
                if (J[e] != i) yt[J[e]] += k[e] * x[i];
        }, false, false);
    }
    tb.reduce_into(y);
    for (int64_t i = 0; i < n_; ++i) y[i] += self_term(i) * x[i];
    if (pme_) pme_->apply(x, y);
    const int64_t nk = n_kvectors();
    if (!nk) return;
    std::vector<double> sc, ss;
    recip_sums(x, sc, ss);
#pragma omp parallel for schedule(static) num_threads(threads())
    for (int64_t i = 0; i < n_; ++i) {
        double s = 0.0;
        for (int64_t k = 0; k < nk; ++k) {
            double c, sn;
            phase(i, k, c, sn);
            s += kcoef_[k] * (c * sc[k] + sn * ss[k]);
        }
        y[i] += s;
    }
}

double Electrostatics::energy(const double* Q, double* dEdQ, const double* AQ) const {
    std::vector<double> y(n_), scr(n_, 0.0);
    if (AQ) std::copy(AQ, AQ + n_, y.begin());
    else apply(Q, y.data());
    if (scr_.active()) {
        ThreadBuffers tb(threads(), n_);
        for_half_pairs([&](int tid, int64_t i, int64_t j, double, double, double, double r) {
            if (r >= scr_.r_out) return;
            const double a = inv_sqrt2_gamma(i, j);
            double f, df;
            scr_.eval(r, f, df);
            const double s = erf_fast(a * r) * (f - 1.0) / r / fpe_;
            double* t = tb.b[tid].data();
            t[i] += Q[j] * s;
            if (j != i) t[j] += Q[i] * s;
        }, true);
        tb.reduce_into(scr.data());
    }
    double e = 0.0;
    for (int64_t i = 0; i < n_; ++i) {
        const double self = gaussian_self(i) / fpe_;
        e += 0.5 * Q[i] * y[i] - 0.5 * Q[i] * Q[i] * self + 0.5 * Q[i] * scr[i];
        if (dEdQ) dEdQ[i] = y[i] - Q[i] * self + scr[i];
    }
    return e;
}

void Electrostatics::add_derivatives(const double* Q, const double* lam, double* F, double* W) const {
    // B(u, v) = sum_ij u_i v_j A0_ij with u = Q/2 + lam, v = Q gives E_elec + lam^T A0 Q up to
    // terms that do not depend on positions; the screening pairs are added separately.
    std::vector<double> u(n_);
    for (int64_t i = 0; i < n_; ++i) u[i] = 0.5 * Q[i] + lam[i];
    const double b = periodic_ ? 1.0 / (std::sqrt(2.0) * eta_) : 0.0;
    const double rc = periodic_ ? r_cut_ : 1e300;
    ThreadBuffers tb(threads(), 3 * n_ + 9);  // forces, then the virial
    std::vector<std::vector<double>> scratch(threads());
    std::vector<std::vector<int64_t>> near_scratch(threads());
    for_pair_batches([&](int tid, int64_t i, int64_t m, const int64_t* J, const double* DX, const double* DY,
                         const double* DZ, const double* R) {
        auto& gv = scratch[tid];
        gv.resize(m);
        double* __restrict g = gv.data();   // (dE/dr) / r of each image
        const double si = sigma_[i], ui = u[i], qi = Q[i], bb = b, rcut = rc, inv_fpe = 1.0 / fpe_;
        const double* __restrict sig = sigma_.data();
        const double* __restrict uu = u.data();
        // c = d(energy of this pair image)/dr; a self-image (j == i) is visited for T and -T
        // and carries half of the pair energy u_i v_i k + Q_i^2 s / 2 ... of both together.
        // slope = d/dr [erfc(b r) - erfc(a r)] / r, the Ewald part for every image, the
        // Gaussian-width part (zero from a r = 6 on) for the near ones
#pragma omp simd
        for (int64_t e = 0; e < m; ++e) {
            const double r = R[e];
            const int64_t j = J[e];
            double eb, gb;
            erfc_gauss(bb * r, eb, gb);
            const double slope = (-kTwoOverSqrtPi * bb * gb - eb / r) / r;
            const double coef = j == i ? ui * qi : ui * Q[j] + uu[j] * qi;
            g[e] = r < rcut ? coef * slope * inv_fpe / r : 0.0;
        }
        auto& nv = near_scratch[tid];
        const int64_t nn = near_images(si, m, R, nv);
        const int64_t* __restrict near = nv.data();
#pragma omp simd
        for (int64_t q = 0; q < nn; ++q) {
            const int64_t e = near[q];
            const double r = R[e];
            const int64_t j = J[e];
            const double a = inv_sqrt2_gamma_of(si, sig[j]);
            double ea, ga;
            erfc_gauss(a * r, ea, ga);
            const double slope = (kTwoOverSqrtPi * a * ga + ea / r) / r;
            const double coef = j == i ? ui * qi : ui * Q[j] + uu[j] * qi;
            g[e] += r < rcut ? coef * slope * inv_fpe / r : 0.0;
        }
        if (scr_.active()) {
            for (int64_t e = 0; e < m; ++e) {
                const double r = R[e];
                if (r >= scr_.r_out) continue;
                const int64_t j = J[e];
                const double a = inv_sqrt2_gamma(i, j);
                const double aea = gauss_slope(a, r), erfa = erf_fast(a * r);
                double f, df;
                scr_.eval(r, f, df);
                const double s = erfa * (f - 1.0) / r;
                const double ds = (kTwoOverSqrtPi * aea * (f - 1.0) + erfa * df) / r - s / r;
                g[e] += (j == i ? 0.5 : 1.0) * qi * Q[j] * ds / fpe_ / r;
            }
        }
        double* t = tb.b[tid].data();
        double fx = 0.0, fy = 0.0, fz = 0.0, w00 = 0.0, w01 = 0.0, w02 = 0.0, w11 = 0.0, w12 = 0.0, w22 = 0.0;
#pragma omp simd reduction(+ : fx, fy, fz, w00, w01, w02, w11, w12, w22)
        for (int64_t e = 0; e < m; ++e) {
            const double ge = g[e], dx = DX[e], dy = DY[e], dz = DZ[e];
            const double gs = J[e] == i ? 0.0 : ge;   // (the two self-image terms T, -T cancel in the forces)
            fx += gs * dx; fy += gs * dy; fz += gs * dz;
            w00 += ge * dx * dx; w01 += ge * dx * dy; w02 += ge * dx * dz;
            w11 += ge * dy * dy; w12 += ge * dy * dz; w22 += ge * dz * dz;
        }
        t[3 * i] += fx; t[3 * i + 1] += fy; t[3 * i + 2] += fz;
        for (int64_t e = 0; e < m; ++e) {
            const int64_t j = J[e];
            if (j == i) continue;
            t[3 * j] -= g[e] * DX[e]; t[3 * j + 1] -= g[e] * DY[e]; t[3 * j + 2] -= g[e] * DZ[e];
        }
        double* w = t + 3 * n_;
        w[0] -= w00; w[1] -= w01; w[2] -= w02;
        w[3] -= w01; w[4] -= w11; w[5] -= w12;
        w[6] -= w02; w[7] -= w12; w[8] -= w22;
    });
    std::vector<double> acc(3 * n_ + 9, 0.0);
    tb.reduce_into(acc.data());
    for (int64_t k = 0; k < 3 * n_; ++k) F[k] += acc[k];
    for (int k = 0; k < 9; ++k) W[k] += acc[3 * n_ + k];
    if (pme_) pme_->add_derivatives(u.data(), Q, F, W);
    const int64_t nk = n_kvectors();
    if (nk) {
        std::vector<double> uc, us, vc, vs;
        recip_sums(u.data(), uc, us);
        recip_sums(Q, vc, vs);
#pragma omp parallel for schedule(static) num_threads(threads())
        for (int64_t i = 0; i < n_; ++i) {
            double f[3] = {0, 0, 0};
            for (int64_t k = 0; k < nk; ++k) {
                double c, s;
                phase(i, k, c, s);
                const double t = kcoef_[k] * (u[i] * (-s * vc[k] + c * vs[k]) + Q[i] * (-s * uc[k] + c * us[k]));
                for (int p = 0; p < 3; ++p) f[p] -= t * kvec_[3 * k + p];
            }
            for (int p = 0; p < 3; ++p) F[3 * i + p] += f[p];
        }
        for (int64_t k = 0; k < nk; ++k)
            subtract_recip_virial(kcoef_[k] * (uc[k] * vc[k] + us[k] * vs[k]), &kvec_[3 * k], eta_, W);
    }
}

void Electrostatics::charge_response(const double* Q, double* R) const {
    if (pme_) throw InputError("charge_response needs Ewald structure factors, not a particle mesh");
    const int64_t n = n_;
    const double b = periodic_ ? 1.0 / (std::sqrt(2.0) * eta_) : 0.0;
    const double rc = periodic_ ? r_cut_ : 1e300;
    ThreadBuffers tb(threads(), 3 * n * n);
    for_half_pairs([&](int tid, int64_t i, int64_t j, double dx, double dy, double dz, double r) {
        if (j == i || r >= rc) return;  // a self-image's A0_ii term does not move with R_i
        const double a = inv_sqrt2_gamma(i, j);
        const double dk = kernel_slope(periodic_, b, r, gauss_slope(a, r), erf_fast(a * r));
        // A0_ij depends on d = R_j + T - R_i: dA0_ij/dR_j = g d, dA0_ij/dR_i = -g d
        const double g = dk / r / fpe_, d[3] = {dx, dy, dz};
        double* t = tb.b[tid].data();
        for (int c = 0; c < 3; ++c) {
            const double v = g * d[c];
            t[(i * n + j) * 3 + c] += Q[j] * v;   // (A0 Q)_i through A0_ij
            t[(i * n + i) * 3 + c] -= Q[j] * v;
            t[(j * n + j) * 3 + c] += Q[i] * v;   // (A0 Q)_j through A0_ji
            t[(j * n + i) * 3 + c] -= Q[i] * v;
        }
    });
    std::fill(R, R + 3 * n * n, 0.0);
    tb.reduce_into(R);
    const int64_t nk = n_kvectors();
    if (!nk) return;
    // (A0 Q)_i = sum_k c_k [cos(k.R_i) C_k + sin(k.R_i) S_k], C_k, S_k the structure factors of Q
    std::vector<double> sc, ss;
    recip_sums(Q, sc, ss);
#pragma omp parallel for schedule(static) num_threads(threads())
    for (int64_t i = 0; i < n; ++i) {
        for (int64_t k = 0; k < nk; ++k) {
            double ci, si;
            phase(i, k, ci, si);
            const double* kv = &kvec_[3 * k];
            const double self = kcoef_[k] * (-si * sc[k] + ci * ss[k]);
            for (int c = 0; c < 3; ++c) R[(i * n + i) * 3 + c] += self * kv[c];
            for (int64_t a = 0; a < n; ++a) {
                if (a == i || Q[a] == 0.0) continue;
                double ca, sa;
                phase(a, k, ca, sa);
                const double t = kcoef_[k] * Q[a] * (si * ca - ci * sa);
                for (int c = 0; c < 3; ++c) R[(i * n + a) * 3 + c] += t * kv[c];
            }
        }
    }
}

QEqSolution solve_qeq_cg(const Electrostatics& op, const double* J, const double* b, double total, double* x,
                         double tol, int max_iterations, std::vector<double>* A0x) {
    const int64_t n = op.size();
    std::vector<double> diag(n);
    op.diagonal(diag.data());
    return pcg_qeq(n, n, diag.data(), [&](const double* v, double* out) { op.apply(v, out); },
                   [](double*, int) {}, J, b, total, x, tol, max_iterations, A0x);
}

}  // namespace hdnnp
