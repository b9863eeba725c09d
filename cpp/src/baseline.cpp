#include "hdnnp/baseline.hpp"

#include <algorithm>
#include <cmath>
#include <sstream>

#include "hdnnp/errors.hpp"
#include "hdnnp/model.hpp"
#include "hdnnp/threads.hpp"
#include "hdnnp/units.hpp"

namespace hdnnp {
namespace {
// Universal screening function (ZBL 1985): coefficients and exponents.
constexpr double PHI_C[4] = {0.18175, 0.50986, 0.28022, 0.02817};
constexpr double PHI_D[4] = {3.19980, 0.94229, 0.40290, 0.20162};
constexpr double ZBL_A0 = 0.46850;  // Angstrom (0.8854 Bohr)
}  // namespace

PairBaseline::PairBaseline(std::vector<int> z, std::vector<double> r_inner, std::vector<double> r_outer,
                           double angstrom_per_length, double ev_per_energy)
    : z_(std::move(z)), r_in_(std::move(r_inner)), r_out_(std::move(r_outer)), lf_(angstrom_per_length),
      ef_(ev_per_energy) {
    const size_t ne = z_.size();
    if (r_in_.size() != ne * ne || r_out_.size() != ne * ne)
        throw std::invalid_argument("pair baseline: radii must be n_elements x n_elements");
    if (!(lf_ > 0.0) || !(ef_ > 0.0)) throw ConfigError("pair baseline: unit factors must be positive");
    a_.resize(ne * ne);
    zz_.resize(ne * ne);
    for (size_t a = 0; a < ne; ++a)
        for (size_t b = 0; b < ne; ++b) {
            const size_t k = a * ne + b;
            if (z_[a] < 1) throw ConfigError("pair baseline: atomic numbers must be >= 1");
            if (r_in_[k] != r_in_[b * ne + a] || r_out_[k] != r_out_[b * ne + a])
                throw std::invalid_argument("pair baseline: radii must be symmetric");
            if (!(r_in_[k] > 0.0) || !(r_out_[k] > r_in_[k]) || !std::isfinite(r_out_[k])) {
                std::ostringstream os;
                os << "pair baseline: element pair (" << z_[a] << ", " << z_[b] << ") needs 0 < r_inner < r_outer, "
                   << "got " << r_in_[k] << " and " << r_out_[k];
                throw ConfigError(os.str());
            }
            a_[k] = ZBL_A0 / (std::pow(z_[a], 0.23) + std::pow(z_[b], 0.23));
            zz_[k] = static_cast<double>(z_[a]) * z_[b];
            max_outer_ = std::max(max_outer_, r_out_[k]);
        }
}

bool PairBaseline::same_as(const PairBaseline& o) const {
    return z_ == o.z_ && r_in_ == o.r_in_ && r_out_ == o.r_out_ && lf_ == o.lf_ && ef_ == o.ef_;
}

void PairBaseline::pair(int a, int b, double r, double& e, double& de) const {
    const int k = a * n_elements() + b;
    const double ro = r_out_[k];
    if (r >= ro) { e = de = 0.0; return; }
    // ZBL in eV and Angstrom: E = C Z_i Z_j phi(x) / R, x = R / a.
    const double R = r * lf_, ia = 1.0 / a_[k];
    double phi = 0.0, dphi = 0.0;
    for (int t = 0; t < 4; ++t) {
        const double v = PHI_C[t] * std::exp(-PHI_D[t] * R * ia);
        phi += v;
        dphi -= PHI_D[t] * ia * v;
    }
    const double pre = COULOMB_EV_ANGSTROM * zz_[k] / R;
    double E = pre * phi;                        // eV
    double dE = pre * (dphi - phi / R) * lf_;    // eV per native length
    const double ri = r_in_[k];
    if (r > ri) {
        // S(t) = 1 - 10 t^3 + 15 t^4 - 6 t^5 = (1 - t)^3 (1 + 3 t + 6 t^2) (no cancellation near
        // t = 1), S'(t) = -30 t^2 (1 - t)^2
        const double w = ro - ri, t = (r - ri) / w, u = 1.0 - t;
        const double S = u * u * u * (1.0 + t * (3.0 + 6.0 * t));
        const double dS = -30.0 * t * t * (1.0 - t) * (1.0 - t) / w;
        dE = dE * S + E * dS;
        E *= S;
    }
    e = E / ef_;
    de = dE / ef_;
}

void PairBaseline::add(const AtomsView& A, const ComputeOptions& opt, ComputeResult& out) const {
    // Every pair appears in the lists of both its atoms (full lists; a ghost's pairs in its
    // owner's list), so each centre takes the whole force of its pairs on itself and half of
    // their energy and virial: no scatter to neighbours (ghosts get nothing to send back), and
    // the centres run in parallel with results independent of the thread count.
    const NeighborView& NB = A.neighbors;
    const int64_t na = A.n_all, nc = NB.n_centers;
    const bool grad = (opt.forces || opt.virial) && !out.forces.empty();
    const double lx = A.length_factor;                       // input length -> native
    const double ro2 = max_outer_ * max_outer_ / (lx * lx);  // in input units
    const double min2 = opt.min_distance * opt.min_distance / (lx * lx);
    const int ne = n_elements();
    const size_t M = out.member_energies.size();
    const bool members_f = !out.member_forces.empty();
    std::vector<double> centre_e(nc, 0.0), centre_W(opt.virial || opt.atom_virial ? 9 * nc : 0, 0.0);
    std::vector<std::string> errors(nc);
    bool failed = false;
#pragma omp parallel for schedule(dynamic, 64) num_threads(thread_count(opt.threads)) reduction(|| : failed)
    for (int64_t c = 0; c < nc; ++c) {
        const int64_t i = NB.center(c);
        const int32_t si = A.species[i];
        if (si < 0) continue;
        const double* xi = &A.positions[3 * i];
        double ei = 0.0, Fi[3] = {0, 0, 0}, Wi[9] = {0};
        for (int64_t p = NB.offsets[c]; p < NB.offsets[c + 1]; ++p) {
            const int32_t j = NB.neighbor(c, p);
            const int32_t sj = A.species[j];
            if (sj < 0 || sj >= ne) continue;
            const double* xj = &A.positions[3 * j];
            double d[3] = {xj[0] - xi[0], xj[1] - xi[1], xj[2] - xi[2]};
            if (NB.shift_id) {
                const double* sh = &NB.shifts[3 * NB.shift_id[p]];
                for (int q = 0; q < 3; ++q) d[q] += sh[q];
            }
            const double r2 = d[0] * d[0] + d[1] * d[1] + d[2] * d[2];
            if (r2 >= ro2) continue;
            if (r2 < min2) {
                std::ostringstream os;
                os << "atoms " << i << " and " << j << " overlap (distance " << std::sqrt(r2) << ")";
                errors[c] = os.str();
                failed = true;
                break;
            }
            const double r = std::sqrt(r2);
            double e, de;
            pair(si, sj, r * lx, e, de);
            ei += 0.5 * e;
            // s d = de/dr (r_j - r_i)/r per input length: the whole pair's force on atom i is
            // +s d; E_i holds half the pair, so its virial share is -d (x) (s d) / 2
            const double s = de * lx / r;
            for (int q = 0; q < 3; ++q) Fi[q] += s * d[q];
            for (int a = 0; a < 3; ++a)
                for (int b = 0; b < 3; ++b) Wi[3 * a + b] -= 0.5 * s * d[a] * d[b];
        }
        centre_e[c] = ei;
        out.atom_energies[i] += ei;
        if (grad) {
            for (int q = 0; q < 3; ++q) out.forces[3 * i + q] += Fi[q];
            if (members_f)
                for (size_t m = 0; m < M; ++m)
                    for (int q = 0; q < 3; ++q) out.member_forces[(m * na + i) * 3 + q] += Fi[q];
        }
        if (!centre_W.empty()) std::copy(Wi, Wi + 9, &centre_W[9 * c]);
    }
    if (failed)
        for (const auto& e : errors)
            if (!e.empty()) throw InputError(e);
    double total = 0.0, W[9] = {0};
    for (int64_t c = 0; c < nc; ++c) {
        total += centre_e[c];
        if (centre_W.empty()) continue;
        const int64_t i = NB.center(c);
        for (int k = 0; k < 9; ++k) W[k] += centre_W[9 * c + k];
        if (opt.atom_virial && !out.atom_virials.empty())
            for (int k = 0; k < 9; ++k) out.atom_virials[9 * i + k] += centre_W[9 * c + k];
    }
    out.energy += total;
    for (size_t m = 0; m < M; ++m) out.member_energies[m] += total;
    if (opt.virial)
        for (int k = 0; k < 9; ++k) out.virial[k] += W[k];
}

void PairBaseline::compute(const AtomsView& A, const ComputeOptions& opt, ComputeResult& out) const {
    for (int64_t a = 0; a < A.n_all; ++a) {
        if (A.species[a] < -1 || A.species[a] >= n_elements())
            throw InputError("atom " + std::to_string(a) + " has an element index outside the baseline's " +
                             std::to_string(n_elements()) + " elements");
        for (int c = 0; c < 3; ++c)
            if (!std::isfinite(A.positions[3 * a + c]))
                throw InputError("atom " + std::to_string(a) + " has a non-finite coordinate");
    }
    out = ComputeResult();
    out.atom_energies.assign(A.n_local, 0.0);
    out.extrapolating_atoms.assign(A.n_local, 0);
    if (opt.forces || opt.virial) out.forces.assign(3 * A.n_all, 0.0);
    if (opt.atom_virial) out.atom_virials.assign(9 * A.n_local, 0.0);
    add(A, opt, out);
}

}  // namespace hdnnp
