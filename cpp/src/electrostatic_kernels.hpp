// Kernels shared by the electrostatics of one structure (electrostatics.cpp, pme.cpp) and of one
// domain of a decomposition (domain.cpp): internal to the core, not an API.
#pragma once
#include <algorithm>
#include <cmath>
#include <complex>
#include <vector>

#include "hdnnp/erfcx_table.hpp"
#include "hdnnp/functions.hpp"

namespace hdnnp {
namespace kernels {
constexpr double kPi = 3.14159265358979323846;
const double kTwoOverSqrtPi = 2.0 / std::sqrt(kPi);

// erf(x) == 1 and exp(-x^2) < 3e-16 in double precision beyond x = 6: the Gaussian-width
// terms of distant pairs are skipped (the Ewald terms in eta are not).
inline double erf_fast(double x) { return x > 6.0 ? 1.0 : std::erf(x); }
/// a exp(-(a r)^2), the slope factor of erf(a r); 0 for point charges (a = infinity).
inline double gauss_slope(double a, double r) { return a * r > 6.0 ? 0.0 : a * std::exp(-a * a * r * r); }

/// erfc(x) and exp(-x^2) for x >= 0 in vector loops (no libm call): erfc = erfcx(x) exp(-x^2), erfcx
/// from the generated piecewise polynomials (relative error ~1e-16), exp(-x^2) with x^2 split into
/// its rounded value and the rounding error. Both are 0 from x = 6 on (erfc(6) = 2e-17), as
/// erf_fast takes erf = 1 there.
#pragma omp declare simd notinbranch
inline void erfc_gauss(double x, double& ec, double& g) {
    const bool in = x < 6.0;
    const double xc = in ? x : 0.0;
    const double kf = std::floor(2.0 * xc);   // (floor, then the cast: GCC vectorises this form)
    const double t = 4.0 * (xc - 0.5 * kf) - 1.0;
    const double* c = detail::kErfcxCoeffs[0] + (detail::kErfcxDegree + 1) * static_cast<int>(kf);
    static_assert(detail::kErfcxDegree == 13, "the Horner scheme below is written out for degree 13");
    double p = c[13];   // (written out: a loop here keeps compilers from vectorising the callers)
    p = p * t + c[12]; p = p * t + c[11]; p = p * t + c[10]; p = p * t + c[9]; p = p * t + c[8];
    p = p * t + c[7]; p = p * t + c[6]; p = p * t + c[5]; p = p * t + c[4]; p = p * t + c[3];
    p = p * t + c[2]; p = p * t + c[1]; p = p * t + c[0];
    const double h = xc * xc, l = std::fma(xc, xc, -h);
    const double e = vexp(-h) * (1.0 - l);
    g = in ? e : 0.0;
    ec = in ? p * e : 0.0;
}

/// 1 / (sqrt2 gamma_ij) for Gaussian widths s_i, s_j; 1e150 for two point charges (their
/// erf(a r) is then 1 and a exp(-(a r)^2) is 0, as for a = infinity).
inline double inv_sqrt2_gamma_of(double si, double sj) {
    const double g2 = si * si + sj * sj;
    return 1.0 / std::sqrt(std::max(2.0 * g2, 1e-300));   // (branch-free: vector loops call it)
}

/// d/dr of the real-space pair kernel: [erf(a r) - erf(b r)] / r (periodic, b = 1/(sqrt2 eta))
/// or erf(a r) / r, given aea = a exp(-(a r)^2) and erfa = erf(a r).
inline double kernel_slope(bool periodic, double b, double r, double aea, double erfa) {
    if (periodic) {
        const double k = (erfa - std::erf(b * r)) / r;
        return (kTwoOverSqrtPi * (aea - b * std::exp(-b * b * r * r)) - k) / r;
    }
    return (kTwoOverSqrtPi * aea - erfa / r) / r;
}


/// M_p(w + j), j = 0..p-1 (cardinal B-spline of order p on (0, p)), and the derivatives, w in [0, 1).
inline void bspline(double w, int p, double* M, double* dM) {
    double a[16] = {0}, b[16];
    a[0] = w;
    a[1] = 1.0 - w;  // order 2
    for (int n = 3; n <= p; ++n) {
        if (n == p && dM)
            for (int j = 0; j < p; ++j) dM[j] = (j < n - 1 ? a[j] : 0.0) - (j > 0 ? a[j - 1] : 0.0);
        for (int j = 0; j < p; ++j) b[j] = 0.0;
        for (int j = 0; j < n; ++j) {
            const double x = w + j;
            const double m1 = j < n - 1 ? a[j] : 0.0, m0 = j > 0 ? a[j - 1] : 0.0;
            b[j] = (x * m1 + (n - x) * m0) / (n - 1);
        }
        for (int j = 0; j < p; ++j) a[j] = b[j];
    }
    std::copy(a, a + p, M);
}


/// |b_d(m)|^2 of the smooth particle-mesh Ewald influence function (Euler exponential splines),
/// m = 0..K-1, for B-splines of order p.
inline std::vector<double> bspline_moduli(int K, int p) {
    std::vector<double> M(p), dM(p), out(K);
    bspline(0.0, p, M.data(), dM.data());  // M_p(j), j = 0..p-1 (M_p(0) = 0)
    for (int m = 0; m < K; ++m) {
        std::complex<double> den = 0.0;
        for (int k = 0; k < p - 1; ++k) den += M[k + 1] * std::polar(1.0, 2.0 * kPi * m * k / K);
        out[m] = std::norm(den) > 1e-14 ? 1.0 / std::norm(den) : 0.0;
    }
    return out;
}

/// w -= B [-1 + 2 (eta^2 / 2 + 1 / k^2) k k^T] (row-major 3 x 3): the strain derivative of one
/// reciprocal-space term B exp(-eta^2 k^2 / 2) / k^2 of an Ewald sum (structure factors or mesh).
inline void subtract_recip_virial(double B, const double* k, double eta, double* w) {
    const double h = 2.0 * (0.5 * eta * eta + 1.0 / (k[0] * k[0] + k[1] * k[1] + k[2] * k[2]));
    for (int p = 0; p < 3; ++p)
        for (int q = 0; q < 3; ++q) w[3 * p + q] -= B * ((p == q ? -1.0 : 0.0) + h * k[p] * k[q]);
}

/// n2p2's k-vectors (KspaceGrid: the half sphere |k| < k_cut, the same index ranges and strict
/// inequality) of a cell (rows) and their coefficients 2 c_k / (4 pi eps0) (electrostatics.cpp).
void half_sphere_kvectors(const double* cell, double k_cut, double eta, double fpe, std::vector<double>& kvec,
                          std::vector<double>& kcoef);

}  // namespace kernels
}  // namespace hdnnp
