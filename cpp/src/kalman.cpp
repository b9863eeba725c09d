#include "hdnnp/kalman.hpp"

#include <algorithm>
#include <vector>

namespace hdnnp {

namespace {
/// kalman_block_pass for S columns of h known at compile time (0: h not given), NB columns of the
/// block at a time: the rows of Y, h and x are read once per NB columns, not once per column
template <int S>
void pass(int64_t c0, int64_t w, double* R, double* T, const double* Y, int SY, double div, double q,
          const double* h, double* x) {
    constexpr int NB = 8;
    const double inv = 1.0 / div;
    for (int64_t j0 = 0; j0 < w; j0 += NB) {
        const int nb = static_cast<int>(std::min<int64_t>(NB, w - j0));
        if (Y) {   // R[:, j] -= Y_rows Y_c^T, / div (rows of the rectangle, then of the triangle)
            double yc[NB][8] = {};
            for (int b = 0; b < nb; ++b)
                for (int k = 0; k < SY; ++k) yc[b][k] = Y[(c0 + j0 + b) * SY + k];
            for (int64_t i = 0; i < c0; ++i) {
                const double* yi = Y + i * SY;
                for (int b = 0; b < nb; ++b) {
                    double s = 0.0;
                    for (int k = 0; k < SY; ++k) s += yi[k] * yc[b][k];
                    double& r = R[(j0 + b) * c0 + i];
                    r = (r - s) * inv;
                }
            }
            for (int b = 0; b < nb; ++b) {
                const int64_t j = j0 + b;
                double* Tj = T + j * w;
                for (int64_t i = 0; i <= j; ++i) {
                    double s = 0.0;
                    for (int k = 0; k < SY; ++k) s += Y[(c0 + i) * SY + k] * yc[b][k];
                    Tj[i] = (Tj[i] - s) * inv;
                }
                Tj[j] += q;
            }
        }
        if constexpr (S > 0) {
            double hc[NB][S], acc[NB][S];
            for (int b = 0; b < nb; ++b)
                for (int k = 0; k < S; ++k) { hc[b][k] = h[(c0 + j0 + b) * S + k]; acc[b][k] = 0.0; }
            for (int64_t i = 0; i < c0; ++i) {   // rectangle: x_i += R_ij h_c, x_c += R_ij h_i
                const double* hi = h + i * S;
                double xi[S] = {};
                for (int b = 0; b < nb; ++b) {
                    const double r = R[(j0 + b) * c0 + i];
                    for (int k = 0; k < S; ++k) {
                        xi[k] += r * hc[b][k];
                        acc[b][k] += r * hi[k];
                    }
                }
                for (int k = 0; k < S; ++k) x[i * S + k] += xi[k];
            }
            for (int b = 0; b < nb; ++b) {   // diagonal block: above its diagonal, mirrored, and on it
                const int64_t j = j0 + b, c = c0 + j;
                const double* Tj = T + j * w;
                for (int64_t i = 0; i < j; ++i) {
                    const double t = Tj[i];
                    for (int k = 0; k < S; ++k) {
                        x[(c0 + i) * S + k] += t * hc[b][k];
                        acc[b][k] += t * h[(c0 + i) * S + k];
                    }
                }
                for (int k = 0; k < S; ++k) x[c * S + k] += acc[b][k] + Tj[j] * hc[b][k];
            }
        }
    }
}

/// the general case (S > 4): one column at a time
void pass_any(int64_t c0, int64_t w, double* R, double* T, const double* Y, int SY, double div, double q,
              const double* h, double* x, int S) {
    for (int64_t j = 0; j < w; ++j) {
        // a one-column block: R's column j and T's column j as their own block of width 1 is not
        // how T is laid out, so the triangle is handled here directly
        const int64_t c = c0 + j;
        double* Rj = R + j * c0;
        double* Tj = T + j * w;
        if (Y) {
            const double* yc = Y + c * SY;
            for (int64_t i = 0; i < c0; ++i) {
                double s = 0.0;
                for (int k = 0; k < SY; ++k) s += Y[i * SY + k] * yc[k];
                Rj[i] = (Rj[i] - s) / div;
            }
            for (int64_t i = 0; i <= j; ++i) {
                double s = 0.0;
                for (int k = 0; k < SY; ++k) s += Y[(c0 + i) * SY + k] * yc[k];
                Tj[i] = (Tj[i] - s) / div;
            }
            Tj[j] += q;
        }
        if (!h) continue;
        const double* hc = h + c * S;
        std::vector<double> acc(S, 0.0);
        for (int64_t i = 0; i < c0; ++i)
            for (int k = 0; k < S; ++k) { x[i * S + k] += Rj[i] * hc[k]; acc[k] += Rj[i] * h[i * S + k]; }
        for (int64_t i = 0; i < j; ++i)
            for (int k = 0; k < S; ++k) { x[(c0 + i) * S + k] += Tj[i] * hc[k]; acc[k] += Tj[i] * h[(c0 + i) * S + k]; }
        for (int k = 0; k < S; ++k) x[c * S + k] += acc[k] + Tj[j] * hc[k];
    }
}
}  // namespace

void kalman_block_pass(int64_t c0, int64_t w, double* R, double* T, const double* Y, int SY, double div, double q,
                       const double* h, double* x, int S) {
    if (Y && SY > 8) {   // (the blocked passes keep up to 8 columns of Y per block column)
        pass_any(c0, w, R, T, Y, SY, div, q, nullptr, nullptr, 0);
        Y = nullptr;
    }
    if (!h) S = 0;
    switch (S) {
        case 0: pass<0>(c0, w, R, T, Y, SY, div, q, nullptr, nullptr); break;
        case 1: pass<1>(c0, w, R, T, Y, SY, div, q, h, x); break;
        case 2: pass<2>(c0, w, R, T, Y, SY, div, q, h, x); break;
        case 3: pass<3>(c0, w, R, T, Y, SY, div, q, h, x); break;
        case 4: pass<4>(c0, w, R, T, Y, SY, div, q, h, x); break;
        default:
            pass<0>(c0, w, R, T, Y, SY, div, q, nullptr, nullptr);
            pass_any(c0, w, R, T, nullptr, 0, div, q, h, x, S);
    }
}

}  // namespace hdnnp
