// Charge equilibration (THEORY.md B.3): the charges Q minimise
//   E_QEq(Q) = sum_i chi_i Q_i + 1/2 sum_i J_i Q_i^2 + 1/2 Q^T A0 Q   subject to sum_i Q_i = Q_tot,
// i.e. solve [A 1; 1^T 0] [Q; mu] = [-chi; Q_tot] with A = A0 + diag(J). The same factorisation
// serves the adjoint solve of the forces (right-hand side dE/dQ, constraint 0) and the charge
// response of training (many right-hand sides).
//
// Two solvers behind one use: QEqDense factorises A once (Eigen: Cholesky when A is positive
// definite, the constraint by its Schur complement, A^-1 1 kept; otherwise LU of the bordered
// matrix), and solve_qeq_cg (electrostatics.hpp) is the matrix-free preconditioned CG with
// warm starts for large structures.
#pragma once
#include <cstdint>
#include <memory>

namespace hdnnp {

class Electrostatics;

class QEqDense {
public:
    /// A = A0 + diag(J) from a dense row-major n x n A0 (e.g. Electrostatics::dense()).
    QEqDense(int64_t n, const double* A0, const double* J);
    /// The same from the operator (builds A0 densely).
    QEqDense(const Electrostatics& op, const double* J);

    int64_t size() const { return n_; }
    /// Whether A was positive definite (Cholesky); else the bordered LU was used.
    bool cholesky() const;
    /// X = the first n rows of [A 1; 1^T 0]^-1 [B; total 1^T] for m right-hand sides
    /// (B, X: n x m row-major; X may alias B). The multipliers go to `mu` (m values) when set.
    void solve(const double* B, int64_t m, double total, double* X, double* mu = nullptr) const;

    struct Impl;  ///< (Eigen's factorisations; opaque)

private:
    int64_t n_ = 0;
    std::shared_ptr<const Impl> impl_;
};

}  // namespace hdnnp
