// Feed-forward atomic neural network (n2p2 NeuralNetwork semantics).
//   y^l = f_l( (b^l + W^l y^{l-1}) / n_{l-1}^{[normalize_nodes]} )
// Weight file order (n2p2 setConnections): for each layer l, all weights with the
// source neuron in the outer loop and the target neuron in the inner loop, then the
// biases of layer l.
#pragma once
#include <string>
#include <vector>

namespace hdnnp {

enum class Activation { Identity, Tanh, Logistic, Softplus, Relu, Gaussian, Cos, RevLogistic, Exp, Harmonic };

/// n2p2 activation letter (l t s p r g c S e h) -> Activation; throws ConfigError.
Activation activation_from_letter(const std::string& letter, const std::string& where);
char activation_letter(Activation a);

struct Layer {
    int n_in = 0, n_out = 0;
    std::vector<double> W;  ///< n_out x n_in, row-major
    std::vector<double> b;  ///< n_out
    Activation act = Activation::Identity;
};

/// Scratch of one evaluation (grow-only, one per thread).
struct NetworkWorkspace {
    std::vector<std::vector<double>> y, dy;  ///< activations and f'(z) per layer
    std::vector<double> delta, delta2;
};

/// Values of a batched evaluation kept for NeuralNetwork::loss_gradient (training).
struct BatchCache {
    int n = 0;
    std::vector<std::vector<double>> y;        ///< layer l = 0..L: n x size_l (y[0] = inputs)
    std::vector<std::vector<double>> d1, d2;   ///< layer l = 1..L: f' and f'' w.r.t. b + W y
};

class NeuralNetwork {
public:
    NeuralNetwork() = default;
    /// layer sizes including input and output, one activation per non-input layer.
    NeuralNetwork(const std::vector<int>& sizes, const std::vector<Activation>& acts, bool normalize);

    int n_inputs() const { return layers_.empty() ? 0 : layers_.front().n_in; }
    int n_weights() const;  ///< weights + biases
    const std::vector<Layer>& layers() const { return layers_; }
    bool normalize() const { return normalize_; }
    std::vector<int> sizes() const;

    /// Set from / export to n2p2 file order.
    void set_parameters(const std::vector<double>& p);
    std::vector<double> parameters() const;

    /// Output of the network; if dx != nullptr also d(output)/d(input) into dx.
    double evaluate(const double* x, double* dx, NetworkWorkspace& ws) const;

    /// Training: outputs E (n) of n inputs X (n x n_inputs, row-major) and, if g is not null,
    /// dE/dx (n x n_inputs); keeps what loss_gradient() needs in `cache`.
    void forward_batch(const double* X, int n, double* E, double* g, BatchCache& cache) const;
    /// grad (n_weights, n2p2 order) = d/dw [sum_i a_i E_i + sum_i (dE_i/dx_i) . V_i] for the
    /// batch in `cache` (a: n or null, V: n x n_inputs or null): one reverse pass over the
    /// forward and the forward-mode tangent along V, so force losses need no Jacobian rows.
    void loss_gradient(const BatchCache& cache, const double* a, const double* V, double* grad) const;

private:
    std::vector<Layer> layers_;
    bool normalize_ = false;
};

}  // namespace hdnnp
