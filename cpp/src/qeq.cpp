#include "hdnnp/qeq.hpp"

#include <Eigen/Cholesky>
#include <Eigen/Dense>
#include <Eigen/LU>
#include <stdexcept>
#include <vector>

#include "hdnnp/electrostatics.hpp"
#include "hdnnp/errors.hpp"

namespace hdnnp {

using RowMatrix = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

struct QEqDense::Impl {
    bool spd = false;
    Eigen::LLT<Eigen::MatrixXd> llt;            // A = L L^T
    Eigen::VectorXd a1;                         // A^-1 1
    double s = 0.0;                             // 1^T A^-1 1
    Eigen::PartialPivLU<Eigen::MatrixXd> lu;    // [A 1; 1^T 0] when A is not positive definite
};

namespace {
std::shared_ptr<const QEqDense::Impl> factorise(int64_t n, const double* A0, const double* J) {
    if (n < 1) throw InputError("charge equilibration needs at least one atom");
    auto impl = std::make_shared<QEqDense::Impl>();
    Eigen::MatrixXd A = Eigen::Map<const RowMatrix>(A0, n, n);
    for (int64_t i = 0; i < n; ++i) A(i, i) += J[i];
    impl->llt.compute(A);
    if (impl->llt.info() == Eigen::Success) {
        impl->spd = true;
        impl->a1 = impl->llt.solve(Eigen::VectorXd::Ones(n));
        impl->s = impl->a1.sum();
        if (impl->s > 0.0) return impl;
    }
    impl->spd = false;
    Eigen::MatrixXd K(n + 1, n + 1);
    K.topLeftCorner(n, n) = A;
    K.col(n).head(n).setOnes();
    K.row(n).head(n).setOnes();
    K(n, n) = 0.0;
    impl->lu.compute(K);
    return impl;
}
}  // namespace

QEqDense::QEqDense(int64_t n, const double* A0, const double* J) : n_(n), impl_(factorise(n, A0, J)) {}

QEqDense::QEqDense(const Electrostatics& op, const double* J) : n_(op.size()) {
    std::vector<double> A0(static_cast<size_t>(n_) * n_);
    op.dense(A0.data());
    impl_ = factorise(n_, A0.data(), J);
}

bool QEqDense::cholesky() const { return impl_->spd; }

void QEqDense::solve(const double* B, int64_t m, double total, double* X, double* mu) const {
    const int64_t n = n_;
    if (m < 1) return;
    Eigen::Map<const RowMatrix> b(B, n, m);
    if (impl_->spd) {
        // x = A^-1 b - mu A^-1 1 with mu = (1^T A^-1 b - total) / (1^T A^-1 1)
        Eigen::MatrixXd y = impl_->llt.solve(Eigen::MatrixXd(b));
        Eigen::Map<RowMatrix> x(X, n, m);
        for (int64_t c = 0; c < m; ++c) {
            const double mc = (y.col(c).sum() - total) / impl_->s;
            x.col(c) = y.col(c) - mc * impl_->a1;
            if (mu) mu[c] = mc;
        }
        return;
    }
    Eigen::MatrixXd rhs(n + 1, m);
    rhs.topRows(n) = b;
    rhs.row(n).setConstant(total);
    Eigen::MatrixXd sol = impl_->lu.solve(rhs);
    Eigen::Map<RowMatrix> x(X, n, m);
    x = sol.topRows(n);
    if (mu)
        for (int64_t c = 0; c < m; ++c) mu[c] = sol(n, c);
}

}  // namespace hdnnp
