// Smooth particle-mesh Ewald (Essmann et al., J. Chem. Phys. 103, 8577 (1995)) for the
// reciprocal part of the 4G QEq matrix: A_rec = Theta^T F^-1 [G] F Theta, where Theta spreads
// charges onto a K1 x K2 x K3 grid with cardinal B-splines of order p (even), F is the 3-D DFT
// and G(m) = (4 pi / V) exp(-eta^2 k^2 / 2) / k^2 / (4 pi eps0) |b1 b2 b3|^2 (m != 0; tin-foil).
// Symmetric positive semi-definite, so CG applies unchanged; the full grid replaces n2p2's
// |k| < k_cut half sphere. Cost per product O(n p^3 + K log K), memory O(K + n p).
#pragma once

#include <complex>
#include <cstdint>
#include <vector>

namespace hdnnp {

/// The 1-D FFTs of the mesh: Eigen's FFT module (kissfft; the default, faster here:
/// benchmarks/bench_fft.py) or this project's own mixed-radix (2, 3, 5) transform.
enum class FftEngine { Eigen = 0, Own = 1 };

/// In-place unscaled 3-D DFT of a K[0] x K[1] x K[2] grid (last index fastest), x_k <- sum_j x_j
/// exp(sign 2 pi i j.k / K); `twiddle` (the Own engine only): exp(2 pi i t / K[d]) per direction.
void mesh_fft3(std::complex<double>* grid, const int K[3], int sign, int threads, FftEngine fft = FftEngine::Eigen,
               const std::vector<std::complex<double>>* twiddle = nullptr);

/// grid := F^-1 [G F grid] (unscaled transforms) for a real K[0] x K[1] x K[2] grid and a real, even
/// G given on the half spectrum K[0] x K[1] x (K[2] / 2 + 1): real-to-complex along the last
/// direction (half the work of complex transforms).
void mesh_convolve_real(double* grid, const double* G, const int K[3], int threads,
                        std::vector<std::complex<double>>* workspace = nullptr);
/// The two halves of mesh_convolve_real: spec (the half spectrum, K[0] x K[1] x (K[2] / 2 + 1)) :=
/// F grid; grid := F^-1 spec (spec is overwritten).
void mesh_forward_real(const double* grid, std::complex<double>* spec, const int K[3], int threads);
void mesh_inverse_real(std::complex<double>* spec, double* grid, const int K[3], int threads);

class ParticleMesh {
public:
    /// `grid`: K per lattice direction, products of 2, 3 and 5; `order`: even B-spline order (4..12).
    ParticleMesh(const double* cell, const double* inv_cell, double volume, const int grid[3], int order, double eta,
                 double four_pi_eps, const double* positions, int64_t n, int threads,
                 FftEngine fft = FftEngine::Eigen);
    /// y += A_rec x.
    void apply(const double* x, double* y) const;
    /// F -= d/dR (u^T A_rec v), W -= d(u^T A_rec v)/d(strain) (row-major 3 x 3).
    void add_derivatives(const double* u, const double* v, double* F, double* W) const;
    /// sum_m G(m) with the B-spline factor removed: the exact reciprocal diagonal (preconditioner).
    double diagonal() const { return diag_; }
    int64_t grid_points() const { return static_cast<int64_t>(K_[0]) * K_[1] * K_[2]; }

private:
    using Grid = std::vector<std::complex<double>>;
    /// g = the charges x spread on the mesh (real parts); `imaginary`: added to the imaginary parts.
    void spread(const double* x, Grid& g, bool imaginary = false) const;
    void fft3(Grid& g, int sign) const;
    /// the mesh index of each spline point of atom i per direction ((base - c) mod K)
    void mesh_indices(int64_t i, int* i0, int* i1, int* i2) const;
    /// k vector of grid index (m1, m2, m3) (wrapped to -K/2..K/2-1)
    void kvector(int64_t idx, double k[3]) const;

    int K_[3] = {0, 0, 0}, p_ = 0, threads_ = 0;
    FftEngine fft_ = FftEngine::Eigen;
    int64_t n_ = 0;
    double eta_ = 0.0, recip_[9] = {0};      ///< rows: 2 pi b_d (reciprocal lattice vectors)
    double dudr_[9] = {0};                  ///< du_d/dR_c = K_d inv_cell[c][d], stored [d][c]
    std::vector<double> G_;                 ///< influence function per grid point
    std::vector<int> base_;                 ///< per atom and direction: first grid index
    std::vector<double> w_;                 ///< per atom, direction, j < p: M_p
    std::vector<double> frac_;              ///< per atom and direction: the offset the weights are of
    std::vector<std::vector<std::complex<double>>> twiddle_;  ///< per direction
    double diag_ = 0.0;
};

}  // namespace hdnnp
