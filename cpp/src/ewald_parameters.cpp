#include "hdnnp/ewald_parameters.hpp"

#include <algorithm>
#include <cmath>
#include <functional>

#include "hdnnp/errors.hpp"

namespace hdnnp {
namespace {
constexpr double PI = 3.14159265358979323846;
constexpr double TR_OVER_TK = 3.676;  // n2p2's ratio of the costs of one real- and one reciprocal-space term

/// x in [lo, hi] with f(x) = target for a decreasing f (bisection in log space).
double solve_decreasing(const std::function<double(double)>& f, double target, double lo, double hi) {
    for (int it = 0; it < 200; ++it) {
        const double mid = std::sqrt(lo * hi);
        if (f(mid) > target) lo = mid;
        else hi = mid;
        if (hi / lo - 1.0 < 1e-12) break;
    }
    return hi;
}
}  // namespace

EwaldParameters n2p2_ewald_parameters(int method, const std::vector<double>& prec_args, double volume,
                                      long n_atoms, double four_pi_eps, double max_sigma) {
    if (prec_args.empty()) throw ConfigError("ewald_prec needs at least one argument");
    const double prec = prec_args[0];
    if (!(prec > 0.0)) throw ConfigError("ewald_prec: the precision must be positive");
    EwaldParameters p;
    if (method == 0) {
        if (prec_args.size() != 1)
            throw ConfigError("ewald_prec takes one argument with ewald_truncation_error_method 0");
        if (prec >= 1.0) throw ConfigError("ewald_prec: Jackson-Catlow (method 0) needs a precision < 1");
        const double eta = std::cbrt(volume) / std::sqrt(2.0 * PI);
        const double t = std::sqrt(-2.0 * std::log(prec));
        p.eta = eta; p.r_cut = t * eta; p.k_cut = t / eta; p.method = "n2p2-jackson-catlow";
        return p;
    }
    if (method != 1)
        throw ConfigError("ewald_truncation_error_method " + std::to_string(method) + " is not known (0 or 1)");
    if (prec_args.size() > 3)
        throw ConfigError("ewald_prec takes at most three arguments with ewald_truncation_error_method 1");
    const double q_max = prec_args.size() >= 2 ? prec_args[1] : 1.0;
    if (prec_args.size() == 3) {  // fixed real-space cutoff
        const double r_cut = prec_args[2];
        if (r_cut == 0.0) throw ConfigError("ewald_prec: the real-space cutoff cannot be zero");
        const double C = 2.0 * q_max * q_max * std::sqrt(n_atoms / volume) / four_pi_eps;
        const double x = std::sqrt(r_cut / 2.0) * prec / C;
        if (x >= 1.0) throw ConfigError("ewald_prec: bad precision settings (too large), try a smaller value");
        const double eta = r_cut / std::sqrt(-2.0 * std::log(x));
        const double y = eta * prec / (std::sqrt(2.0) * C);
        double k_cut = 1.0 / eta, rel_x = 1.0, rel_y = 1.0;
        while (rel_x > 1e-10 || rel_y > 1e-10) {
            const double old = k_cut;
            const double ke = k_cut * eta;
            k_cut -= 2 * k_cut / (1 + 2 * ke * ke) * (-1 + std::sqrt(k_cut) * std::exp(ke * ke / 2) * y);
            if (k_cut <= 0) {
                k_cut = old / 2;
                continue;
            }
            rel_x = std::fabs((k_cut - old) / k_cut);
            const double ke2 = k_cut * eta;
            rel_y = std::fabs((1 / std::sqrt(k_cut) * std::exp(-ke2 * ke2 / 2) - y) / y);
        }
        p.eta = eta; p.r_cut = r_cut; p.k_cut = k_cut; p.method = "n2p2-kolafa-perram-fixed-rcut";
        p.reliable = eta >= max_sigma;
        return p;
    }
    // optimal eta
    const double C = std::pow(2.0, 0.75) * q_max * q_max * std::sqrt(n_atoms / volume) / four_pi_eps;
    const double eta0 = std::pow(1.0 / TR_OVER_TK * volume * volume / std::pow(2.0 * PI, 3), 1.0 / 6.0);
    double eta = eta0, s = 1.0, rel = 1.0;
    while (rel > 1e-10) {
        // s solves exp(-s^2)/sqrt(s) = prec/C sqrt(eta/2) (Newton, as n2p2)
        const double y = prec / C * std::sqrt(eta / 2.0);
        if (s <= 0.0) s = 0.5;
        double rx = 1.0, ry = 1.0;
        while (rx > 1e-10 || ry > 1e-10) {
            const double step = 2 * s / (4 * s * s + 1) * (1 - std::sqrt(s) / std::exp(-s * s) * y);
            if (s <= -step) {
                s /= 2;
                continue;
            }
            s += step;
            ry = std::fabs((std::exp(-s * s) / std::sqrt(s) - y) / y);
            rx = std::fabs(step / s);
        }
        const double old = eta;
        eta = eta0 * std::pow(1 + 1 / (2 * s * s), 1.0 / 6.0);
        rel = std::fabs(old - eta) / eta;
    }
    eta = std::max(eta, max_sigma);
    p.eta = eta; p.r_cut = std::sqrt(2.0) * eta * s; p.k_cut = std::sqrt(2.0) * s / eta;
    p.method = "n2p2-kolafa-perram";
    return p;
}

EwaldParameters accuracy_ewald_parameters(double energy_tolerance, double volume, long n_atoms, double q_max,
                                          double four_pi_eps, double r_cut, double max_sigma, bool per_particle) {
    if (!(energy_tolerance > 0.0)) throw ConfigError("the Ewald energy tolerance must be positive");
    const double Q2 = n_atoms * q_max * q_max / four_pi_eps;
    // Kolafa-Perram estimates are RMS estimates, not bounds, and the charges and short energies
    // respond to the truncated matrix too: each part is held to 1/20 of the tolerance.
    const double target = energy_tolerance / 20.0;
    const double L = std::cbrt(volume);
    auto real_error = [&](double alpha, double rc) {
        return Q2 * std::sqrt(rc / (2 * volume)) * std::exp(-(alpha * rc) * (alpha * rc)) / ((alpha * rc) * (alpha * rc));
    };
    // eta >= sqrt2 max(sigma) keeps the real-space estimate (written for eta) an upper bound of
    // the kernel's tail, which decays with the wider of eta and gamma_ij.
    const double eta_min = std::sqrt(2.0) * max_sigma;
    double eta = 0.0, alpha = 0.0;
    const bool given = r_cut > 0.0;
    if (given) {
        alpha = solve_decreasing([&](double a) { return real_error(a, r_cut); }, target, 1e-6 / r_cut, 1e3 / r_cut);
        eta = 1.0 / (std::sqrt(2.0) * alpha);
    }
    if (!given || eta < eta_min) {  // then r_cut follows from eta (larger than requested)
        // dense matrices cost n^2: eta ~ V^(1/3); matrix-free products cost n: eta ~ (V^2/n)^(1/6)
        const double v2 = per_particle ? volume * volume / n_atoms : volume * volume;
        eta = !given ? std::max(std::pow(v2 / (std::pow(2 * PI, 3) * TR_OVER_TK), 1.0 / 6.0), eta_min) : eta_min;
        alpha = 1.0 / (std::sqrt(2.0) * eta);
        r_cut = solve_decreasing([&](double rc) { return real_error(alpha, rc); }, target, 1e-3 * eta, 1e3 * eta);
    }
    auto recip_error = [&](double kc) {
        return Q2 * alpha / (PI * PI) * std::pow(2 * PI / (kc * L), 1.5) * std::exp(-kc * kc / (4 * alpha * alpha));
    };
    EwaldParameters p;
    p.eta = eta; p.r_cut = r_cut;
    p.k_cut = solve_decreasing(recip_error, target, 1e-3 * alpha, 1e3 * alpha);
    p.method = "energy-accuracy";
    return p;
}

int fft_size(int n) {
    for (;; ++n) {
        int m = n;
        for (int f : {2, 3, 5})
            while (m % f == 0) m /= f;
        if (m == 1) return n;
    }
}

EwaldParameters pme_ewald_parameters(double energy_tolerance, const double* cell, long n_atoms, double q_max,
                                     double four_pi_eps, double max_sigma, double neighbours, int order) {
    if (order != 6) throw ConfigError("particle mesh: only B-splines of order 6 are calibrated");
    const double* a = cell;
    const double volume = cell_volume(a);
    const double r_cut = std::cbrt(3.0 * neighbours * volume / (4.0 * PI * n_atoms));
    EwaldParameters p = accuracy_ewald_parameters(energy_tolerance, volume, n_atoms, q_max, four_pi_eps, r_cut,
                                                  max_sigma);
    // Grid spacing / eta for B-splines of order 6 (tightened like tolerance^(1/8) below 1e-3):
    // measured against converged Ewald sums, the energy errors stay 4x-100x below the tolerance.
    const double spacing = 0.6 * p.eta * std::min(1.0, std::pow(energy_tolerance / 1e-3, 1.0 / 8.0));
    for (int d = 0; d < 3; ++d) {
        const double len = std::sqrt(a[3 * d] * a[3 * d] + a[3 * d + 1] * a[3 * d + 1] + a[3 * d + 2] * a[3 * d + 2]);
        p.mesh[d] = fft_size(std::max(order, static_cast<int>(std::ceil(len / spacing))));
    }
    p.mesh_order = order;
    p.method = "energy-accuracy, particle mesh";
    return p;
}

}  // namespace hdnnp
