// Cutoff functions (n2p2 CutoffFunction, `cutoff_type <n> [alpha]`) and compact
// functions (n2p2 CompactFunction/CoreFunction, used by SF types 20-25).
// All are evaluated together with their first derivative; the type switch is
// hoisted out of the neighbour loops by the callers (one call per neighbour
// per group, never per symmetry function).
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>

namespace hdnnp {

enum class CutoffType { Hard = 0, Cos = 1, TanhU = 2, Tanh = 3, Exp = 4,
                        Poly1 = 5, Poly2 = 6, Poly3 = 7, Poly4 = 8 };

/// Polynomial/exponential cores f(x) on x in [0,1], f(0)=1, f(1)=0.
enum class CoreType { Poly1, Poly2, Poly3, Poly4, Exp };

inline void core_fdf(CoreType t, double x, double& f, double& df) {
    f = 0.0;
    df = 0.0;
    switch (t) {
        case CoreType::Poly1:  // (2x-3)x^2+1
            f = (2.0 * x - 3.0) * x * x + 1.0;
            df = x * (6.0 * x - 6.0);
            return;
        case CoreType::Poly2: {  // ((15-6x)x-10)x^3+1
            const double x2 = x * x;
            f = ((15.0 - 6.0 * x) * x - 10.0) * x * x2 + 1.0;
            df = x2 * ((60.0 - 30.0 * x) * x - 30.0);
            return;
        }
        case CoreType::Poly3: {  // (x(x(20x-70)+84)-35)x^4+1
            const double x2 = x * x;
            f = (x * (x * (20.0 * x - 70.0) + 84.0) - 35.0) * x2 * x2 + 1.0;
            df = x2 * x * (x * (x * (140.0 * x - 420.0) + 420.0) - 140.0);
            return;
        }
        case CoreType::Poly4: {  // (x(x((315-70x)x-540)+420)-126)x^5+1
            const double x4 = (x * x) * (x * x);
            f = (x * (x * ((315.0 - 70.0 * x) * x - 540.0) + 420.0) - 126.0) * x * x4 + 1.0;
            df = x4 * (x * (x * ((2520.0 - 630.0 * x) * x - 3780.0) + 2520.0) - 630.0);
            return;
        }
        case CoreType::Exp: {  // exp(1 - 1/(1-x^2)) = e * exp(1/(x^2-1))
            if (x >= 1.0) { f = 0.0; df = 0.0; return; }
            const double t = 1.0 / (x * x - 1.0);
            const double e = std::exp(1.0 + t);
            f = e;
            df = -2.0 * x * t * t * e;
            return;
        }
    }
}

/// exp(x) without branches or library calls, so that loops calling it vectorise (libm's
/// exp does not, and glibc only exposes its vector variants under -ffast-math). Cody-Waite
/// reduction x = n ln2 + r, |r| <= ln2/2, degree-12 Taylor polynomial (truncation
/// 2e-16 relative), 2^n assembled in the exponent bits; max error about 2 ulp.
/// Returns 0 below x = -708 (exp there is < 3e-308) and saturates above 709.
inline double vexp(double x) {
    x = x < -708.0 ? -708.0 : x;
    const double xc = x > 709.0 ? 709.0 : x;
    constexpr double shifter = 6755399441055744.0;  // 1.5 * 2^52: rounds to an integer
    const double t = xc * 1.4426950408889634 + shifter;
    const double n = t - shifter;
    double r = xc - n * 6.93147180369123816490e-01;  // ln2 split into hi + lo (Cody-Waite)
    r = r - n * 1.90821492927058770002e-10;
    double p = 1.0 / 479001600.0;
    p = p * r + 1.0 / 39916800.0;
    p = p * r + 1.0 / 3628800.0;
    p = p * r + 1.0 / 362880.0;
    p = p * r + 1.0 / 40320.0;
    p = p * r + 1.0 / 5040.0;
    p = p * r + 1.0 / 720.0;
    p = p * r + 1.0 / 120.0;
    p = p * r + 1.0 / 24.0;
    p = p * r + 1.0 / 6.0;
    p = p * r + 0.5;
    p = p * r + 1.0;
    p = p * r + 1.0;
    // The low mantissa bits of t hold n; move n + 1023 into the exponent field.
    std::uint64_t bits;
    std::memcpy(&bits, &t, sizeof bits);
    bits = (bits + 1023u) << 52;
    double scale;
    std::memcpy(&scale, &bits, sizeof scale);
    return x <= -708.0 ? 0.0 : p * scale;
}

/// tanh(y) for y in [0, 1] as (e^2y - 1)/(e^2y + 1): one exp instead of libm's tanh, the
/// hottest call of the triplet loops with cutoff types 2/3; absolute error ~1e-16.
inline double tanh_unit(double y) {
    const double e2 = vexp(2.0 * y);
    return (e2 - 1.0) / (e2 + 1.0);
}

/// Cutoff type 3: normalisation so that f(0) = 1, i.e. 1/tanh(1)^3.
inline double tanh_cutoff_norm() {
    static const double norm = std::pow(1.0 / std::tanh(1.0), 3);
    return norm;
}

/// The global cutoff function f_c(r) with inner cutoff r_ci = alpha * r_c.
struct CutoffFunction {
    CutoffType type = CutoffType::Hard;
    double rc = 0.0, alpha = 0.0, rci = 0.0, inv_width = 0.0, inv_rc = 0.0;

