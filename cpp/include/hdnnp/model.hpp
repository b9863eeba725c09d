// A loaded 2G HDNNP: settings, symmetry functions, scaling and element networks.
// A Model is immutable after load() and safe to use from many threads; several can
// live in one process (committees, two pair styles).
//
// Units: positions, cells, energies and forces at this API are in the potential's
// own ("native") units, i.e. the units of its training data (n2p2 water: Bohr and
// Hartree). Normalised potentials (mean_energy / conv_energy / conv_length) are
// handled inside: x* = x conv_length, E = E*/conv_energy + N mean_energy + offsets.
#pragma once
#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "hdnnp/baseline.hpp"
#include "hdnnp/descriptors.hpp"
#include "hdnnp/network.hpp"
#include "hdnnp/neighbor.hpp"
#include "hdnnp/settings.hpp"

namespace hdnnp {

enum class ScalingMode { None = 0, Scale = 1, Center = 2, ScaleCenter = 3, ScaleSigma = 4 };

struct ElementModel {
    std::string symbol;
    int z = 0;
    double atom_energy = 0.0;       ///< offset added per atom (native energy units)
    ElementDescriptor descriptor;
    NeuralNetwork network;
    std::vector<double> g_min, g_max, g_mean, g_sigma;  ///< from scaling.data
    std::vector<double> factor, shift;  ///< scaled = s_min + factor * (G - shift)
};

/// Atoms handed to compute(): n_all = local + ghost atoms; neighbours of the first
/// `n_local` atoms index into all n_all.
struct AtomsView {
    int64_t n_local = 0, n_all = 0;
    const double* positions = nullptr;  ///< n_all x 3, native length units
    const int32_t* species = nullptr;   ///< n_all model element indices; -1 = ignored atom
    double length_factor = 1.0;         ///< positions are in native length units times 1/this
    NeighborView neighbors;             ///< over the n_local centres
};

struct ComputeOptions {
    bool forces = true;
    bool virial = true;
    bool descriptors = false;         ///< return G (raw, or scaled if scaled_descriptors)
    bool scaled_descriptors = false;
    bool atom_virial = false;         ///< per-centre virial (centre convention, see ComputeResult)
    bool member_forces = false;       ///< committees: forces of every member (ComputeResult::member_forces)
    int threads = 0;                  ///< 0 = OpenMP default
    double min_distance = 1e-6;       ///< pairs closer than this (native units) are an error
    /// Add the potential's pair baseline (hdnnp_zbl), if it has one. Not with dEdG: 3G/4G/CENT
    /// add it themselves (PairBaseline::compute).
    bool baseline = true;
    /// When set: dE/dG per centre (raw G, native energy units; centres concatenated in atom
    /// order, K_i values each) replaces the networks. Forces and virial are then those of
    /// E = sum_i dE/dG_i . G_i (used by 3G/4G, whose networks also see the charges); the
    /// energies are zero, and no descriptors or extrapolation record are computed (the caller
    /// has them from its value pass). A committee uses its first member's symmetry functions.
    const double* dEdG = nullptr;
};

/// One symmetry function value outside the [min, max] range of scaling.data.
struct Extrapolation {
    int64_t atom;
    int sf;          ///< index in the element's sorted SF list
    double value, min, max;
};

struct ComputeResult {
    double energy = 0.0;                 ///< native units, offsets included
    std::vector<double> atom_energies;   ///< n_local; sum = energy (0 for non-centres)
    std::vector<double> forces;          ///< n_all x 3 (ghost forces for reverse comm);
                                         ///< native energy per input length unit
    std::vector<double> atom_virials;    ///< n_local x 9: -sum_j r_ij (x) dE_i/dr_j; sum = virial
    double virial[9] = {0};              ///< W = sum_pairs r_ij (x) f_ij, native energy
    std::vector<Extrapolation> extrapolations;
    std::vector<int64_t> extrapolating_atoms;  ///< per local atom: number of SFs out of range
    std::vector<double> descriptors;           ///< flattened, see descriptor_offsets
    std::vector<int64_t> descriptor_offsets;   ///< n_local + 1
    // Committees (a single Model fills these as a committee of one):
    std::vector<double> member_energies;       ///< per member
    std::vector<double> member_forces;         ///< members x n_all x 3, with ComputeOptions::member_forces
};

/// Symmetry functions and their full derivatives, for training (forces, stress): per centre
/// the raw G and, per neighbour pair within the centre's cutoff, dG/d(r_j + shift - r_i).
/// Energies of a network on G then give forces F_a = -sum_pairs (delta_{a j} - delta_{a i})
/// J_p^T dE_i/dG_i and the virial W = -sum_pairs d_p (x) J_p^T dE_i/dG_i.
struct DescriptorJacobian {
    std::vector<double> G;                ///< raw G, atoms concatenated (g_offsets)
    std::vector<int64_t> g_offsets;       ///< n_local + 1
    std::vector<int64_t> pair_offsets;    ///< n_local + 1; pairs of centre i
    std::vector<int32_t> pair_atom;       ///< neighbour atom j of each pair
    std::vector<double> pair_d;           ///< 3 per pair: r_j + shift - r_i (input length units)
    std::vector<double> dG;               ///< per pair K_i x 3, row-major: dG_k / d(d_c) per input length
    std::vector<int64_t> dg_offsets;      ///< pairs + 1: start of each pair's block in dG
};

/// Set `net` from an n2p2 weight file (the first number of every non-comment line, in n2p2's
/// order), checking that the file exists, that every value is a finite number and that their
/// count fits the architecture; errors name the file (and line) and `what` ("element O").
void load_network_weights(NeuralNetwork& net, const std::string& path, const std::string& what);
/// The first number of every non-comment line of a model file (e.g. hardness.ZZZ.data); a
/// missing file is an error naming `what`.
std::vector<double> read_number_column(const std::string& path, const std::string& what);

/// Which element networks of input.nn a Model holds.
enum class NetworkSet {
    /// symfunction_short, global_*_short, scale_*_short, scaling.data, weights.ZZZ.data,
    /// atom_energy, normalisation and the hdnnp_zbl baseline
    Short,
    /// a 3G potential's charge networks: symfunction_electrostatic, global_*_electrostatic,
    /// scale_*_elec, scalinge.data (n2p2's 6 columns, or RuNNer's 5 with one charge-range line
    /// per element at the end), weightse.ZZZ.data; no offsets, normalisation or baseline
    Charge,
};

struct LoadOptions {
    bool weights = true;
    NetworkSet networks = NetworkSet::Short;
    /// Loaded as one part of a 3G, 4G or CENT potential (their nnp_generation is accepted).
    bool part = false;
};

class Model {
public:
    /// Load an n2p2/RuNNer potential directory (input.nn, scaling.data, weights.ZZZ.data).
    /// With `with_weights = false` only input.nn (and scaling.data if present) are read and
    /// the networks are zero: enough for symmetry functions (e.g. to write scaling.data).
    static std::shared_ptr<const Model> load(const std::string& directory, bool with_weights = true);
    /// As above, with the settings of `directory`/input.nn already read (one reader for every part).
    static std::shared_ptr<const Model> load(const std::string& directory, const Settings& settings,
                                             const LoadOptions& how);
    NetworkSet networks() const { return networks_; }
    /// RuNNer's scalinge.data: the training charges' [min, max] per element (empty if not given).
    const std::vector<std::array<double, 2>>& charge_range() const { return charge_range_; }
    bool has_weights() const { return has_weights_; }

