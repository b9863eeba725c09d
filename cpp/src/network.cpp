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

}  // namespace hdnnp
