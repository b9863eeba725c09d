#include "hdnnp/domain.hpp"

#include <algorithm>
#include <cmath>
#include <string>

#include "electrostatic_kernels.hpp"
#include "hdnnp/errors.hpp"
#include "hdnnp/long_range.hpp"
#include "hdnnp/threads.hpp"
#include "qeq_cg.hpp"

namespace hdnnp {
using namespace kernels;

namespace {
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
// image lies within (order + 1) grid spacings of the brick, so within the ghost cutoff. The same
// partial sums, taken back at the atoms, are completed by the reverse communication. No grid
// halos are exchanged; the FFT is the caller's (distributed over the bricks).
class DomainElectrostatics::Mesh {
public:
    Mesh(const double* cell, const double* inv_cell, const double* origin, double volume, const MeshBrick& brick,
         int order, double eta, double fpe, const double* pos, int64_t n_all, DomainFft* fft, DomainComm& comm,
         int threads)
        : b_(brick), p_(order), fft_(fft), eta_(eta), threads_(threads) {
        if (!fft) throw InputError("a particle-mesh Ewald sum on a domain needs a distributed FFT");
        if (order < 4 || order > 12 || order % 2) throw InputError("particle mesh: the B-spline order must be even, 4..12");
        for (int d = 0; d < 3; ++d) {
            if (b_.K[d] < order) throw InputError("particle mesh: the grid is smaller than the B-spline order");
            if (b_.lo[d] < 0 || b_.hi[d] > b_.K[d] || b_.hi[d] < b_.lo[d])
                throw InputError("particle mesh: this domain's brick lies outside the grid");
            n_[d] = b_.hi[d] - b_.lo[d];
            for (int c = 0; c < 3; ++c) {
                recip_[3 * d + c] = 2.0 * kPi * inv_cell[3 * c + d];
                dudr_[3 * d + c] = b_.K[d] * inv_cell[3 * c + d];
            }
        }
        (void)cell;
        // the atom images whose stencils meet the brick
        for (int64_t a = 0; a < n_all; ++a) {
            int base[3];
            double frac[3];
            bool meets = true;
            for (int d = 0; d < 3 && meets; ++d) {
                double s = 0.0;
                for (int c = 0; c < 3; ++c) s += (pos[3 * a + c] - origin[c]) * inv_cell[3 * c + d];
                const double u = s * b_.K[d], fl = std::floor(u);
                base[d] = static_cast<int>(fl);
                frac[d] = u - fl;
                // stencil base - p + 1 .. base
                meets = base[d] >= b_.lo[d] && base[d] - p_ + 1 < b_.hi[d];
            }
            if (!meets) continue;
            atoms_.push_back(a);
            for (int d = 0; d < 3; ++d) {
                base_.push_back(base[d]);
                frac_.push_back(frac[d]);
                const size_t o = w_.size();
                w_.resize(o + p_);
                bspline(frac[d], p_, &w_[o], nullptr);
            }
        }
        // influence function on the brick
        std::vector<double> bsq[3];
        for (int d = 0; d < 3; ++d) bsq[d] = bspline_moduli(b_.K[d], p_);
        G_.assign(b_.size(), 0.0);
        const double pre = 4.0 * kPi / volume / fpe;
        double diag = 0.0;
        for (int m0 = b_.lo[0]; m0 < b_.hi[0]; ++m0)
            for (int m1 = b_.lo[1]; m1 < b_.hi[1]; ++m1)
                for (int m2 = b_.lo[2]; m2 < b_.hi[2]; ++m2) {
                    if (m0 == 0 && m1 == 0 && m2 == 0) continue;
                    double k[3];
                    kvector(m0, m1, m2, k);
                    const double k2 = dot3(k, k);
                    const double c = pre * std::exp(-0.5 * eta * eta * k2) / k2;
                    G_[index(m0, m1, m2)] = c * bsq[0][m0] * bsq[1][m1] * bsq[2][m2];
                    diag += c;
                }
        comm.sum(&diag, 1);
        diag_ = diag;
    }

    double diagonal() const { return diag_; }
    int64_t points() const { return static_cast<int64_t>(b_.K[0]) * b_.K[1] * b_.K[2]; }

