// A 4th-generation HDNNP (and CENT, as a mode) in the core (THEORY.md B.0-B.5; n2p2's Mode::evaluateNNP): electronegativity
// networks chi_i = NN_e(G_i) -> charge equilibration with Gaussian charges under the total charge
// -> short networks on [G_i, Q_i] -> E = sum_i E_i^short + E_elec + offsets, forces with one
// adjoint solve, virial. Immutable after load(); compute() is const and thread-safe (warm-start
// charges are the caller's, passed in and out).
//
// Files (n2p2 layout): input.nn with nnp_generation 4 (symfunction_short, global_*_short for the
// short networks on K + 1 inputs, global_*_electrostatic, fixed_gausswidth, screen_electrostatics,
// ewald_truncation_error_method, ewald_prec, four_pi_epsilon or declared units), scaling.data,
// weights.ZZZ.data, weightse.ZZZ.data, hardness.ZZZ.data. Units: the potential's own.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "hdnnp/domain.hpp"
#include "hdnnp/long_range.hpp"
#include "hdnnp/model.hpp"
#include "hdnnp/network.hpp"

namespace hdnnp {

class FourthGenerationPotential {
public:
    static std::shared_ptr<const FourthGenerationPotential> load(const std::string& directory);
    /// CENT (nnp_generation cent): no short networks; the energy is the charge-equilibration
    /// functional at its minimum, sum chi Q + J Q^2/2 + Q^T A0 Q/2 (+ background, offsets), so the
    /// forces need no adjoint solve.
    bool cent() const { return cent_; }

    const Model& descriptors() const { return *desc_; }
    std::shared_ptr<const Model> descriptor_model() const { return desc_; }
    int n_elements() const { return desc_->n_elements(); }
    double four_pi_epsilon() const { return es_.four_pi_eps; }
    const std::vector<double>& hardness() const { return hardness_; }
    const std::vector<double>& gaussian_widths() const { return sigma_; }

    /// One structure: n atoms (positions n x 3, species by the model's element order), `cell`
    /// (rows) or null for a molecule, the total charge. `warm_start` / `warm_adjoint` (n values
    /// each, may be null): the CG solver's starting charges and adjoint vector, replaced by the
    /// solutions (state the caller keeps, e.g. from MD step to step).
    void compute(int64_t n, const double* positions, const int32_t* species, const double* cell,
                 double total_charge, const ChargeOptions& opt, ChargeResult& out,
                 std::vector<double>* warm_start = nullptr, std::vector<double>* warm_adjoint = nullptr) const;

    /// The same on one domain of a decomposition (domain.hpp): the local atoms' charges, energies
    /// (this domain's share of the energy, electrostatic energy and virial; the domains' shares sum
    /// to the system's) and the forces on local and ghost atoms (the ghosts' go to their owners
    /// with the caller's force communication). Periodic systems need opt.fixed_ewald (the
    /// parameters held for a run: ewald_parameters()); `fft` serves a particle mesh.
    void compute_domain(const DomainAtoms& atoms, DomainComm& comm, DomainFft* fft, double total_charge,
                        const ChargeOptions& opt, ChargeResult& out, std::vector<double>* warm_start = nullptr,
                        std::vector<double>* warm_adjoint = nullptr) const;
    /// The Ewald parameters `opt` asks for of a periodic system of n_total atoms (rows of `cell`),
    /// for the matrix-free products (a particle mesh unless n2p2's parameters are asked for).
    EwaldParameters ewald_parameters(const ChargeOptions& opt, const double* cell, int64_t n_total) const;
    const ElectrostaticsSettings& electrostatics() const { return es_; }

private:
    /// The network passes of compute() and compute_domain() over n atoms (scaled descriptors G at
    /// offsets off): electronegativities; short energies on [G, Q] (their dE/dQ when `grads`); and
    /// dE/dG (raw G) of E = sum_i E_short,i + lam_i chi_i (CENT: Q_i chi_i), written over G.
    void electronegativities(int64_t n, const int32_t* species, const double* G, const int64_t* off,
                             std::vector<double>& chi) const;
    void short_energies(int64_t n, const int32_t* species, const double* G, const int64_t* off, const double* Q,
                        bool grads, std::vector<double>& e_short, std::vector<double>& dE_dQ) const;
    void energy_gradient(int64_t n, const int32_t* species, double* G, const int64_t* off, const double* Q,
                         const double* lam) const;

    std::shared_ptr<const Model> desc_;
    std::vector<NeuralNetwork> elec_, short_;
    bool cent_ = false;
    std::vector<double> hardness_, sigma_;
    ElectrostaticsSettings es_;
    std::string path_;
};

}  // namespace hdnnp