    CutoffFunction() = default;
    CutoffFunction(CutoffType t, double rc_, double alpha_) : type(t), rc(rc_), alpha(alpha_) {
        rci = alpha * rc;
        inv_width = 1.0 / (rc - rci);
        inv_rc = 1.0 / rc;
    }

    /// f_c and df_c/dr for r < rc (callers only pass r < rc).
    inline void fdf(double r, double& f, double& df) const {
        switch (type) {
            case CutoffType::Hard:
                f = 1.0; df = 0.0; return;
            case CutoffType::TanhU: {
                const double t = tanh_unit(1.0 - r * inv_rc);
                f = t * t * t;
                df = -3.0 * t * t * (1.0 - t * t) * inv_rc;
                return;
            }
            case CutoffType::Tanh: {
                const double norm = tanh_cutoff_norm();
                const double t = tanh_unit(1.0 - r * inv_rc);
                f = norm * t * t * t;
                df = -3.0 * norm * t * t * (1.0 - t * t) * inv_rc;
                return;
            }
            default: break;
        }
        if (r < rci) { f = 1.0; df = 0.0; return; }
        const double x = (r - rci) * inv_width;
        switch (type) {
            case CutoffType::Cos:
                f = 0.5 * (std::cos(M_PI * x) + 1.0);
                df = -0.5 * M_PI * std::sin(M_PI * x) * inv_width;
                return;
            case CutoffType::Exp: {
                const double t = 1.0 / (1.0 - x * x);
                f = std::exp(1.0 - t);
                df = -2.0 * x * t * t * f * inv_width;
                return;
            }
            case CutoffType::Poly1: core_fdf(CoreType::Poly1, x, f, df); break;
            case CutoffType::Poly2: core_fdf(CoreType::Poly2, x, f, df); break;
            case CutoffType::Poly3: core_fdf(CoreType::Poly3, x, f, df); break;
            case CutoffType::Poly4: core_fdf(CoreType::Poly4, x, f, df); break;
            default: f = 1.0; df = 0.0; return;
        }
        df *= inv_width;
    }