    /// y (n_all) += the brick's part of (A_rec x) at every atom image (x: n_all, ghosts filled).
    void apply(const double* x, double* y) const {
        std::vector<std::complex<double>> g(b_.size(), 0.0);
        spread(x, g, false);
        fft_->transform(g.data(), 1);
        for (size_t k = 0; k < g.size(); ++k) g[k] *= G_[k];
        fft_->transform(g.data(), -1);
        const int64_t nt = static_cast<int64_t>(atoms_.size());
#pragma omp parallel for schedule(static) num_threads(thread_count(threads_))
        for (int64_t t = 0; t < nt; ++t) {
            const double* w0 = &w_[(3 * t) * p_];
            const double* w1 = &w_[(3 * t + 1) * p_];
            const double* w2 = &w_[(3 * t + 2) * p_];
            double s = 0.0;
            for (int a = 0; a < p_; ++a) {
                const int m0 = base_[3 * t] - a;
                if (m0 < b_.lo[0] || m0 >= b_.hi[0]) continue;
                for (int b = 0; b < p_; ++b) {
                    const int m1 = base_[3 * t + 1] - b;
                    if (m1 < b_.lo[1] || m1 >= b_.hi[1]) continue;
                    double r = 0.0;
                    for (int c = 0; c < p_; ++c) {
                        const int m2 = base_[3 * t + 2] - c;
                        if (m2 < b_.lo[2] || m2 >= b_.hi[2]) continue;
                        r += w2[c] * g[index(m0, m1, m2)].real();
                    }
                    s += w0[a] * w1[b] * r;
                }
            }
            y[atoms_[t]] += s;
        }
    }