    int n_elements() const { return static_cast<int>(elements_.size()); }
    const std::vector<ElementModel>& elements() const { return elements_; }
    std::vector<std::string> element_symbols() const;
    /// Index of a symbol, -1 if the potential does not know it.
    int element_index(const std::string& symbol) const;
    double cutoff() const { return cutoff_; }  ///< native length units
    double mean_energy() const { return mean_energy_; }
    double conv_energy() const { return conv_energy_; }
    double conv_length() const { return conv_length_; }
    ScalingMode scaling_mode() const { return scaling_mode_; }
    double scale_min() const { return s_min_; }   ///< scale_min_short
    double scale_max() const { return s_max_; }   ///< scale_max_short
    CutoffType cutoff_type() const { return cutoff_type_; }
    double cutoff_alpha() const { return cutoff_alpha_; }
    const std::vector<std::string>& warnings() const { return warnings_; }
    const std::string& directory() const { return directory_; }
    const Settings& settings() const { return settings_; }
    /// Units declared in input.nn ('# hdnnp: length_unit=... energy_unit=...'); empty if not.
    const std::string& length_unit() const { return length_unit_; }
    const std::string& energy_unit() const { return energy_unit_; }
    /// The ZBL pair baseline of the hdnnp_zbl lines; null when there is none, or when
    /// 'hdnnp_zbl auto' leaves radii to be derived from training data (baseline_auto()).
    std::shared_ptr<const PairBaseline> baseline() const { return baseline_; }
    bool baseline_auto() const { return baseline_auto_; }
    /// The explicit hdnnp_zbl pairs: (element a, element b, r_inner, r_outer, input.nn line).
    struct BaselinePair { int a, b; double r_inner, r_outer; int line; };
    const std::vector<BaselinePair>& baseline_pairs() const { return baseline_pairs_; }

