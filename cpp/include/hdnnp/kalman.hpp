// The Kalman filter's covariance update for data-parallel training (python/hdnnp/training/
// kalman.py, DistributedKalmanFilter): one pass over a process's column block of the symmetric
// covariance P that applies the previous update and computes this update's product P H^T, so
// that each update reads and writes the block once.
#pragma once
#include <cstdint>

namespace hdnnp {

/// A column block [c0, c0 + w) of P's upper triangle: R = P[0:c0, c0:c0+w] (c0 x w) and the
/// diagonal block's upper triangle T (w x w), both column-major. When Y is given (n x SY,
/// row-major), first P <- (P - Y Y^T) / div + q I on the block; then, when h is given (n x S,
/// row-major), x (n x S, row-major) += the block's part of P h (the symmetric product: the block
/// and its transpose below the diagonal).
void kalman_block_pass(int64_t c0, int64_t w, double* R, double* T, const double* Y, int SY, double div, double q,
                       const double* h, double* x, int S);

}  // namespace hdnnp