    /// F (n_all) -= the brick's part of d/dR (u^T A_rec v) at every atom image, W -= its part of
    /// d(u^T A_rec v)/d(strain).
    void add_derivatives(const double* u, const double* v, double* F, double* W) const {
        // (two transforms forward: the virial needs u^ and v^ at the same k, and -k lies in
        // another domain's brick; then one back for phi_u + i phi_v)
        std::vector<std::complex<double>> gu(b_.size(), 0.0), gv(b_.size(), 0.0);
        spread(u, gu, false);
        spread(v, gv, false);
        fft_->transform(gu.data(), 1);
        fft_->transform(gv.data(), 1);
        double w[9] = {0};
        for (int m0 = b_.lo[0]; m0 < b_.hi[0]; ++m0)
            for (int m1 = b_.lo[1]; m1 < b_.hi[1]; ++m1)
                for (int m2 = b_.lo[2]; m2 < b_.hi[2]; ++m2) {
                    const int64_t k = index(m0, m1, m2);
                    if (G_[k] == 0.0) continue;
                    const double B = G_[k] * (gu[k] * std::conj(gv[k])).real();
                    if (B == 0.0) continue;
                    double kv[3];
                    kvector(m0, m1, m2, kv);
                    const double h = 2.0 * (0.5 * eta_ * eta_ + 1.0 / dot3(kv, kv));
                    for (int p = 0; p < 3; ++p)
                        for (int q = 0; q < 3; ++q) w[3 * p + q] -= B * ((p == q ? -1.0 : 0.0) + h * kv[p] * kv[q]);
                }
        for (int c = 0; c < 9; ++c) W[c] += w[c];
        const std::complex<double> I(0.0, 1.0);
        for (size_t k = 0; k < gu.size(); ++k) gu[k] = G_[k] * (gu[k] + I * gv[k]);
        gv.clear();
        gv.shrink_to_fit();
        fft_->transform(gu.data(), -1);   // phi_u + i phi_v
        const int64_t nt = static_cast<int64_t>(atoms_.size());
#pragma omp parallel for schedule(static) num_threads(thread_count(threads_))
        for (int64_t t = 0; t < nt; ++t) {
            const int64_t i = atoms_[t];
            if (u[i] == 0.0 && v[i] == 0.0) continue;
            const double* w0 = &w_[(3 * t) * p_];
            const double* w1 = &w_[(3 * t + 1) * p_];
            const double* w2 = &w_[(3 * t + 2) * p_];
            double d0[16], d1[16], d2[16], scratch[16];
            bspline(frac_[3 * t], p_, scratch, d0);
            bspline(frac_[3 * t + 1], p_, scratch, d1);
            bspline(frac_[3 * t + 2], p_, scratch, d2);
            double gr[3] = {0, 0, 0};
            for (int a = 0; a < p_; ++a) {
                const int m0 = base_[3 * t] - a;
                if (m0 < b_.lo[0] || m0 >= b_.hi[0]) continue;
                for (int b = 0; b < p_; ++b) {
                    const int m1 = base_[3 * t + 1] - b;
                    if (m1 < b_.lo[1] || m1 >= b_.hi[1]) continue;
                    for (int c = 0; c < p_; ++c) {
                        const int m2 = base_[3 * t + 2] - c;
                        if (m2 < b_.lo[2] || m2 >= b_.hi[2]) continue;
                        const std::complex<double> z = gu[index(m0, m1, m2)];
                        const double phi = v[i] * z.real() + u[i] * z.imag();
                        gr[0] += d0[a] * w1[b] * w2[c] * phi;
                        gr[1] += w0[a] * d1[b] * w2[c] * phi;
                        gr[2] += w0[a] * w1[b] * d2[c] * phi;
                    }
                }
            }
            for (int c = 0; c < 3; ++c)
                for (int d = 0; d < 3; ++d) F[3 * i + c] -= gr[d] * dudr_[3 * d + c];
        }
    }

private:
    int64_t index(int m0, int m1, int m2) const {
        return (static_cast<int64_t>(m0 - b_.lo[0]) * n_[1] + (m1 - b_.lo[1])) * n_[2] + (m2 - b_.lo[2]);
    }
    void kvector(int m0, int m1, int m2, double k[3]) const {
        int m[3] = {m0, m1, m2};
        for (int d = 0; d < 3; ++d)
            if (m[d] >= b_.K[d] / 2) m[d] -= b_.K[d];
        for (int c = 0; c < 3; ++c) k[c] = m[0] * recip_[c] + m[1] * recip_[3 + c] + m[2] * recip_[6 + c];
    }
    void spread(const double* x, std::vector<std::complex<double>>& g, bool) const {
        double* gd = reinterpret_cast<double*>(g.data());
        for (size_t t = 0; t < atoms_.size(); ++t) {
            const double xa = x[atoms_[t]];
            if (xa == 0.0) continue;
            const double* w0 = &w_[(3 * t) * p_];
            const double* w1 = &w_[(3 * t + 1) * p_];
            const double* w2 = &w_[(3 * t + 2) * p_];
            for (int a = 0; a < p_; ++a) {
                const int m0 = base_[3 * t] - a;
                if (m0 < b_.lo[0] || m0 >= b_.hi[0]) continue;
                for (int b = 0; b < p_; ++b) {
                    const int m1 = base_[3 * t + 1] - b;
                    if (m1 < b_.lo[1] || m1 >= b_.hi[1]) continue;
                    const double f = xa * w0[a] * w1[b];
                    for (int c = 0; c < p_; ++c) {
                        const int m2 = base_[3 * t + 2] - c;
                        if (m2 < b_.lo[2] || m2 >= b_.hi[2]) continue;
                        gd[2 * index(m0, m1, m2)] += f * w2[c];
                    }
                }
            }
        }
    }

