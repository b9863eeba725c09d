#include "hdnnp/electrostatics.hpp"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

#include "hdnnp/errors.hpp"

#ifdef _OPENMP
#include <omp.h>
#endif

namespace hdnnp {

namespace {
constexpr double kPi = 3.14159265358979323846;
const double kTwoOverSqrtPi = 2.0 / std::sqrt(kPi);
// Structure-factor tables (cos and sin of k.R per atom and k-vector) are kept when they cost
// at most this many k-vectors per atom (16 bytes each); otherwise they are recomputed.
constexpr int64_t kMaxTabulatedK = 64;

int thread_count(int requested) {
#ifdef _OPENMP
    return requested > 0 ? requested : omp_get_max_threads();
#else
    (void)requested;
    return 1;
#endif
}

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

Electrostatics::Electrostatics(const ElectrostaticsSetup& s)
    : n_(s.n), periodic_(s.cell != nullptr), fpe_(s.four_pi_eps), eta_(s.eta), r_cut_(s.r_cut),
      k_cut_(s.k_cut), scr_(s.screening), threads_(s.threads) {
    if (n_ < 1) throw InputError("electrostatics needs at least one atom");
    if (!(fpe_ > 0.0)) throw InputError("four_pi_epsilon must be positive");
    pos_.assign(s.positions, s.positions + 3 * n_);
    sigma_.assign(s.sigma, s.sigma + n_);
    for (int64_t i = 0; i < n_; ++i) {
        for (int c = 0; c < 3; ++c)
            if (!std::isfinite(pos_[3 * i + c]))
                throw InputError("atom " + std::to_string(i) + " has a non-finite coordinate");
        if (!(sigma_[i] > 0.0)) throw InputError("atom " + std::to_string(i) + " has no positive Gaussian width");
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
    const bool pbc[3] = {true, true, true};
    nl_ = build_neighbor_list(pos_.data(), n_, cell_, pbc, std::max(r_cut_, scr_.r_out), 1e-6);
    // Reciprocal vectors and the half sphere |k| < k_cut (n2p2's KspaceGrid: the same index
    // ranges and strict inequality, so the same set of k-vectors).
    double kb[9];
    const double pre = 2.0 * kPi / volume_;
    for (int c = 0; c < 3; ++c) { kb[c] = pre * bxc[c]; kb[3 + c] = pre * cxa[c]; kb[6 + c] = pre * axb[c]; }
    int nmax[3];
    for (int d = 0; d < 3; ++d) {
        double nrm[3];
        cross3(kb + 3 * ((d + 1) % 3), kb + 3 * ((d + 2) % 3), nrm);
        const double len = std::sqrt(dot3(nrm, nrm));
        const double proj = std::fabs(dot3(kb + 3 * d, nrm)) / len;
        int m = 0;
        while (m * proj <= k_cut_) ++m;
        nmax[d] = m;
    }
    for (int i = 0; i <= nmax[0]; ++i)
        for (int j = (i == 0 ? 0 : -nmax[1]); j <= nmax[1]; ++j)
            for (int k = (i == 0 && j == 0 ? 0 : -nmax[2]); k <= nmax[2]; ++k) {
                if (i == 0 && j == 0 && k == 0) continue;
                double kv[3];
                for (int c = 0; c < 3; ++c) kv[c] = i * kb[c] + j * kb[3 + c] + k * kb[6 + c];
                const double k2 = dot3(kv, kv);
                if (k2 < k_cut_ * k_cut_) {
                    kvec_.insert(kvec_.end(), kv, kv + 3);
                    kcoef_.push_back(2.0 * std::exp(-0.5 * eta_ * eta_ * k2) * 2.0 * pre / k2 / fpe_);
                }
            }
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
}

/// fn(i, j, dx, dy, dz, r) for every ordered pair (i, j, image) of atom i: periodic, the
/// neighbour-list entries of i (r < max(r_cut, r_out), self-images included); otherwise all
/// j != i. Called inside a parallel loop over i.
template <class PairFn>
void Electrostatics::for_pairs(PairFn&& fn) const {
    const int nthreads = thread_count(threads_);
    (void)nthreads;
#pragma omp parallel for schedule(dynamic, 16) num_threads(nthreads)
    for (int64_t i = 0; i < n_; ++i) {
        const double* xi = &pos_[3 * i];
        if (periodic_) {
            for (int64_t p = nl_.offsets[i]; p < nl_.offsets[i + 1]; ++p) {
                const int32_t j = nl_.index[p];
                const double* sh = &nl_.shifts[3 * nl_.shift_id[p]];
                const double dx = pos_[3 * j] + sh[0] - xi[0], dy = pos_[3 * j + 1] + sh[1] - xi[1],
                             dz = pos_[3 * j + 2] + sh[2] - xi[2];
                fn(i, static_cast<int64_t>(j), dx, dy, dz, std::sqrt(dx * dx + dy * dy + dz * dz));
            }
        } else {
            for (int64_t j = 0; j < n_; ++j) {
                if (j == i) continue;
                const double dx = pos_[3 * j] - xi[0], dy = pos_[3 * j + 1] - xi[1], dz = pos_[3 * j + 2] - xi[2];
                fn(i, j, dx, dy, dz, std::sqrt(dx * dx + dy * dy + dz * dz));
            }
        }
    }
}

void Electrostatics::diagonal(double* d) const {
    const double sp = std::sqrt(kPi);
    double recip = 0.0;
    for (double c : kcoef_) recip += c;
    for (int64_t i = 0; i < n_; ++i) {
        d[i] = 1.0 / (sigma_[i] * sp * fpe_);
        if (periodic_) d[i] += -2.0 / (std::sqrt(2.0) * eta_ * sp * fpe_) + recip;
    }
    if (!periodic_) return;
    const double rc = r_cut_, b = 1.0 / (std::sqrt(2.0) * eta_);
    for (int64_t i = 0; i < n_; ++i)  // self-images
        for (int64_t p = nl_.offsets[i]; p < nl_.offsets[i + 1]; ++p) {
            if (nl_.index[p] != i) continue;
            const double* sh = &nl_.shifts[3 * nl_.shift_id[p]];
            const double r = std::sqrt(dot3(sh, sh));
            if (r >= rc) continue;
            const double a = 1.0 / (2.0 * sigma_[i]);  // 1/(sqrt2 gamma_ii), gamma_ii = sqrt2 sigma_i
            d[i] += (std::erf(a * r) - std::erf(b * r)) / r / fpe_;
        }
}

void Electrostatics::dense(double* A) const {
    std::fill(A, A + n_ * n_, 0.0);
    const double b = periodic_ ? 1.0 / (std::sqrt(2.0) * eta_) : 0.0;
    const double rc = r_cut_;
    for_pairs([&](int64_t i, int64_t j, double, double, double, double r) {
        const double a = 1.0 / std::sqrt(2.0 * (sigma_[i] * sigma_[i] + sigma_[j] * sigma_[j]));
        if (periodic_) {
            if (r < rc) A[i * n_ + j] += (std::erf(a * r) - std::erf(b * r)) / r / fpe_;
        } else {
            A[i * n_ + j] = std::erf(a * r) / r / fpe_;
        }
    });
    const double sp = std::sqrt(kPi);
    for (int64_t i = 0; i < n_; ++i) {
        A[i * n_ + i] += 1.0 / (sigma_[i] * sp * fpe_);
        if (periodic_) A[i * n_ + i] -= 2.0 / (std::sqrt(2.0) * eta_ * sp * fpe_);
    }
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
#pragma omp parallel for schedule(dynamic, 16) num_threads(thread_count(threads_))
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
            if (!cos_.empty()) { c = cos_[i * nk + k]; s = sin_[i * nk + k]; }
            else { const double ph = dot3(&kvec_[3 * k], &pos_[3 * i]); c = std::cos(ph); s = std::sin(ph); }
            sc[k] += x[i] * c;
            ss[k] += x[i] * s;
        }
    }
}

void Electrostatics::apply(const double* x, double* y) const {
    const double b = periodic_ ? 1.0 / (std::sqrt(2.0) * eta_) : 0.0;
    const double rc = r_cut_;
    std::fill(y, y + n_, 0.0);
    for_pairs([&](int64_t i, int64_t j, double, double, double, double r) {
        const double a = 1.0 / std::sqrt(2.0 * (sigma_[i] * sigma_[i] + sigma_[j] * sigma_[j]));
        if (periodic_) {
            if (r < rc) y[i] += (std::erf(a * r) - std::erf(b * r)) / r / fpe_ * x[j];
        } else {
            y[i] += std::erf(a * r) / r / fpe_ * x[j];
        }
    });
    const double sp = std::sqrt(kPi);
    for (int64_t i = 0; i < n_; ++i) {
        double d = 1.0 / (sigma_[i] * sp * fpe_);
        if (periodic_) d -= 2.0 / (std::sqrt(2.0) * eta_ * sp * fpe_);
        y[i] += d * x[i];
    }
    const int64_t nk = n_kvectors();
    if (!nk) return;
    std::vector<double> sc, ss;
    recip_sums(x, sc, ss);
#pragma omp parallel for schedule(static) num_threads(thread_count(threads_))
    for (int64_t i = 0; i < n_; ++i) {
        double s = 0.0;
        for (int64_t k = 0; k < nk; ++k) {
            double c, sn;
            if (!cos_.empty()) { c = cos_[i * nk + k]; sn = sin_[i * nk + k]; }
            else { const double ph = dot3(&kvec_[3 * k], &pos_[3 * i]); c = std::cos(ph); sn = std::sin(ph); }
            s += kcoef_[k] * (c * sc[k] + sn * ss[k]);
        }
        y[i] += s;
    }
}

double Electrostatics::energy(const double* Q, double* dEdQ) const {
    std::vector<double> y(n_), scr(n_, 0.0);
    apply(Q, y.data());
    const double sp = std::sqrt(kPi);
    if (scr_.active()) {
        for_pairs([&](int64_t i, int64_t j, double, double, double, double r) {
            if (r >= scr_.r_out) return;
            const double a = 1.0 / std::sqrt(2.0 * (sigma_[i] * sigma_[i] + sigma_[j] * sigma_[j]));
            double f, df;
            scr_.eval(r, f, df);
            scr[i] += Q[j] * std::erf(a * r) * (f - 1.0) / r / fpe_;
        });
    }
    double e = 0.0;
    for (int64_t i = 0; i < n_; ++i) {
        const double self = 1.0 / (sigma_[i] * sp * fpe_);
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
    std::vector<double> Wat(9 * n_, 0.0);  // per-atom virial parts, summed in a fixed order
    for_pairs([&](int64_t i, int64_t j, double dx, double dy, double dz, double r) {
        const double a = 1.0 / std::sqrt(2.0 * (sigma_[i] * sigma_[i] + sigma_[j] * sigma_[j]));
        double c = 0.0;  // d(pair energy)/dr, pair energy counted once per ordered entry
        const double ea = std::exp(-a * a * r * r), erfa = std::erf(a * r);
        if (r < rc) {
            double k, dk;
            if (periodic_) {
                k = (erfa - std::erf(b * r)) / r;
                dk = (kTwoOverSqrtPi * (a * ea - b * std::exp(-b * b * r * r)) - k) / r;
            } else {
                k = erfa / r;
                dk = (kTwoOverSqrtPi * a * ea - k) / r;
            }
            c += (u[i] * Q[j] + u[j] * Q[i]) * dk / fpe_;
        }
        if (scr_.active() && r < scr_.r_out) {
            double f, df;
            scr_.eval(r, f, df);
            const double s = erfa * (f - 1.0) / r;
            const double ds = (kTwoOverSqrtPi * a * ea * (f - 1.0) + erfa * df) / r - s / r;
            c += Q[i] * Q[j] * ds / fpe_;
        }
        if (c == 0.0) return;
        // Entry (i, j) holds the whole pair's dependence on R_i; its partner (j, i) that on R_j.
        const double g = c / r;
        F[3 * i] += g * dx; F[3 * i + 1] += g * dy; F[3 * i + 2] += g * dz;
        const double d[3] = {dx, dy, dz};
        for (int p = 0; p < 3; ++p)
            for (int q = 0; q < 3; ++q) Wat[9 * i + 3 * p + q] -= 0.5 * g * d[p] * d[q];
    });
    const int64_t nk = n_kvectors();
    if (nk) {
        std::vector<double> uc, us, vc, vs;
        recip_sums(u.data(), uc, us);
        recip_sums(Q, vc, vs);
        for (int64_t i = 0; i < n_; ++i) {
            double f[3] = {0, 0, 0};
            for (int64_t k = 0; k < nk; ++k) {
                double c, s;
                if (!cos_.empty()) { c = cos_[i * nk + k]; s = sin_[i * nk + k]; }
                else { const double ph = dot3(&kvec_[3 * k], &pos_[3 * i]); c = std::cos(ph); s = std::sin(ph); }
                const double t = kcoef_[k] * (u[i] * (-s * vc[k] + c * vs[k]) + Q[i] * (-s * uc[k] + c * us[k]));
                for (int p = 0; p < 3; ++p) f[p] -= t * kvec_[3 * k + p];
            }
            for (int p = 0; p < 3; ++p) F[3 * i + p] += f[p];
        }
        for (int64_t k = 0; k < nk; ++k) {
            const double* kv = &kvec_[3 * k];
            const double k2 = dot3(kv, kv);
            const double Bk = kcoef_[k] * (uc[k] * vc[k] + us[k] * vs[k]);
            const double h = 2.0 * (0.5 * eta_ * eta_ + 1.0 / k2);
            for (int p = 0; p < 3; ++p)
                for (int q = 0; q < 3; ++q) W[3 * p + q] -= Bk * ((p == q ? -1.0 : 0.0) + h * kv[p] * kv[q]);
        }
    }
    for (int64_t i = 0; i < n_; ++i)
        for (int k = 0; k < 9; ++k) W[k] += Wat[9 * i + k];
}

QEqSolution solve_qeq_cg(const Electrostatics& op, const double* J, const double* b, double total, double* x,
                         double tol, int max_iterations) {
    const int64_t n = op.size();
    std::vector<double> dinv(n), r(n), z(n), p(n), q(n);
    op.diagonal(dinv.data());
    double sum_dinv = 0.0;
    for (int64_t i = 0; i < n; ++i) {
        const double d = dinv[i] + J[i];
        if (!(d > 0.0)) throw InputError("charge equilibration: non-positive diagonal at atom " + std::to_string(i));
        dinv[i] = 1.0 / d;
        sum_dinv += dinv[i];
    }
    auto matvec = [&](const double* v, double* out) {
        op.apply(v, out);
        for (int64_t i = 0; i < n; ++i) out[i] += J[i] * v[i];
    };
    // Preconditioned residual, projected onto sum(z) = 0 in the preconditioner's metric.
    auto precondition = [&](const double* res, double* out) {
        double s = 0.0;
        for (int64_t i = 0; i < n; ++i) s += dinv[i] * res[i];
        const double m = s / sum_dinv;
        for (int64_t i = 0; i < n; ++i) out[i] = dinv[i] * (res[i] - m);
    };
    // The residual b - A x tends to mu 1 (mu: the multiplier), which can be much larger than its
    // part in the constraint subspace; it is projected out at every step (z does not depend on
    // it), otherwise the rounding of mu 1 . z swamps r . z and the iteration drifts off the
    // constraint.
    auto project = [&](double* res) {
        double mean = 0.0;
        for (int64_t i = 0; i < n; ++i) mean += res[i];
        mean /= n;
        double s = 0.0;
        for (int64_t i = 0; i < n; ++i) { res[i] -= mean; s += res[i] * res[i]; }
        return std::sqrt(s);
    };
    double sx = 0.0, bnorm = 0.0;
    for (int64_t i = 0; i < n; ++i) { sx += x[i]; bnorm += b[i] * b[i]; }
    bnorm = std::sqrt(bnorm);
    if (bnorm == 0.0) bnorm = 1.0;
    for (int64_t i = 0; i < n; ++i) x[i] += (total - sx) / n;
    matvec(x, q.data());
    for (int64_t i = 0; i < n; ++i) r[i] = b[i] - q[i];
    QEqSolution sol;
    sol.residual = project(r.data()) / bnorm;
    precondition(r.data(), z.data());
    p = z;
    double rz = 0.0;
    for (int64_t i = 0; i < n; ++i) rz += r[i] * z[i];
    while (sol.residual > tol && sol.iterations < max_iterations) {
        matvec(p.data(), q.data());
        double pq = 0.0;
        for (int64_t i = 0; i < n; ++i) pq += p[i] * q[i];
        if (!(pq > 0.0)) throw InputError("charge equilibration: the QEq matrix is not positive definite");
        const double alpha = rz / pq;
        for (int64_t i = 0; i < n; ++i) { x[i] += alpha * p[i]; r[i] -= alpha * q[i]; }
        ++sol.iterations;
        sol.residual = project(r.data()) / bnorm;
        precondition(r.data(), z.data());
        double rz_new = 0.0;
        for (int64_t i = 0; i < n; ++i) rz_new += r[i] * z[i];
        const double beta = rz_new / rz;
        rz = rz_new;
        for (int64_t i = 0; i < n; ++i) p[i] = z[i] + beta * p[i];
    }
    // The multiplier: at the solution b - A x = mu 1 (the mean absorbs the remaining residual).
    matvec(x, q.data());
    double mu = 0.0;
    for (int64_t i = 0; i < n; ++i) mu += b[i] - q[i];
    sol.lagrange = mu / n;
    if (sol.residual > tol)
        throw InputError("charge equilibration did not converge in " + std::to_string(max_iterations) +
                         " iterations (relative residual " + std::to_string(sol.residual) + ")");
    return sol;
}

}  // namespace hdnnp
