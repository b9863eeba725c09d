// A 3rd-generation HDNNP in the core (THEORY.md B.0, B.5; RuNNer's 3G): E = E_short + E_elec.
//  - Charges: q_i = NN_Q,Z(G_i^elec), charge networks on their own symmetry functions
//    (symfunction_electrostatic, global_*_electrostatic, scalinge.data, weightse.ZZZ.data).
//    The charges need not sum to the structure's total charge; a correction maps them onto it:
//    "rescale" (RuNNer's enforce_totcharge 1: positive and negative charges scaled so that each
//    absorbs half of the excess), "shift" (every charge moved by the same amount) or "none".
//  - E_elec: point charges, sum_{i<j} Q_i Q_j f_s(r_ij) / r_ij (screen_electrostatics; f_s = 1
//    without it), by Ewald summation in periodic cells.
//  - E_short: the 2G networks on the short symmetry functions (offsets and the hdnnp_zbl
//    baseline included).
// Forces and virial are exact derivatives of this energy, the charges' dependence on the positions
// included (through the networks and the correction; RuNNer leaves the correction out). No charge
// equilibration, so no linear solve. Immutable after load(); compute() is const and thread-safe.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "hdnnp/domain.hpp"
#include "hdnnp/long_range.hpp"

namespace hdnnp {

enum class ChargeCorrection { None, Rescale, Shift };

class ThirdGenerationPotential {
public:
    /// `correction`: "" (from enforce_totcharge: 1 -> rescale, else none), "none", "rescale", "shift".
    /// Without `short_networks` only the charge part is loaded (no weights.ZZZ.data): compute then
    /// gives the electrostatic energy, forces and virial alone (3G training's second step).
    static std::shared_ptr<const ThirdGenerationPotential> load(const std::string& directory,
                                                                const std::string& correction = "",
                                                                bool short_networks = true);

    const Model& short_model() const { return *short_; }
    const Model& charge_model() const { return *charge_; }
    std::shared_ptr<const Model> short_model_ptr() const { return short_; }
    std::shared_ptr<const Model> charge_model_ptr() const { return charge_; }
    ChargeCorrection correction() const { return correction_; }
    double four_pi_epsilon() const { return es_.four_pi_eps; }
    const std::vector<std::string>& warnings() const { return warnings_; }

    /// One structure (see FourthGenerationPotential::compute); opt.solver is not used. With the
    /// correction "none" the charges of a periodic cell may sum to a nonzero value S: the cell is
    /// then neutralised by a uniform background (energy -pi eta^2 S^2 / (V 4 pi eps0), S a function
    /// of the positions), reported as ChargeResult::charges summing to S.
    void compute(int64_t n, const double* positions, const int32_t* species, const double* cell,
                 double total_charge, const ChargeOptions& opt, ChargeResult& out) const;

    /// The same on one domain of a decomposition (FourthGenerationPotential::compute_domain).
    void compute_domain(const DomainAtoms& atoms, DomainComm& comm, DomainFft* fft, double total_charge,
                        const ChargeOptions& opt, ChargeResult& out) const;
    /// The Ewald parameters `opt` asks for of a periodic system of n_total atoms (rows of `cell`).
    EwaldParameters ewald_parameters(const ChargeOptions& opt, const double* cell, int64_t n_total) const;
    const ElectrostaticsSettings& electrostatics() const { return es_; }

    /// Corrected charges Q of network charges q (n) for a total charge (Q may be null); with
    /// `vjp_in`/`vjp_out` (may be null) also vjp_out = vjp_in^T dQ/dq. On one domain of a
    /// decomposition (`comm` set) q holds the local atoms' charges and the sums run over all domains.
    static void correct(ChargeCorrection mode, int64_t n, const double* q, double total, double* Q,
                        const double* vjp_in = nullptr, double* vjp_out = nullptr, DomainComm* comm = nullptr);

private:
    /// compute() and compute_domain(): dE/dG of the charge networks' descriptors (n atoms, scaled G
    /// at offsets off, written over G) from dE_elec/dQ (modified: the background term added), through
    /// the total-charge correction (sums over the domains when `comm` is set).
    void charge_gradient(int64_t n, const int32_t* species, double* G, const int64_t* off, const double* q_net,
                         double q_tot, double* dEdQ, double e_bg, double S, DomainComm* comm) const;

    std::shared_ptr<const Model> short_, charge_;
    ChargeCorrection correction_ = ChargeCorrection::None;
    bool has_short_ = true;
    ElectrostaticsSettings es_;
    std::vector<std::string> warnings_;
    std::string path_;
};

}  // namespace hdnnp