    void compute(const AtomsView& atoms, const ComputeOptions& opt, ComputeResult& out) const;

    /// G and dG/dr of every centre (see DescriptorJacobian); memory ~ 24 K bytes per pair.
    void descriptor_jacobian(const AtomsView& atoms, DescriptorJacobian& out, int threads = 0,
                             double min_distance = 1e-6) const;

    /// Directional derivatives of every centre's raw G, V_i = sum_p dG_i/dd_p . u_p over its
    /// pairs p = (i, j) (d_p = r_j + shift - r_i), along u_p = lam_i - lam_j - M^T d_p: `lam`
    /// is n_all x 3 (input length units; per atom), `M` a 3 x 3 homogeneous strain or null.
    /// V is K_i values per centre, in atom order, from `offsets` (n_local + 1). With lam the
    /// force residual this is J u of training's weight gradient without storing J (dG/dr);
    /// centres none of whose pairs move (u = 0) are skipped, and a centre with a few moving
    /// neighbours costs O(n) (descriptors.hpp, jvp).
    void descriptor_jvp(const AtomsView& atoms, const double* lam, const double* M, std::vector<double>& V,
                        std::vector<int64_t>& offsets, int threads = 0, double min_distance = 1e-6) const;

private:
    friend class Committee;
    void read_baseline(const std::string& nn_path, bool with_weights);
    /// The one compute path: a committee of `n` models with identical symmetry functions
    /// (a single model is n = 1). Energies, forces and virials are the committee means.
    static void compute_members(const Model* const* members, int n, const AtomsView& atoms,
                                const ComputeOptions& opt, ComputeResult& out);

    std::string directory_;
    Settings settings_;
    std::vector<ElementModel> elements_;
    double cutoff_ = 0.0;
    double mean_energy_ = 0.0, conv_energy_ = 1.0, conv_length_ = 1.0;
    ScalingMode scaling_mode_ = ScalingMode::None;
    double s_min_ = 0.0, s_max_ = 1.0;
    CutoffType cutoff_type_ = CutoffType::Hard;
    double cutoff_alpha_ = 0.0;
    std::vector<std::string> warnings_;
    bool has_weights_ = true;
    NetworkSet networks_ = NetworkSet::Short;
    std::vector<std::array<double, 2>> charge_range_;
    std::string length_unit_, energy_unit_;
    std::shared_ptr<const PairBaseline> baseline_;
    bool baseline_auto_ = false;
    std::vector<BaselinePair> baseline_pairs_;
};

/// Several potentials with the same elements and symmetry functions (different weights,
/// scaling, offsets or architectures), evaluated together: neighbours and descriptors are
/// computed once, each member runs its own networks, and the energies, forces and virials
/// are the committee means. With ComputeOptions::member_forces each member's forces are
/// returned too (one gradient pass per member); otherwise the mean force costs one pass,
/// because forces are linear in dE/dG. Extrapolation is judged against the narrowest
/// range: a value outside any member's scaling.data range counts.
class Committee {
public:
    explicit Committee(std::vector<std::shared_ptr<const Model>> members);
    static std::shared_ptr<const Committee> load(const std::vector<std::string>& directories);

    int size() const { return static_cast<int>(members_.size()); }
    const Model& member(int k) const { return *members_.at(k); }
    std::shared_ptr<const Model> member_ptr(int k) const { return members_.at(k); }
    const Model& first() const { return *members_.front(); }

    void compute(const AtomsView& atoms, const ComputeOptions& opt, ComputeResult& out) const;

private:
    std::vector<std::shared_ptr<const Model>> members_;
    std::vector<const Model*> raw_;
};

}  // namespace hdnnp
