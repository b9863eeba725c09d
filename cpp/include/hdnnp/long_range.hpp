// What the generations with charges share (3G, 4G, CENT): the electrostatics keywords of
// input.nn, the choice of Ewald parameters for a structure, and the options and result of one
// evaluation. Units are the potential's own.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "hdnnp/electrostatics.hpp"
#include "hdnnp/ewald_parameters.hpp"
#include "hdnnp/model.hpp"
#include "hdnnp/settings.hpp"

namespace hdnnp {

struct ChargeOptions {
    /// Ewald parameters: n2p2's (ewald_tolerance <= 0) or an absolute energy tolerance.
    double ewald_tolerance = 0.0;
    /// "dense" (QEqDense, factorised once for charges and adjoint) or "cg" (matrix-free PCG;
    /// with a tolerance-chosen Ewald the reciprocal part runs on a particle mesh). 3G has no
    /// charge equilibration: its energies are matrix-free products (as "cg").
    std::string solver = "dense";
    double cg_tolerance = 1e-10;
    /// Use these Ewald parameters (periodic structures) instead of choosing them: e.g. held fixed
    /// along a trajectory or a finite difference. (mesh[0] > 0: particle mesh; else structure factors.)
    bool fixed_ewald = false;
    EwaldParameters ewald;
    /// A periodic cell with a nonzero total charge is neutralised by a uniform background (its
    /// energy -pi eta^2 Q^2 / (V 4 pi eps0) included) only when this is set; else an error.
    bool background = false;
    int cg_max_iterations = 1000;
    /// The CG's preconditioner on a domain with a particle mesh (compute_domain): "mesh" (the
    /// diagonal and the mesh's long waves, DomainElectrostatics::precondition) or "jacobi".
    std::string cg_preconditioner = "mesh";
    bool forces = true;
    bool virial = true;
    /// Per-atom virials (compute_domain): ChargeResult::atom_virials.
    bool atom_virial = false;
    int threads = 0;
};

struct ChargeResult {
    double energy = 0.0;                 ///< offsets, baseline and a charged cell's background included
    std::vector<double> atom_energies;   ///< n, sum = energy (the electrostatic energy shared as Q_i dE/dQ_i / 2)
    double electrostatic_energy = 0.0;   ///< E_elec (+ background)
    double baseline_energy = 0.0;        ///< the hdnnp_zbl pair baseline (included in energy)
    std::vector<double> charges;         ///< n
    std::vector<double> network_charges; ///< 3G: the charge networks' output before the correction
    std::vector<double> adjoint;         ///< n: the adjoint vector of the forces (4G, with forces/virial)
    std::vector<double> electronegativities;   ///< 4G, CENT
    std::vector<double> atom_energies_short;   ///< short networks (4G, 3G)
    std::vector<double> forces;          ///< n x 3
    double virial[9] = {0};
    /// n_local x 9 (opt.atom_virial, compute_domain); their sum over all atoms is the virial. The
    /// networks' terms by centre (as ComputeResult::atom_virials); an electrostatic pair term
    /// u_i A0_ij v_j (u = Q/2 + lambda, v = Q) is atom i's, the reciprocal space's likewise: atom i
    /// has u_i d(A0 v)_i/d(strain), i.e. u_i times the strain derivative of the potential of v at
    /// i, which is the same for any Ewald splitting; a charged cell's background shared evenly.
    std::vector<double> atom_virials;
    double dipole[3] = {0, 0, 0};        ///< sum Q_i r_i (molecules)
    EwaldParameters ewald;               ///< (periodic structures)
    int64_t n_kvectors = 0, mesh_points = 0;
    std::vector<int> cg_iterations;      ///< charges, adjoint (solver "cg")
    std::vector<Extrapolation> extrapolations;          ///< the (short / electronegativity) descriptors
    std::vector<Extrapolation> charge_extrapolations;   ///< 3G: the charge networks' descriptors
    std::vector<int64_t> extrapolating_atoms;           ///< per atom, out-of-range values (max over the sets)
};

/// The electrostatics keywords of a 3G/4G/CENT input.nn.
struct ElectrostaticsSettings {
    double four_pi_eps = 1.0;
    Screening screening;
    int ewald_method = 0;
    std::vector<double> ewald_prec{1e-6};