    /// fdf for n radii at once, 0 for r >= rc (masked-out triplets then add nothing). One
    /// branch-free loop per type so that it vectorises (except the cos type: libm cos).
    inline void fdf_batch(const double* __restrict r, double* __restrict f,
                          double* __restrict df, int n) const {
        const double rc_ = rc, rci_ = rci, iw = inv_width, irc = inv_rc;
        switch (type) {
            case CutoffType::Hard:
                for (int i = 0; i < n; ++i) { f[i] = r[i] < rc_ ? 1.0 : 0.0; df[i] = 0.0; }
                return;
            case CutoffType::TanhU: case CutoffType::Tanh: {
                const double norm = type == CutoffType::Tanh ? tanh_cutoff_norm() : 1.0;
                for (int i = 0; i < n; ++i) {
                    const bool in = r[i] < rc_;
                    const double t = tanh_unit(in ? 1.0 - r[i] * irc : 0.0);
                    f[i] = norm * t * t * t;
                    df[i] = in ? -3.0 * norm * t * t * (1.0 - t * t) * irc : 0.0;
                }
                return;
            }
            case CutoffType::Cos:
                for (int i = 0; i < n; ++i) {
                    if (r[i] >= rc_) { f[i] = 0.0; df[i] = 0.0; }
                    else fdf(r[i], f[i], df[i]);
                }
                return;
            case CutoffType::Exp:
                for (int i = 0; i < n; ++i) {
                    const bool in = r[i] < rc_, inner = r[i] < rci_;
                    const double x = (in && !inner) ? (r[i] - rci_) * iw : 0.0;
                    const double t = 1.0 / (1.0 - x * x);
                    const double e = vexp(1.0 - t);
                    f[i] = in ? e : 0.0;
                    df[i] = (in && !inner) ? -2.0 * x * t * t * e * iw : 0.0;
                }
                return;
            case CutoffType::Poly1: poly_batch<CoreType::Poly1>(r, f, df, n); return;
            case CutoffType::Poly2: poly_batch<CoreType::Poly2>(r, f, df, n); return;
            case CutoffType::Poly3: poly_batch<CoreType::Poly3>(r, f, df, n); return;
            case CutoffType::Poly4: poly_batch<CoreType::Poly4>(r, f, df, n); return;
        }
    }

private:
    template <CoreType C>
    inline void poly_batch(const double* __restrict r, double* __restrict f,
                           double* __restrict df, int n) const {
        const double rc_ = rc, rci_ = rci, iw = inv_width;
        for (int i = 0; i < n; ++i) {
            const bool in = r[i] < rc_, inner = r[i] < rci_;
            const double x = (in && !inner) ? (r[i] - rci_) * iw : 0.0;
            double a, da;
            core_fdf(C, x, a, da);
            f[i] = in ? a : 0.0;
            df[i] = (in && !inner) ? da * iw : 0.0;
        }
    }
};

/// Compact function C(a; left, right) = core(|a - c|/w), c = (l+r)/2, w = (r-l)/2,
/// zero outside (left, right). With `asym`, the core argument x becomes (2-x)x
/// (n2p2 subtypes "p1a".."p4a").
struct CompactFunction {
    CoreType core = CoreType::Poly2;
    bool asym = false;
    double left = 0.0, right = 1.0, center = 0.5, scale = 2.0;

    CompactFunction() = default;
    CompactFunction(CoreType c, bool a, double l, double r)
        : core(c), asym(a), left(l), right(r), center(0.5 * (l + r)), scale(2.0 / (r - l)) {}

    inline void fdf(double a, double& f, double& df) const {
        if (a <= left || a >= right) { f = 0.0; df = 0.0; return; }
        const double y = (a - center) * scale;
        double x = std::fabs(y);
        const double sgn = y < 0.0 ? -scale : scale;
        if (asym) {
            const double dp = 2.0 - 2.0 * x;
            x = (2.0 - x) * x;
            core_fdf(core, x, f, df);
            df *= dp * sgn;
        } else {
            core_fdf(core, x, f, df);
            df *= sgn;
        }
    }
};

}  // namespace hdnnp
