#include "hdnnp/pme.hpp"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

#include <unsupported/Eigen/FFT>

#include "hdnnp/threads.hpp"
#include "electrostatic_kernels.hpp"

namespace hdnnp {
using namespace kernels;
namespace {

/// Smallest prime factor 2, 3 or 5 of n (0 if n has another).
int radix(int n) {
    for (int p : {2, 3, 5})
        if (n % p == 0) return p;
    return 0;
}

/// Mixed-radix (2, 3, 5) decimation in time: out[k] = sum_j in[j * stride] w^(j k), k < n,
/// w = exp(sign 2 pi i / n). `tw` holds exp(2 pi i t / N) for t < N, N = n * tstride.
void dft(const std::complex<double>* in, std::complex<double>* out, int n, int stride, const std::complex<double>* tw,
         int tstride, int sign) {
    if (n == 1) { out[0] = in[0]; return; }
    const int p = radix(n), m = n / p, N = n * tstride;
    for (int r = 0; r < p; ++r) dft(in + r * stride, out + r * m, m, stride * p, tw, tstride * p, sign);
    // X[k + q m] = sum_r w_n^(r k) Y_r[k] w_p^(r q), Y_r = out[r m ...] (the same p slots: in place)
    auto w = [&](int t) { return sign > 0 ? tw[t] : std::conj(tw[t]); };
    std::complex<double> t[5];
    for (int k = 0; k < m; ++k) {
        for (int r = 0; r < p; ++r) t[r] = out[r * m + k] * w(r * k * tstride);
        for (int q = 0; q < p; ++q) {
            std::complex<double> s = t[0];
            for (int r = 1; r < p; ++r) s += t[r] * w((r * q % p) * (N / p));
            out[q * m + k] = s;
        }
    }
}

/// In-place DFT of n = 2^a 3^b 5^c values: x_k <- sum_j x_j exp(sign 2 pi i j k / n); `tw`: the
/// n roots of unity exp(2 pi i t / n); `scratch`: n values.
void fft1(std::complex<double>* x, int n, const std::vector<std::complex<double>>& tw, int sign,
          std::complex<double>* scratch) {
    std::copy(x, x + n, scratch);
    dft(scratch, x, n, 1, tw.data(), 1, sign);
}

}  // namespace

ParticleMesh::ParticleMesh(const double* cell, const double* inv_cell, double volume, const int grid[3], int order,
                           double eta, double fpe, const double* pos, int64_t n, int threads, FftEngine fft)
    : p_(order), threads_(threads), fft_(fft), n_(n), eta_(eta) {
    (void)cell;
    if (order < 4 || order > 12 || order % 2)
        throw std::invalid_argument("particle mesh: the B-spline order must be even, 4..12");
    for (int d = 0; d < 3; ++d) {
        K_[d] = grid[d];
        int rest = K_[d];
        while (rest > 1 && radix(rest)) rest /= radix(rest);
        if (K_[d] < order || rest != 1)
            throw std::invalid_argument("particle mesh: grid sizes must be products of 2, 3 and 5, >= the order");
        twiddle_.emplace_back(K_[d]);
        for (int k = 0; k < K_[d]; ++k) twiddle_[d][k] = std::polar(1.0, 2.0 * kPi * k / K_[d]);
        // reciprocal vector b_d = column d of inv_cell (a_i . b_d = delta_id)
        for (int c = 0; c < 3; ++c) {
            recip_[3 * d + c] = 2.0 * kPi * inv_cell[3 * c + d];
            dudr_[3 * d + c] = K_[d] * inv_cell[3 * c + d];
        }
    }
    // B-spline weights of every atom (fractional coordinates wrapped into the cell); their
    // derivatives are recomputed by add_derivatives from the offsets (memory: the weights only)
    base_.resize(3 * n);
    w_.resize(3 * n * p_);
    frac_.resize(3 * n);
    for (int64_t i = 0; i < n; ++i)
        for (int d = 0; d < 3; ++d) {
            double s = 0.0;
            for (int c = 0; c < 3; ++c) s += pos[3 * i + c] * inv_cell[3 * c + d];
            s -= std::floor(s);
            const double u = s * K_[d];
            const double fl = std::floor(u);
            base_[3 * i + d] = static_cast<int>(fl) % K_[d];
            frac_[3 * i + d] = u - fl;
            bspline(u - fl, p_, &w_[(3 * i + d) * p_], nullptr);
        }
    // influence function with the Euler-spline factors |b(m)|^2
    std::vector<double> bsq[3];
    for (int d = 0; d < 3; ++d) bsq[d] = bspline_moduli(K_[d], p_);
    const int64_t total = grid_points();
    G_.assign(total, 0.0);
    const double pre = 4.0 * kPi / volume / fpe;
    for (int64_t idx = 1; idx < total; ++idx) {
        double k[3];
        kvector(idx, k);
        const double k2 = k[0] * k[0] + k[1] * k[1] + k[2] * k[2];
        const double c = pre * std::exp(-0.5 * eta * eta * k2) / k2;
        const int m3 = idx % K_[2], m2 = (idx / K_[2]) % K_[1], m1 = idx / (static_cast<int64_t>(K_[1]) * K_[2]);
        G_[idx] = c * bsq[0][m1] * bsq[1][m2] * bsq[2][m3];
        diag_ += c;
    }
}

void ParticleMesh::mesh_indices(int64_t i, int* i0, int* i1, int* i2) const {
    int* out[3] = {i0, i1, i2};
    for (int d = 0; d < 3; ++d)
        for (int c = 0; c < p_; ++c) {
            int k = base_[3 * i + d] - c;   // (base in [0, K), c < p <= K: one wrap at most)
            out[d][c] = k < 0 ? k + K_[d] : k;
        }
}

void ParticleMesh::kvector(int64_t idx, double k[3]) const {
    int64_t m[3] = {idx / (static_cast<int64_t>(K_[1]) * K_[2]), (idx / K_[2]) % K_[1], idx % K_[2]};
    for (int d = 0; d < 3; ++d)
        if (m[d] >= K_[d] / 2) m[d] -= K_[d];
    for (int c = 0; c < 3; ++c) k[c] = m[0] * recip_[c] + m[1] * recip_[3 + c] + m[2] * recip_[6 + c];
}

void ParticleMesh::spread(const double* x, Grid& g, bool imaginary) const {
    if (!imaginary) g.assign(grid_points(), 0.0);
    // (the real or the imaginary parts of the complex grid, as an array of doubles)
    double* gd = reinterpret_cast<double*>(g.data()) + (imaginary ? 1 : 0);
    for (int64_t i = 0; i < n_; ++i) {
        if (x[i] == 0.0) continue;
        const double* w0 = &w_[(3 * i) * p_];
        const double* w1 = &w_[(3 * i + 1) * p_];
        const double* w2 = &w_[(3 * i + 2) * p_];
        int i0[16], i1[16], i2[16];
        mesh_indices(i, i0, i1, i2);
        for (int a = 0; a < p_; ++a) {
            for (int b = 0; b < p_; ++b) {
                const double f = x[i] * w0[a] * w1[b];
                double* row = gd + 2 * ((static_cast<int64_t>(i0[a]) * K_[1] + i1[b]) * K_[2]);
                for (int c = 0; c < p_; ++c) row[2 * i2[c]] += f * w2[c];
            }
        }
    }
}

void mesh_fft3(std::complex<double>* g, const int K[3], int sign, int threads, FftEngine fft,
               const std::vector<std::complex<double>>* twiddle) {
    const int nt = thread_count(threads);
    const int64_t K1 = K[0], K2 = K[1], K3 = K[2];
    // along direction 3 (contiguous), then 2, then 1
#pragma omp parallel num_threads(nt)
    {
        std::vector<std::complex<double>> line(std::max({K1, K2, K3})), scratch(line.size());
        Eigen::FFT<double> eig;                       // (plans cached per size; one per thread)
        eig.SetFlag(Eigen::FFT<double>::Unscaled);
        // x_k <- sum_j x_j exp(sign 2 pi i j k / n): Eigen's inverse for sign > 0, forward else
        auto line_fft = [&](std::complex<double>* x, int n, int d) {
            if (fft == FftEngine::Own) {
                fft1(x, n, twiddle[d], sign, scratch.data());
                return;
            }
            std::copy(x, x + n, scratch.data());
            if (sign > 0) eig.inv(x, scratch.data(), n);
            else eig.fwd(x, scratch.data(), n);
        };
#pragma omp for schedule(static)
        for (int64_t r = 0; r < K1 * K2; ++r) line_fft(&g[r * K3], static_cast<int>(K3), 2);
#pragma omp for schedule(static)
        for (int64_t r = 0; r < K1 * K3; ++r) {
            const int64_t a = r / K3, c = r % K3;
            for (int64_t b = 0; b < K2; ++b) line[b] = g[(a * K2 + b) * K3 + c];
            line_fft(line.data(), static_cast<int>(K2), 1);
            for (int64_t b = 0; b < K2; ++b) g[(a * K2 + b) * K3 + c] = line[b];
        }
#pragma omp for schedule(static)
        for (int64_t r = 0; r < K2 * K3; ++r) {
            for (int64_t a = 0; a < K1; ++a) line[a] = g[a * K2 * K3 + r];
            line_fft(line.data(), static_cast<int>(K1), 0);
            for (int64_t a = 0; a < K1; ++a) g[a * K2 * K3 + r] = line[a];
        }
    }
}

namespace {
/// the transforms along directions 2 and 1 of a half spectrum K[0] x K[1] x (K[2] / 2 + 1)
void half_spectrum_lines(std::complex<double>* spec, const int K[3], bool forward, int threads) {
    const int64_t K1 = K[0], K2 = K[1], H = K[2] / 2 + 1;
#pragma omp parallel num_threads(thread_count(threads))
    {
        std::vector<std::complex<double>> line(std::max(K1, K2)), scratch(line.size());
        Eigen::FFT<double> eig;
        eig.SetFlag(Eigen::FFT<double>::Unscaled);
#pragma omp for schedule(static)
        for (int64_t r = 0; r < K1 * H; ++r) {   // direction 2
            const int64_t a = r / H, c = r % H;
            for (int64_t b = 0; b < K2; ++b) scratch[b] = spec[(a * K2 + b) * H + c];
            if (forward) eig.fwd(line.data(), scratch.data(), K2);
            else eig.inv(line.data(), scratch.data(), K2);
            for (int64_t b = 0; b < K2; ++b) spec[(a * K2 + b) * H + c] = line[b];
        }
#pragma omp for schedule(static)
        for (int64_t r = 0; r < K2 * H; ++r) {   // direction 1
            for (int64_t a = 0; a < K1; ++a) scratch[a] = spec[a * K2 * H + r];
            if (forward) eig.fwd(line.data(), scratch.data(), K1);
            else eig.inv(line.data(), scratch.data(), K1);
            for (int64_t a = 0; a < K1; ++a) spec[a * K2 * H + r] = line[a];
        }
    }
}
}  // namespace

void mesh_forward_real(const double* grid, std::complex<double>* spec, const int K[3], int threads) {
    const int64_t K1 = K[0], K2 = K[1], K3 = K[2], H = K3 / 2 + 1;
#pragma omp parallel num_threads(thread_count(threads))
    {
        Eigen::FFT<double> eig;
        eig.SetFlag(Eigen::FFT<double>::Unscaled);
        eig.SetFlag(Eigen::FFT<double>::HalfSpectrum);
        // along direction 3: real -> the half spectrum m3 <= K3/2 (the rest is its conjugate)
#pragma omp for schedule(static)
        for (int64_t r = 0; r < K1 * K2; ++r) eig.fwd(&spec[r * H], grid + r * K3, K3);
    }
    half_spectrum_lines(spec, K, true, threads);
}

void mesh_inverse_real(std::complex<double>* spec, double* grid, const int K[3], int threads) {
    const int64_t K1 = K[0], K2 = K[1], K3 = K[2], H = K3 / 2 + 1;
    half_spectrum_lines(spec, K, false, threads);
#pragma omp parallel num_threads(thread_count(threads))
    {
        Eigen::FFT<double> eig;
        eig.SetFlag(Eigen::FFT<double>::Unscaled);
        eig.SetFlag(Eigen::FFT<double>::HalfSpectrum);
#pragma omp for schedule(static)
        for (int64_t r = 0; r < K1 * K2; ++r) eig.inv(grid + r * K3, &spec[r * H], K3);
    }
}

void mesh_convolve_real(double* grid, const double* G, const int K[3], int threads,
                        std::vector<std::complex<double>>* workspace) {
    const int64_t n = static_cast<int64_t>(K[0]) * K[1] * (K[2] / 2 + 1);
    std::vector<std::complex<double>> own;
    std::vector<std::complex<double>>& spec = workspace ? *workspace : own;
    spec.resize(n);
    mesh_forward_real(grid, spec.data(), K, threads);
#pragma omp parallel for schedule(static) num_threads(thread_count(threads))
    for (int64_t k = 0; k < n; ++k) spec[k] *= G[k];
    mesh_inverse_real(spec.data(), grid, K, threads);
}

void ParticleMesh::fft3(Grid& g, int sign) const { mesh_fft3(g.data(), K_, sign, threads_, fft_, twiddle_.data()); }

void ParticleMesh::apply(const double* x, double* y) const {
    Grid g;
    spread(x, g);
    fft3(g, 1);
    for (int64_t k = 0; k < grid_points(); ++k) g[k] *= G_[k];
    fft3(g, -1);
#pragma omp parallel for schedule(static) num_threads(thread_count(threads_))
    for (int64_t i = 0; i < n_; ++i) {
        const double* w0 = &w_[(3 * i) * p_];
        const double* w1 = &w_[(3 * i + 1) * p_];
        const double* w2 = &w_[(3 * i + 2) * p_];
        int i0[16], i1[16], i2[16];
        mesh_indices(i, i0, i1, i2);
        double s = 0.0;
        for (int a = 0; a < p_; ++a) {
            for (int b = 0; b < p_; ++b) {
                const std::complex<double>* row = &g[(static_cast<int64_t>(i0[a]) * K_[1] + i1[b]) * K_[2]];
                double t = 0.0;
                for (int c = 0; c < p_; ++c) t += w2[c] * row[i2[c]].real();
                s += w0[a] * w1[b] * t;
            }
        }
        y[i] += s;
    }
}

void ParticleMesh::add_derivatives(const double* u, const double* v, double* F, double* W) const {
    // u and v share one complex grid, Z = spread(u) + i spread(v): with u, v real,
    // u^(k) = (Z^(k) + conj Z^(-k)) / 2 and v^(k) = (Z^(k) - conj Z^(-k)) / 2i, and G real and even,
    // so F^-1 [G Z^] = phi_u + i phi_v: one grid and two transforms instead of two and four.
    Grid z;
    spread(u, z);
    spread(v, z, true);
    fft3(z, 1);
    // virial from the reciprocal-space sum (the spreading weights do not change under strain)
    double w[9] = {0};
    for (int64_t k = 1; k < grid_points(); ++k) {
        if (G_[k] == 0.0) continue;
        const int64_t m1 = k / (static_cast<int64_t>(K_[1]) * K_[2]), m2 = (k / K_[2]) % K_[1], m3 = k % K_[2];
        const int64_t mk = ((K_[0] - m1) % K_[0] * K_[1] + (K_[1] - m2) % K_[1]) * K_[2] + (K_[2] - m3) % K_[2];
        const std::complex<double> zk = z[k], zm = std::conj(z[mk]);
        const std::complex<double> gu = 0.5 * (zk + zm), gv = std::complex<double>(0.0, -0.5) * (zk - zm);
        const double B = G_[k] * (gu * std::conj(gv)).real();
        if (B == 0.0) continue;
        double kv[3];
        kvector(k, kv);
        subtract_recip_virial(B, kv, eta_, w);
    }
    for (int c = 0; c < 9; ++c) W[c] += w[c];
    for (int64_t k = 0; k < grid_points(); ++k) z[k] *= G_[k];
    fft3(z, -1);  // phi_u + i phi_v
#pragma omp parallel for schedule(static) num_threads(thread_count(threads_))
    for (int64_t i = 0; i < n_; ++i) {
        if (u[i] == 0.0 && v[i] == 0.0) continue;
        const double* w0 = &w_[(3 * i) * p_];
        const double* w1 = &w_[(3 * i + 1) * p_];
        const double* w2 = &w_[(3 * i + 2) * p_];
        double d0[16], d1[16], d2[16], scratch[16];
        bspline(frac_[3 * i], p_, scratch, d0);
        bspline(frac_[3 * i + 1], p_, scratch, d1);
        bspline(frac_[3 * i + 2], p_, scratch, d2);
        int i0[16], i1[16], i2[16];
        mesh_indices(i, i0, i1, i2);
        double gu_[3] = {0, 0, 0};  // d/du_d of sum_k W_i(k) (v_i phi_u + u_i phi_v)(k)
        for (int a = 0; a < p_; ++a) {
            for (int b = 0; b < p_; ++b) {
                const int64_t row = (static_cast<int64_t>(i0[a]) * K_[1] + i1[b]) * K_[2];
                for (int c = 0; c < p_; ++c) {
                    const std::complex<double> phi_uv = z[row + i2[c]];
                    const double phi = v[i] * phi_uv.real() + u[i] * phi_uv.imag();
                    gu_[0] += d0[a] * w1[b] * w2[c] * phi;
                    gu_[1] += w0[a] * d1[b] * w2[c] * phi;
                    gu_[2] += w0[a] * w1[b] * d2[c] * phi;
                }
            }
        }
        for (int c = 0; c < 3; ++c)
            for (int d = 0; d < 3; ++d) F[3 * i + c] -= gu_[d] * dudr_[3 * d + c];
    }
}

}  // namespace hdnnp