    MeshBrick b_;
    int p_ = 6, n_[3] = {0, 0, 0};
    DomainFft* fft_ = nullptr;
    double eta_ = 0.0, diag_ = 0.0, recip_[9] = {0}, dudr_[9] = {0};
    int threads_ = 0;
    std::vector<double> G_;
    std::vector<int64_t> atoms_;
    std::vector<int> base_;
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
        mesh_ = std::make_shared<const Mesh>(cell_, inv_cell_, A.origin, volume_, b, ewald.mesh_order, eta_, fpe_,
                                             pos_.data(), na_, fft, comm_, threads_);
    } else {
        if (!(ewald.k_cut > 0.0)) throw InputError("periodic electrostatics needs a positive Ewald k_cut");
        half_sphere_kvectors(cell_, ewald.k_cut, eta_, fpe_, kvec_, kcoef_);
    }
}

void DomainElectrostatics::real_rows(const NeighborView& nb) {
    // entries of the local atoms' rows within max(r_cut, r_out), in local-atom order, with the A0
    // kernel of each ([erfc(b r) - erfc(a r)] / (4 pi eps0 r), 0 from r_cut on)
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
            double d[3];
            for (int k = 0; k < 3; ++k) d[k] = pos_[3 * j + k] - xi[k];
            const double r2 = dot3(d, d);
            if (r2 >= reach2) continue;
            const double r = std::sqrt(r2);
            if (r < 1e-6)
                throw InputError("atoms " + std::to_string(ids_[i]) + " and " + std::to_string(ids_[j]) +
                                 " overlap (distance " + std::to_string(r) + ")");
            col_.push_back(j);
            r_.push_back(r);
            d_.insert(d_.end(), d, d + 3);
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
#pragma omp parallel for schedule(dynamic, 64) num_threads(thread_count(threads_))
    for (int64_t i = 0; i < nl_; ++i) {
        double s = self_term(i) * x[i];
        for (int64_t e = row_[i]; e < row_[i + 1]; ++e) s += k_[e] * xg[col_[e]];
        y[i] = s;
    }
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

double DomainElectrostatics::energy(const double* Q, double* dEdQ) const {
    std::vector<double> y(nl_), scr(nl_, 0.0);
    apply(Q, y.data());
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
                for (int64_t e = row_[i]; e < row_[i + 1]; ++e)
                    if (r_[e] < scr_.r_out) scr[i] += Qg[col_[e]] * s_of(r_[e], sigma_[i], sigma_[col_[e]]);
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

void DomainElectrostatics::add_derivatives(const double* Q, const double* lam, double* F, double* W) const {
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
                double g = (ui * qj + uj * qi) * pair_slope(r, all_sigma_[gi], all_sigma_[j], 0.0, false);
                if (scr_.active() && r < scr_.r_out) g += qi * qj * screen_slope(r, all_sigma_[gi], all_sigma_[j]);
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
            const double r = r_[e];
            double g = 0.0;
            if (r < r_cut_) g += ui * g2[2 * j + 1] * pair_slope(r, sigma_[i], sigma_[j], b, true);
            if (scr_.active() && r < scr_.r_out) g += 0.5 * qi * g2[2 * j + 1] * screen_slope(r, sigma_[i], sigma_[j]);
            if (g == 0.0) continue;
            g /= r;
            const double* d = &d_[3 * e];
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
            for (int64_t k = 0; k < nk; ++k) {
                const double* kv = &kvec_[3 * k];
                const double Bk = kcoef_[k] * (uc[k] * vc[k] + us[k] * vs[k]);
                const double h = 2.0 * (0.5 * eta_ * eta_ + 1.0 / dot3(kv, kv));
                for (int p = 0; p < 3; ++p)
                    for (int q = 0; q < 3; ++q) w[3 * p + q] -= Bk * ((p == q ? -1.0 : 0.0) + h * kv[p] * kv[q]);
            }
    }
    for (int k = 0; k < 9; ++k) W[k] += w[k];
}

QEqSolution solve_qeq_cg(const DomainElectrostatics& op, DomainComm& comm, int64_t n_total, const double* J,
                         const double* b, double total, double* x, double tol, int max_iterations) {
    const int64_t n = op.n_local();
    std::vector<double> diag(n);
    op.diagonal(diag.data());
    return pcg_qeq(n, n_total, diag.data(), [&](const double* v, double* out) { op.apply(v, out); },
                   [&](double* v, int k) { comm.sum(v, k); }, J, b, total, x, tol, max_iterations);
}

int64_t DomainElectrostatics::mesh_points() const { return mesh_ ? mesh_->points() : 0; }

double DomainElectrostatics::self_term(int64_t i) const {
    const double gs = sigma_[i] > 0.0 ? 1.0 / (sigma_[i] * std::sqrt(kPi)) : 0.0;
    return (gs - (periodic_ ? 2.0 / (std::sqrt(2.0) * eta_ * std::sqrt(kPi)) : 0.0)) / fpe_;
}

std::vector<double> DomainElectrostatics::with_ghosts(const double* u, int w) const {
    std::vector<double> g(static_cast<size_t>(na_) * w, 0.0);
    std::copy(u, u + nl_ * w, g.begin());
    comm_.forward(g.data(), w);
    return g;
}

}  // namespace hdnnp
