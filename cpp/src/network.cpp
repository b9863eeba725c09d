#include "hdnnp/network.hpp"

#include <cmath>

#include "hdnnp/errors.hpp"

namespace hdnnp {
namespace {
// n2p2 clamps the exponent of logistic/softplus at |x| > 35 (EXP_LIMIT).
constexpr double kExpLimit = 35.0;

inline void activate(Activation a, double x, double& f, double& df) {
    f = 0.0;
    df = 0.0;
    switch (a) {
        case Activation::Identity: f = x; df = 1.0; return;
        case Activation::Tanh: f = std::tanh(x); df = 1.0 - f * f; return;
        case Activation::Logistic:
            if (x > kExpLimit) { f = 1.0; df = 0.0; }
            else if (x < -kExpLimit) { f = 0.0; df = 0.0; }
            else { f = 1.0 / (1.0 + std::exp(-x)); df = f * (1.0 - f); }
            return;
        case Activation::Softplus:
            if (x > kExpLimit) { f = x; df = 1.0; }
            else if (x < -kExpLimit) { f = 0.0; df = 0.0; }
            else { const double e = std::exp(x); f = std::log(1.0 + e); df = e / (1.0 + e); }
            return;
        case Activation::Relu: f = x > 0.0 ? x : 0.0; df = x > 0.0 ? 1.0 : 0.0; return;
        case Activation::Gaussian: f = std::exp(-0.5 * x * x); df = -x * f; return;
        case Activation::Cos: f = std::cos(x); df = -std::sin(x); return;
        case Activation::RevLogistic:
            if (x > kExpLimit) { f = 0.0; df = 0.0; }
            else if (x < -kExpLimit) { f = 1.0; df = 0.0; }
            else { const double s = 1.0 / (1.0 + std::exp(-x)); f = 1.0 - s; df = -s * (1.0 - s); }
            return;
        case Activation::Exp: f = std::exp(-x); df = -f; return;
        case Activation::Harmonic: f = x * x; df = 2.0 * x; return;
    }
}
/// f, f' and f'' (training needs the second derivative for force losses).
inline void activate2(Activation a, double x, double& f, double& df, double& d2f) {
    activate(a, x, f, df);
    switch (a) {
        case Activation::Identity: case Activation::Relu: d2f = 0.0; return;
        case Activation::Tanh: d2f = -2.0 * f * df; return;
        case Activation::Logistic: d2f = df * (1.0 - 2.0 * f); return;
        case Activation::Softplus: d2f = df * (1.0 - df); return;  // df is the logistic here
        case Activation::Gaussian: d2f = (x * x - 1.0) * f; return;
        case Activation::Cos: d2f = -f; return;
        case Activation::RevLogistic: d2f = df * (1.0 - 2.0 * (1.0 - f)); return;  // s = 1 - f
        case Activation::Exp: d2f = f; return;
        case Activation::Harmonic: d2f = 2.0; return;
    }
    d2f = 0.0;
}
/// out (n x n_in) = delta (n x n_out) W: back through one layer's weights.
void back_through(const Layer& Ly, const std::vector<double>& delta, int n, std::vector<double>& out) {
    const size_t no = Ly.n_out, ni = Ly.n_in;
    out.assign(static_cast<size_t>(n) * ni, 0.0);
    for (int i = 0; i < n; ++i)
        for (size_t e = 0; e < no; ++e) {
            const double d = delta[static_cast<size_t>(i) * no + e];
            const double* w = &Ly.W[e * ni];
            double* p = &out[static_cast<size_t>(i) * ni];
            for (size_t s = 0; s < ni; ++s) p[s] += d * w[s];
        }
}

/// gW[s * n_out + e] += sum_i delta[i, e] x[i, s] (n2p2 order: source outer, target inner).
void add_outer(double* gW, const std::vector<double>& delta, const double* x, int n, size_t no, size_t ni) {
    for (int i = 0; i < n; ++i) {
        const double* xi = x + static_cast<size_t>(i) * ni;
        const double* di = &delta[static_cast<size_t>(i) * no];
        for (size_t s = 0; s < ni; ++s)
            for (size_t e = 0; e < no; ++e) gW[s * no + e] += di[e] * xi[s];
    }
}
}  // namespace

Activation activation_from_letter(const std::string& l, const std::string& where) {
    if (l == "l") return Activation::Identity;
    if (l == "t") return Activation::Tanh;
    if (l == "s") return Activation::Logistic;
    if (l == "p") return Activation::Softplus;
    if (l == "r") return Activation::Relu;
    if (l == "g") return Activation::Gaussian;
    if (l == "c") return Activation::Cos;
    if (l == "S") return Activation::RevLogistic;
    if (l == "e") return Activation::Exp;
    if (l == "h") return Activation::Harmonic;
    throw ConfigError(where + ": unknown activation function '" + l + "' (known: l t s p r g c S e h)");
}

char activation_letter(Activation a) {
    static const char letters[] = {'l', 't', 's', 'p', 'r', 'g', 'c', 'S', 'e', 'h'};
    return letters[static_cast<int>(a)];
}

NeuralNetwork::NeuralNetwork(const std::vector<int>& sizes, const std::vector<Activation>& acts,
                             bool normalize)
    : normalize_(normalize) {
    if (sizes.size() < 2 || acts.size() != sizes.size() - 1)
        throw ConfigError("network needs at least input and output layer and one activation per layer");
    for (size_t l = 1; l < sizes.size(); ++l) {
        if (sizes[l] < 1 || sizes[l - 1] < 1) throw ConfigError("network layers must have >= 1 neuron");
        Layer L;
        L.n_in = sizes[l - 1];
        L.n_out = sizes[l];
        L.W.assign(static_cast<size_t>(L.n_in) * L.n_out, 0.0);
        L.b.assign(L.n_out, 0.0);
        L.act = acts[l - 1];
        layers_.push_back(std::move(L));
    }
}

std::vector<int> NeuralNetwork::sizes() const {
    std::vector<int> s;
    if (layers_.empty()) return s;
    s.push_back(layers_.front().n_in);
    for (const auto& L : layers_) s.push_back(L.n_out);
    return s;
}

int NeuralNetwork::n_weights() const {
    int n = 0;
    for (const auto& L : layers_) n += L.n_out * (L.n_in + 1);
    return n;
}

void NeuralNetwork::set_parameters(const std::vector<double>& p) {
    if (static_cast<int>(p.size()) != n_weights())
        throw ModelFileError("expected " + std::to_string(n_weights()) + " network parameters, got " +
                             std::to_string(p.size()));
    size_t k = 0;
    for (auto& L : layers_) {
        for (int s = 0; s < L.n_in; ++s)
            for (int e = 0; e < L.n_out; ++e) L.W[static_cast<size_t>(e) * L.n_in + s] = p[k++];
        for (int e = 0; e < L.n_out; ++e) L.b[e] = p[k++];
    }
}

std::vector<double> NeuralNetwork::parameters() const {
    std::vector<double> p;
    p.reserve(n_weights());
    for (const auto& L : layers_) {
        for (int s = 0; s < L.n_in; ++s)
            for (int e = 0; e < L.n_out; ++e) p.push_back(L.W[static_cast<size_t>(e) * L.n_in + s]);
        for (int e = 0; e < L.n_out; ++e) p.push_back(L.b[e]);
    }
    return p;
}

double NeuralNetwork::evaluate(const double* x, double* dx, NetworkWorkspace& ws) const {
    const size_t nl = layers_.size();
    if (ws.y.size() < nl) { ws.y.resize(nl); ws.dy.resize(nl); }
    const double* in = x;
    for (size_t l = 0; l < nl; ++l) {
        const Layer& L = layers_[l];
        auto& y = ws.y[l];
        auto& dy = ws.dy[l];
        y.resize(L.n_out);
        dy.resize(L.n_out);
        const double inv = normalize_ ? 1.0 / L.n_in : 1.0;
        for (int e = 0; e < L.n_out; ++e) {
            const double* w = &L.W[static_cast<size_t>(e) * L.n_in];
            double z = L.b[e];
            for (int s = 0; s < L.n_in; ++s) z += w[s] * in[s];
            double f, df;
            activate(L.act, z * inv, f, df);
            y[e] = f;
            dy[e] = df * inv;
        }
        in = y.data();
    }
    const double out = ws.y[nl - 1][0];
    if (!dx) return out;
    // Backward pass: delta^l = dE/dz^l.
    auto& delta = ws.delta;
    auto& next = ws.delta2;
    delta.assign(1, ws.dy[nl - 1][0]);
    for (size_t l = nl; l-- > 0;) {
        const Layer& L = layers_[l];
        next.assign(L.n_in, 0.0);
        for (int e = 0; e < L.n_out; ++e) {
            const double d = delta[e];
            const double* w = &L.W[static_cast<size_t>(e) * L.n_in];
            for (int s = 0; s < L.n_in; ++s) next[s] += d * w[s];
        }
        if (l > 0) {
            const auto& dyp = ws.dy[l - 1];
            for (int s = 0; s < L.n_in; ++s) next[s] *= dyp[s];
        }
        delta.swap(next);
    }
    for (int s = 0; s < layers_[0].n_in; ++s) dx[s] = delta[s];
    return out;
}

void NeuralNetwork::forward_batch(const double* X, int n, double* E, double* g, BatchCache& c) const {
    const size_t L = layers_.size();
    c.n = n;
    c.y.resize(L + 1);
    c.d1.resize(L + 1);
    c.d2.resize(L + 1);
    c.y[0].assign(X, X + static_cast<size_t>(n) * n_inputs());
    for (size_t l = 0; l < L; ++l) {
        const Layer& Ly = layers_[l];
        const double inv = normalize_ ? 1.0 / Ly.n_in : 1.0;
        auto& y = c.y[l + 1];
        auto& d1 = c.d1[l + 1];
        auto& d2 = c.d2[l + 1];
        y.resize(static_cast<size_t>(n) * Ly.n_out);
        d1.resize(y.size());
        d2.resize(y.size());
        const double* in = c.y[l].data();
        for (int i = 0; i < n; ++i) {
            const double* x = in + static_cast<size_t>(i) * Ly.n_in;
            for (int e = 0; e < Ly.n_out; ++e) {
                const double* w = &Ly.W[static_cast<size_t>(e) * Ly.n_in];
                double u = Ly.b[e];
                for (int s = 0; s < Ly.n_in; ++s) u += w[s] * x[s];
                double f, df, ddf;
                activate2(Ly.act, u * inv, f, df, ddf);
                const size_t k = static_cast<size_t>(i) * Ly.n_out + e;
                y[k] = f;
                d1[k] = df * inv;
                d2[k] = ddf * inv * inv;
            }
        }
    }
    for (int i = 0; i < n; ++i) E[i] = c.y[L][i];
    if (!g) return;
    // dE/du of the last layer, then back through the layers
    std::vector<double> delta(c.d1[L]), prev;
    for (size_t l = L; l-- > 0;) {
        back_through(layers_[l], delta, n, prev);
        if (l > 0)
            for (size_t k = 0; k < prev.size(); ++k) prev[k] *= c.d1[l][k];
        delta.swap(prev);
    }
    std::copy(delta.begin(), delta.end(), g);
}

void NeuralNetwork::loss_gradient(const BatchCache& c, const double* a, const double* V, double* grad) const {
    const size_t L = layers_.size();
    const int n = c.n;
    // offsets of each layer's block in n2p2 order
    std::vector<size_t> off(L + 1, 0);
    for (size_t l = 0; l < L; ++l) off[l + 1] = off[l] + static_cast<size_t>(layers_[l].n_out) * (layers_[l].n_in + 1);
    std::fill(grad, grad + off[L], 0.0);
    // forward-mode tangent along V: udot_l and ydot_l (ydot_0 = V)
    std::vector<std::vector<double>> ydot(L + 1), udot(L + 1);
    if (V) {
        ydot[0].assign(V, V + static_cast<size_t>(n) * n_inputs());
        for (size_t l = 0; l < L; ++l) {
            const Layer& Ly = layers_[l];
            udot[l + 1].assign(static_cast<size_t>(n) * Ly.n_out, 0.0);
            ydot[l + 1].resize(udot[l + 1].size());
            for (int i = 0; i < n; ++i) {
                const double* x = &ydot[l][static_cast<size_t>(i) * Ly.n_in];
                for (int e = 0; e < Ly.n_out; ++e) {
                    const double* w = &Ly.W[static_cast<size_t>(e) * Ly.n_in];
                    double u = 0.0;
                    for (int s = 0; s < Ly.n_in; ++s) u += w[s] * x[s];
                    const size_t k = static_cast<size_t>(i) * Ly.n_out + e;
                    udot[l + 1][k] = u;
                    ydot[l + 1][k] = c.d1[l + 1][k] * u;
                }
            }
        }
    }
    // reverse pass: ybar = dObj/dy_l, ydotbar = dObj/dydot_l
    std::vector<double> ybar(static_cast<size_t>(n), 0.0), ydotbar, ubar, udotbar, next;
    if (a) std::copy(a, a + n, ybar.begin());
    if (V) ydotbar.assign(static_cast<size_t>(n), 1.0);
    for (size_t l = L; l-- > 0;) {
        const Layer& Ly = layers_[l];
        const size_t no = Ly.n_out, ni = Ly.n_in;
        const auto& d1 = c.d1[l + 1];
        const auto& d2 = c.d2[l + 1];
        ubar.resize(static_cast<size_t>(n) * no);
        for (size_t k = 0; k < ubar.size(); ++k) ubar[k] = d1[k] * ybar[k];
        double* gW = grad + off[l];           // gW[s * no + e]
        double* gb = grad + off[l] + no * ni;
        if (V) {
            udotbar.resize(ubar.size());
            for (size_t k = 0; k < ubar.size(); ++k) {
                udotbar[k] = d1[k] * ydotbar[k];
                ubar[k] += d2[k] * udot[l + 1][k] * ydotbar[k];
            }
            add_outer(gW, udotbar, ydot[l].data(), n, no, ni);
            if (l > 0) {
                back_through(Ly, udotbar, n, next);
                ydotbar.swap(next);
            }
        }
        add_outer(gW, ubar, c.y[l].data(), n, no, ni);
        for (int i = 0; i < n; ++i)
            for (size_t e = 0; e < no; ++e) gb[e] += ubar[static_cast<size_t>(i) * no + e];
        if (l > 0) {
            back_through(Ly, ubar, n, next);
            ybar.swap(next);
        }
    }
}

}  // namespace hdnnp
