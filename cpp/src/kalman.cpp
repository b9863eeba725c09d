#include "hdnnp/kalman.hpp"

#include <algorithm>
#include <vector>

namespace hdnnp {

namespace {
/// kalman_block_pass, one column of the block at a time: the column is read and written once,
/// contiguously (column-major), and in the same sweep (i over its rows) the update is applied
/// and both halves of the symmetric product are accumulated: x_i += P_ij h_j (the column) and
/// acc += P_ij h_i (the row j, by symmetry). SC, SYC: the numbers of columns of h and Y when
/// known at compile time (so that the k loops unroll and the i loop vectorises), 0: s / sy.
template <int SC, int SYC>
void pass(int64_t c0, int64_t w, double* R, double* T, const double* Y, int sy, double div, double q,
          const double* h, double* x, int s) {
    const int S = SC > 0 ? SC : s;
    const int SY = SYC > 0 ? SYC : sy;
    const double inv = 1.0 / div;
    std::vector<double> yc(Y ? SY : 0), hc(S), acc(S);
    // one column: rows [0, m) of `col`, whose global rows start at r0 (the rectangle: r0 = 0,
    // m = c0; the triangle: r0 = c0, m = j + 1, its diagonal element included)
    auto column = [&](double* __restrict col, int64_t r0, int64_t m) {
        const double* __restrict Yr = Y ? Y + r0 * SY : nullptr;
        const double* __restrict hr = h ? h + r0 * S : nullptr;
        double* __restrict xr = x + r0 * S;
        if (S == 1 && (!Y || SY == 1)) {
            // (the common case, one observation: four partial sums so that the reduction over
            // i pipelines; the x update vectorises)
            const double hj = hc[0], yj = Y ? yc[0] : 0.0;
            double a[4] = {0.0, 0.0, 0.0, 0.0};
            int64_t i = 0;
            for (; i + 4 <= m; i += 4)
                for (int u = 0; u < 4; ++u) {
                    double r = col[i + u];
                    if (Y) r = (r - Yr[i + u] * yj) * inv;
                    col[i + u] = r;
                    xr[i + u] += r * hj;
                    a[u] += r * hr[i + u];
                }
            for (; i < m; ++i) {
                double r = col[i];
                if (Y) r = (r - Yr[i] * yj) * inv;
                col[i] = r;
                xr[i] += r * hj;
                a[0] += r * hr[i];
            }
            acc[0] += (a[0] + a[1]) + (a[2] + a[3]);
            return;
        }
        double al[8] = {0.0};   // (S <= 8 here; larger S: acc directly)
        double* ak = S <= 8 ? al : acc.data();
        if (Y && S) {
            for (int64_t i = 0; i < m; ++i) {
                double t = 0.0;
                for (int k = 0; k < SY; ++k) t += Yr[i * SY + k] * yc[k];
                const double r = (col[i] - t) * inv;
                col[i] = r;
                for (int k = 0; k < S; ++k) {
                    xr[i * S + k] += r * hc[k];
                    ak[k] += r * hr[i * S + k];
                }
            }
        } else if (Y) {
            for (int64_t i = 0; i < m; ++i) {
                double t = 0.0;
                for (int k = 0; k < SY; ++k) t += Yr[i * SY + k] * yc[k];
                col[i] = (col[i] - t) * inv;
            }
        } else {
            for (int64_t i = 0; i < m; ++i) {
                const double r = col[i];
                for (int k = 0; k < S; ++k) {
                    xr[i * S + k] += r * hc[k];
                    ak[k] += r * hr[i * S + k];
                }
            }
        }
        if (ak == al)
            for (int k = 0; k < S; ++k) acc[k] += al[k];
    };
    for (int64_t j = 0; j < w; ++j) {
        const int64_t c = c0 + j;
        if (Y)
            for (int k = 0; k < SY; ++k) yc[k] = Y[c * SY + k];
        for (int k = 0; k < S; ++k) { hc[k] = h[c * S + k]; acc[k] = 0.0; }
        column(R + j * c0, 0, c0);                 // the rectangle above the diagonal block
        double* Tj = T + j * w;
        if (Y) {                                   // the triangle's column, its diagonal with q
            column(Tj, c0, j + 1);
            Tj[j] += q;
            if (S) {   // the diagonal was counted twice (as x_c and acc) and without q: once, with it
                const double updated = Tj[j] - q;
                for (int k = 0; k < S; ++k) {
                    x[c * S + k] -= updated * hc[k];
                    acc[k] += q * hc[k];
                }
            }
        } else {
            column(Tj, c0, j + 1);
            for (int k = 0; k < S; ++k) x[c * S + k] -= Tj[j] * hc[k];   // (counted twice)
        }
        for (int k = 0; k < S; ++k) x[c * S + k] += acc[k];
    }
}

template <int SC>
void dispatch_y(int64_t c0, int64_t w, double* R, double* T, const double* Y, int SY, double div, double q,
                const double* h, double* x, int S) {
    switch (Y ? SY : -1) {
        case 1: pass<SC, 1>(c0, w, R, T, Y, SY, div, q, h, x, S); break;
        case 2: pass<SC, 2>(c0, w, R, T, Y, SY, div, q, h, x, S); break;
        default: pass<SC, 0>(c0, w, R, T, Y, SY, div, q, h, x, S);
    }
}
}  // namespace

void kalman_block_pass(int64_t c0, int64_t w, double* R, double* T, const double* Y, int SY, double div, double q,
                       const double* h, double* x, int S) {
    if (!h) S = 0;
    switch (S) {
        case 0: dispatch_y<-1>(c0, w, R, T, Y, SY, div, q, h, x, S); break;
        case 1: dispatch_y<1>(c0, w, R, T, Y, SY, div, q, h, x, S); break;
        case 2: dispatch_y<2>(c0, w, R, T, Y, SY, div, q, h, x, S); break;
        default: dispatch_y<0>(c0, w, R, T, Y, SY, div, q, h, x, S);
    }
}

}  // namespace hdnnp