    /// From input.nn (`nn` names it in errors). 4 pi eps0 is derived from the declared units
    /// (1 for Bohr/Ha); a four_pi_epsilon line that contradicts them is an error.
    static ElectrostaticsSettings read(const Settings& S, const std::string& nn);

    /// The Ewald parameters of a periodic structure (rows of `cell`) as `opt` asks: fixed, n2p2's,
    /// or from the energy tolerance (particle mesh when `matrix_free`).
    EwaldParameters choose(const ChargeOptions& opt, const double* cell, int64_t n, double max_sigma,
                           bool matrix_free) const;

    /// A periodic cell carrying `q` e without opt.background: an error naming the potential.
    static void check_charged_cell(bool periodic, double q, const ChargeOptions& opt, const std::string& nn);

    /// The electrostatics of a structure (Gaussian widths `sigma` per atom; zeros: point charges)
    /// with the Ewald parameters `choose` gives (periodic), written to `ewald` (else reset).
    ElectrostaticsSetup setup(const ChargeOptions& opt, int64_t n, const double* positions, const double* cell,
                              const double* sigma, double max_sigma, bool matrix_free, EwaldParameters& ewald) const;

    /// Energy of the uniform background of a charged periodic cell, -pi eta^2 q^2 / (V 4 pi eps0).
    double background_energy(double q, double eta, double volume) const {
        return -3.14159265358979323846 * eta * eta * q * q / (volume * four_pi_eps);
    }
};

/// Neumaier's compensated sum: energies of many atoms without the round-off of a running sum
/// (central differences of the energy resolve 1e-13 relative).
struct CompensatedSum {
    double s = 0.0, c = 0.0;
    void add(double x) {
        const double t = s + x;
        c += (s >= 0 ? s : -s) >= (x >= 0 ? x : -x) ? (s - t) + x : (x - t) + s;
        s = t;
    }
    double value() const { return s + c; }
};

/// A structure's neighbour list within a model's cutoff and its scaled symmetry functions (the
/// networks' inputs; `res.descriptors`, `res.descriptor_offsets`, extrapolation record).
struct DescriptorPass {
    NeighborList nl;
    AtomsView atoms;
    ComputeResult res;
    void run(const Model& M, int64_t n, const double* positions, const int32_t* species, const double* cell,
             int threads);
    /// The same with a full neighbour list at hand (within M's cutoff, e.g. full_from_half).
    void run(const Model& M, NeighborList list, int64_t n, const double* positions, const int32_t* species,
             int threads);
    /// The same for atoms with their neighbour list at hand (e.g. LAMMPS's local and ghost atoms).
    void run(const Model& M, const AtomsView& view, int threads);
    /// Forces and virial of E = sum_i w_i . G_i (w: dE/dG per raw G, e.g. the descriptors array
    /// overwritten) through the model's force pass.
    void forces(const Model& M, const double* w, int threads, ComputeResult& out, bool atom_virial = false) const;
};

/// compute_domain's per-atom virials (n local atoms' rows of 9, the networks' and electrostatics'
/// terms in `W`): plus a charged cell's background share (its energy per atom on the diagonal)
/// and a second network pass's (e.g. the short networks' or the baseline's) rows.
void finish_atom_virials(int64_t n, double background_per_atom, const std::vector<double>* more,
                         std::vector<double>& W);

/// Check species indices of n atoms against `n_elements` (errors name the atom).
void check_species(int64_t n, const int32_t* species, int n_elements);

}  // namespace hdnnp
