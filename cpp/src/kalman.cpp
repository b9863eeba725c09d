#include "hdnnp/kalman.hpp"

#include <algorithm>
#include <vector>

namespace hdnnp {

namespace {
/// kalman_block_pass, NB columns of the block at a time (the rows of Y, h and x are read once
/// per NB columns, not once per column). SC: the number of columns of h when known at compile
/// time (1..4, so that the inner loops unroll), 0: `s` of them (0 when h is not given).
template <int SC>
void pass(int64_t c0, int64_t w, double* R, double* T, const double* Y, int SY, double div, double q,
          const double* h, double* x, int s) {
    constexpr int NB = 8;
    const int S = SC > 0 ? SC : s;
    const double inv = 1.0 / div;
    std::vector<double> yc(Y ? NB * SY : 0), hc(NB * S), acc(NB * S), xi(S);
    for (int64_t j0 = 0; j0 < w; j0 += NB) {
        const int nb = static_cast<int>(std::min<int64_t>(NB, w - j0));
        if (Y) {   // R[:, j] -= Y_rows Y_c^T, / div (rows of the rectangle, then of the triangle)
            for (int b = 0; b < nb; ++b)
                for (int k = 0; k < SY; ++k) yc[b * SY + k] = Y[(c0 + j0 + b) * SY + k];
            for (int64_t i = 0; i < c0; ++i) {
                const double* yi = Y + i * SY;
                for (int b = 0; b < nb; ++b) {
                    double t = 0.0;
                    for (int k = 0; k < SY; ++k) t += yi[k] * yc[b * SY + k];
                    double& r = R[(j0 + b) * c0 + i];
                    r = (r - t) * inv;
                }
            }
            for (int b = 0; b < nb; ++b) {
                const int64_t j = j0 + b;
                double* Tj = T + j * w;
                for (int64_t i = 0; i <= j; ++i) {
                    double t = 0.0;
                    for (int k = 0; k < SY; ++k) t += Y[(c0 + i) * SY + k] * yc[b * SY + k];
                    Tj[i] = (Tj[i] - t) * inv;
                }
                Tj[j] += q;
            }
        }
        if (S == 0) continue;
        for (int b = 0; b < nb; ++b)
            for (int k = 0; k < S; ++k) { hc[b * S + k] = h[(c0 + j0 + b) * S + k]; acc[b * S + k] = 0.0; }
        for (int64_t i = 0; i < c0; ++i) {   // rectangle: x_i += R_ij h_c, x_c += R_ij h_i
            const double* hi = h + i * S;
            std::fill(xi.begin(), xi.end(), 0.0);
            for (int b = 0; b < nb; ++b) {
                const double r = R[(j0 + b) * c0 + i];
                for (int k = 0; k < S; ++k) {
                    xi[k] += r * hc[b * S + k];
                    acc[b * S + k] += r * hi[k];
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
                    x[(c0 + i) * S + k] += t * hc[b * S + k];
                    acc[b * S + k] += t * h[(c0 + i) * S + k];
                }
            }
            for (int k = 0; k < S; ++k) x[c * S + k] += acc[b * S + k] + Tj[j] * hc[b * S + k];
        }
    }
}
}  // namespace

void kalman_block_pass(int64_t c0, int64_t w, double* R, double* T, const double* Y, int SY, double div, double q,
                       const double* h, double* x, int S) {
    if (!h) S = 0;
    switch (S) {
        case 1: pass<1>(c0, w, R, T, Y, SY, div, q, h, x, S); break;
        case 2: pass<2>(c0, w, R, T, Y, SY, div, q, h, x, S); break;
        case 3: pass<3>(c0, w, R, T, Y, SY, div, q, h, x, S); break;
        case 4: pass<4>(c0, w, R, T, Y, SY, div, q, h, x, S); break;
        default: pass<0>(c0, w, R, T, Y, SY, div, q, h, x, S);
    }
}

}  // namespace hdnnp
