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

private:
    std::vector<Layer> layers_;
    bool normalize_ = false;
};

}  // namespace hdnnp
