// The preconditioned CG of charge equilibration (solve_qeq_cg), written once for one structure
// and for one domain of a decomposition: `sum(v, k)` sums k partial values over the domains (a
// no-op for one structure), n_total is the number of atoms of the whole system. Internal.
#pragma once
#include <cmath>
#include <string>
#include <vector>

#include "hdnnp/electrostatics.hpp"
#include "hdnnp/errors.hpp"

namespace hdnnp {

/// The Jacobi preconditioner of pcg_qeq: y = diag(A)^-1 r (`dinv` given by pcg_qeq).
struct JacobiPreconditioner {
    void operator()(const double* r, double* y, const std::vector<double>& dinv, double) const {
        for (size_t i = 0; i < dinv.size(); ++i) y[i] = dinv[i] * r[i];
    }
};

/// `diag`: diag(A0) of the n local atoms; matvec(v, out): out = A0 v (local atoms). With `A0x` set,
/// A0 x of the solution is written there (and the multiplier computed); otherwise no product
/// follows the last iteration. `precond(r, y, dinv, sum_dinv)`: y = M^-1 r of a symmetric positive
/// definite preconditioner M (collective like the product; dinv = 1 / diag(A), sum_dinv its sum
/// over all atoms).
template <class MatVec, class Sum, class Precond = JacobiPreconditioner>
QEqSolution pcg_qeq(int64_t n, int64_t n_total, const double* diag, MatVec&& A0v, Sum&& sum, const double* J,
                    const double* b, double total, double* x, double tol, int max_iterations,
                    std::vector<double>* A0x = nullptr, Precond&& Minv = Precond()) {
    std::vector<double> dinv(n), r(n), z(n), p(n), q(n), y(n), w(n);
    double sum_dinv = 0.0;
    for (int64_t i = 0; i < n; ++i) {
        const double d = diag[i] + J[i];
        if (!(d > 0.0)) throw InputError("charge equilibration: non-positive diagonal at atom " + std::to_string(i));
        dinv[i] = 1.0 / d;
        sum_dinv += dinv[i];
    }
    sum(&sum_dinv, 1);
    // w = M^-1 1 and its sum: the preconditioned residual is projected onto sum(z) = 0 in the
    // preconditioner's metric, z = M^-1 r - (1^T M^-1 r / 1^T M^-1 1) M^-1 1
    std::vector<double> ones(n, 1.0);
    Minv(ones.data(), w.data(), dinv, sum_dinv);
    double sum_w = 0.0;
    for (int64_t i = 0; i < n; ++i) sum_w += w[i];
    sum(&sum_w, 1);
    if (!(sum_w > 0.0)) throw InputError("charge equilibration: the preconditioner is not positive definite");
    auto matvec = [&](const double* v, double* out) {
        A0v(v, out);
        for (int64_t i = 0; i < n; ++i) out[i] += J[i] * v[i];
    };
    // (s: sum y = 1^T M^-1 res, from the caller's reduction; y = M^-1 res)
    auto precondition = [&](double s, double* out) {
        const double m = s / sum_w;
        for (int64_t i = 0; i < n; ++i) out[i] = y[i] - m * w[i];
    };
    // The residual b - A x tends to mu 1 (mu: the multiplier), which can be much larger than its
    // part in the constraint subspace; it is projected out at every step (z does not depend on
    // it), otherwise the rounding of mu 1 . z swamps r . z and the iteration drifts off the
    // constraint. Returns |P res|, sets y = M^-1 P res and s = sum y (one reduction for both).
    // `known_sum`: sum res when the caller has it from another reduction (else one more reduction).
    auto project = [&](double* res, double& s_dinv, const double* known_sum = nullptr) {
        double mean = 0.0;
        if (known_sum) {
            mean = *known_sum;
        } else {
            for (int64_t i = 0; i < n; ++i) mean += res[i];
            sum(&mean, 1);
        }
        mean /= n_total;
        for (int64_t i = 0; i < n; ++i) res[i] -= mean;
        Minv(res, y.data(), dinv, sum_dinv);
        double t[2] = {0.0, 0.0};
        for (int64_t i = 0; i < n; ++i) {
            t[0] += res[i] * res[i];
            t[1] += y[i];
        }
        sum(t, 2);
        s_dinv = t[1];
        return std::sqrt(t[0]);
    };
    double t[2] = {0.0, 0.0};   // sum x, |b|^2
    for (int64_t i = 0; i < n; ++i) { t[0] += x[i]; t[1] += b[i] * b[i]; }
    sum(t, 2);
    double bnorm = std::sqrt(t[1]);
    if (bnorm == 0.0) bnorm = 1.0;
    for (int64_t i = 0; i < n; ++i) x[i] += (total - t[0]) / n_total;
    matvec(x, q.data());
    for (int64_t i = 0; i < n; ++i) r[i] = b[i] - q[i];
    QEqSolution sol;
    double s_dinv = 0.0;
    sol.residual = project(r.data(), s_dinv) / bnorm;
    precondition(s_dinv, z.data());
    p = z;
    double rz = 0.0;
    for (int64_t i = 0; i < n; ++i) rz += r[i] * z[i];
    sum(&rz, 1);
    // Whether to go on: decided by all domains together (a sum of 0/1 flags is exact in any order,
    // whereas the residual, a floating-point sum, may differ in its last bits between domains).
    // (three reductions per iteration: p.q with sum q, the projection's, r.z with the flag)
    auto go_on = [&]() {
        double go = sol.residual > tol ? 1.0 : 0.0;
        sum(&go, 1);
        return go > 0.0;
    };
    bool more = go_on();
    while (more && sol.iterations < max_iterations) {
        matvec(p.data(), q.data());
        double pq[2] = {0.0, 0.0};   // p.q, sum q
        for (int64_t i = 0; i < n; ++i) { pq[0] += p[i] * q[i]; pq[1] += q[i]; }
        sum(pq, 2);
        if (!(pq[0] > 0.0)) throw InputError("charge equilibration: the QEq matrix is not positive definite");
        const double alpha = rz / pq[0];
        for (int64_t i = 0; i < n; ++i) { x[i] += alpha * p[i]; r[i] -= alpha * q[i]; }
        ++sol.iterations;
        // sum r: r was projected (sum 0), so the new sum is -alpha sum q (the rounding of the
        // old projection is left over, at the level of round-off, and removed by the next)
        const double r_sum = -alpha * pq[1];
        sol.residual = project(r.data(), s_dinv, &r_sum) / bnorm;
        precondition(s_dinv, z.data());
        double rz_go[2] = {0.0, sol.residual > tol ? 1.0 : 0.0};
        for (int64_t i = 0; i < n; ++i) rz_go[0] += r[i] * z[i];
        sum(rz_go, 2);
        const double beta = rz_go[0] / rz;
        rz = rz_go[0];
        for (int64_t i = 0; i < n; ++i) p[i] = z[i] + beta * p[i];
        more = rz_go[1] > 0.0;
    }
    if (more)
        throw InputError("charge equilibration did not converge in " + std::to_string(max_iterations) +
                         " iterations (relative residual " + std::to_string(sol.residual) + ")");
    if (!A0x) return sol;
    // A0 x, and the multiplier: at the solution b - A x = mu 1 (the mean absorbs the remaining residual)
    // (a vector, not a pointer to its data: a domain without atoms has no data but takes part)
    A0x->assign(n, 0.0);
    A0v(x, A0x->data());
    double mu = 0.0;
    for (int64_t i = 0; i < n; ++i) mu += b[i] - (*A0x)[i] - J[i] * x[i];
    sum(&mu, 1);
    sol.lagrange = mu / n_total;
    return sol;
}

}  // namespace hdnnp
