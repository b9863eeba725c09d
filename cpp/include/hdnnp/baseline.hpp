// Short-range repulsive pair baseline: the Ziegler-Biersack-Littmark (ZBL) universal screened
// nuclear repulsion, switched off smoothly between an inner and an outer radius per element
// pair. The networks are trained on the reference minus this baseline, and every prediction
// adds it back, so that atoms pushed closer than anything in the training data still repel.
//
//   E = sum_{i<j} S(r_ij) phi(r_ij / a_ij) Z_i Z_j e^2 / (4 pi eps0 r_ij),
//   a_ij = 0.46850 A / (Z_i^0.23 + Z_j^0.23),
//   phi(x) = 0.18175 e^{-3.19980 x} + 0.50986 e^{-0.94229 x} + 0.28022 e^{-0.40290 x}
//          + 0.02817 e^{-0.20162 x}                          (Ziegler, Biersack, Littmark 1985)
//   S(r) = 1 for r <= r_in, 0 for r >= r_out, else 1 - 10 t^3 + 15 t^4 - 6 t^5 with
//   t = (r - r_in) / (r_out - r_in): S' and S'' vanish at both radii, so the energy is C2
//   everywhere (pure ZBL inside r_in, exactly zero beyond r_out).
//
// Units: radii and positions in the potential's length unit, energies in its energy unit;
// the ZBL formula itself is evaluated in Angstrom and eV with the declared conversion factors.
#pragma once
#include <memory>
#include <string>
#include <vector>

namespace hdnnp {

struct AtomsView;
struct ComputeOptions;
struct ComputeResult;

class PairBaseline {
public:
    /// `z`: atomic numbers of the potential's elements (model order); `r_inner`/`r_outer`:
    /// ne x ne (row-major, symmetric) radii in the potential's length unit, 0 < r_in < r_out;
    /// `angstrom_per_length`, `ev_per_energy`: the potential's units.
    PairBaseline(std::vector<int> z, std::vector<double> r_inner, std::vector<double> r_outer,
                 double angstrom_per_length, double ev_per_energy);

    int n_elements() const { return static_cast<int>(z_.size()); }
    double r_inner(int a, int b) const { return r_in_[a * n_elements() + b]; }
    double r_outer(int a, int b) const { return r_out_[a * n_elements() + b]; }
    double max_outer() const { return max_outer_; }
    double angstrom_per_length() const { return lf_; }
    double ev_per_energy() const { return ef_; }
    bool same_as(const PairBaseline& o) const;

    /// Pair energy e(r) and de/dr of elements (a, b) at distance r (native units).
    void pair(int a, int b, double r, double& e, double& de) const;

    /// Add the baseline of the atoms to `out`: energy, atom_energies (half of each pair to
    /// each atom), forces (with opt.forces or opt.virial; each centre takes its pairs' whole
    /// force, ghosts none), virial and atom_virials (centre convention of ComputeResult), and
    /// every committee member's energy and forces where those are present. Every pair must
    /// appear in the lists of both its atoms (full lists; a ghost's pairs in its owner's list).
    /// `out` must already be sized (n_local energies, n_all forces). OpenMP over centres.
    void add(const AtomsView& atoms, const ComputeOptions& opt, ComputeResult& out) const;

    /// The baseline alone (out is reset and sized first).
    void compute(const AtomsView& atoms, const ComputeOptions& opt, ComputeResult& out) const;

private:
    std::vector<int> z_;
    std::vector<double> r_in_, r_out_, a_, zz_;  // per pair: screening length (A), Z_i Z_j
    double lf_ = 1.0, ef_ = 1.0, max_outer_ = 0.0;
};

}  // namespace hdnnp
