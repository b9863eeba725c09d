// Atom-centred symmetry functions (n2p2 types 2, 3, 9, 12, 13, 20-25, plus the
// ANI-style angular function, type 90) and their grouped evaluation.
//
// Formulas (r_ij = |R_j - R_i|, cos = cos(theta_ijk), f_c the global cutoff, C a
// compact function; sums over neighbours j != i and unordered pairs j < k):
//   2   sum_j exp(-eta (r_ij - r_s)^2) f_c(r_ij)                        [Z_j-weighted: 12]
//   3   2^(1-zeta) sum_jk (1 + lambda cos)^zeta exp(-eta[(r_ij-r_s)^2 + (r_ik-r_s)^2
//       + (r_jk-r_s)^2]) f_c(r_ij) f_c(r_ik) f_c(r_jk)                  [Z_jZ_k-weighted: 13]
//   9   as 3 without the r_jk terms ("wide")
//   20  sum_j C(r_ij; r_l, r_c)                                         [weighted: 23]
//   21  sum_jk C(r_ij) C(r_ik) C(r_jk) C(theta; theta_l, theta_r)       [weighted: 24]
//   22  as 21 without C(r_jk)                                          [weighted: 25]
//   90  ANI (Smith et al. 2017, eq. 4): 2^(1-zeta) sum_jk (1 + cos(theta - theta_s))^zeta
//       exp(-eta ((r_ij + r_ik)/2 - r_s)^2) f_c(r_ij) f_c(r_ik)
//       line: `symfunction_short <Ec> 90 <E1> <E2> eta rs zeta theta_s rc` (theta_s in
//       degrees). theta = acos(0.95 cos) as in TorchANI, which keeps dtheta/dcos finite.
//
// Evaluation is grouped (one group = same kind, neighbour element(s), r_c): the
// geometry, the cutoff function and the radial factors shared by members are
// computed once per neighbour/triplet, and the members loop over contiguous
// parameter arrays. Values and gradients are separate passes: gradients are
// contracted with dE/dG on the fly (sum_m dE/dG_m dG_m/dr), so dG/dr is never stored.
// The exponential kinds (types 2, 3, 9, 12, 13) loop over the second neighbour k of a
// triplet in branch-free, vectorised inner loops over structure-of-arrays scratch
// (triplets with r_jk >= r_c are masked by a zero cutoff, not skipped); the compact and
// ANI kinds use scalar loops.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "hdnnp/functions.hpp"

namespace hdnnp {

/// One symmetry function as declared in input.nn (lengths in file units).
struct SymFuncDef {
    int type = 0;
    int ec = -1, e1 = -1, e2 = -1;   ///< element indices (sorted by atomic number); -1 = none
    double eta = 0.0, rs = 0.0, rc = 0.0, lambda = 0.0, zeta = 0.0;
    double rl = 0.0, angle_left = 0.0, angle_right = 0.0;  ///< compact types; angles in degrees
    double theta_s = 0.0;                                  ///< type 90, degrees
    std::string subtype;                                   ///< compact types: p1..p4[a] | e
    int line = 0;                                          ///< line in input.nn
    std::string text;                                      ///< the line as written

    bool angular() const;
    bool weighted() const;
    bool compact() const;
    bool narrow() const;  ///< depends on r_jk
};

/// Parse the arguments of one `symfunction_short` line.
SymFuncDef parse_symfunction(const std::vector<std::string>& tok,
                             const std::vector<std::string>& element_symbols,
                             const std::string& where);

/// n2p2's SymFnc::operator< (defines NN input order and scaling.data order).
bool symfunction_less(const SymFuncDef& a, const SymFuncDef& b);

/// Neighbours of one centre atom, bucketed by element (SoA, internal units).
struct NeighborScratch {
    int n = 0;
    std::vector<double> dx, dy, dz, r;
    std::vector<int> elem;          ///< element index of the neighbour
    std::vector<double> zw;         ///< atomic number (weight for weighted SFs)
    std::vector<int64_t> pair;      ///< index of the pair in the caller's neighbour list
    std::vector<int> bucket;        ///< bucket[e]..bucket[e+1]: neighbours of element e
    void reserve(int m) {
        dx.resize(m); dy.resize(m); dz.resize(m); r.resize(m);
        elem.resize(m); zw.resize(m); pair.resize(m);
    }
};

/// Grow-only per-thread buffers of the kernels.
struct DescriptorWorkspace {
    std::vector<int> list;
    std::vector<double> fc, dfc, a, da;
    /// Per angular group: r_jk and the r_jk factors of each accepted triplet, recorded by
    /// the value pass and replayed by the gradient pass of the same atom (saves the
    /// exp/cutoff evaluations of the second pass).
    std::vector<std::vector<double>> jk;
    /// Structure-of-arrays scratch of the vectorised exponential kernels.
    std::vector<double> buf;
    /// Values of a value pass run only for its cache (gradient_fresh).
    std::vector<double> g_scratch;
    /// jvp(): per listed neighbour the radial derivative along u, whether u is non-zero, and
    /// the list positions where it is.
    std::vector<double> dr;
    std::vector<unsigned char> on;
    std::vector<int> active;
};

class ElementDescriptor {
public:
    ElementDescriptor() = default;
    /// `defs` must already be sorted (symfunction_less); lengths are converted to
    /// internal units with `conv_length`; `atomic_numbers` gives Z per element index.
    ElementDescriptor(std::vector<SymFuncDef> defs, CutoffType cutoff, double alpha,
                      double conv_length, const std::vector<int>& atomic_numbers, int n_elements);

    int size() const { return n_sf_; }
    double cutoff() const { return rc_max_; }  ///< internal units
    const std::vector<SymFuncDef>& definitions() const { return defs_; }

    /// G (raw, unscaled) of one atom.
    void values(const NeighborScratch& nb, DescriptorWorkspace& ws, double* G) const;
    /// grad[3*s + c] += sum_m w[m] dG_m / d(r_j - r_i)_c for neighbour s. Must follow
    /// values() of the same atom with the same workspace (it replays cached r_jk factors).
    void gradient(const NeighborScratch& nb, DescriptorWorkspace& ws, const double* w,
                  double* grad) const;
    /// gradient() without a value pass of the same atom before it (what a force pass from a
    /// given dE/dG needs): the r_jk factors are computed, not replayed.
    void gradient_fresh(const NeighborScratch& nb, DescriptorWorkspace& ws, const double* w, double* grad) const;
    /// gradient() restricted to one group (only its SFs' weights matter).
    void gradient_group(const NeighborScratch& nb, DescriptorWorkspace& ws, const double* w,
                        double* grad, int group) const;
    /// Directional derivative (forward mode): V[m] += sum_s dG_m / d(r_s - r_i) . u[3s..3s+3]
    /// for the neighbours s of nb. `active` (or null: all) flags the neighbours whose u is not
    /// zero; triplets with neither neighbour active are skipped, so a single active neighbour
    /// costs O(n) instead of O(n^2). Contracting dG/dr with u as it is computed is what lets
    /// training use force residuals without storing dG/dr (K x 3 numbers per pair).
    void jvp(const NeighborScratch& nb, DescriptorWorkspace& ws, const double* u,
             const unsigned char* active, double* V) const;
    /// SF indices of each group.
    std::vector<std::vector<int>> group_members() const;

    enum class Kind { ExpRad, CompRad, ExpAngN, ExpAngW, CompAngN, CompAngW, AniAng };

    struct Member {
        int idx = 0;                // position in the sorted SF list
        double lambda = 0, zeta = 0, pnorm = 1; int zint = -1;   // exp angular
        double eta = 0, rs = 0;                                    // exp radial
        CompactFunction cf;                                        // compact radial / angle
        double cos_s = 1, sin_s = 0;                               // ANI
    };
    struct Sub {                    // members sharing one radial shape
        double eta = 0, rs = 0;     // exp / ANI
        CompactFunction cr;         // compact
        std::vector<Member> members;
    };
    struct Group {
        Kind kind = Kind::ExpRad;
        bool weighted = false;
        int e1 = -1, e2 = -1;
        double rc = 0;
        CutoffFunction fc;
        std::vector<Member> members;  // radial groups
        std::vector<Sub> subs;        // angular groups
    };
    const std::vector<Group>& groups() const { return groups_; }

private:
    std::vector<SymFuncDef> defs_;
    std::vector<Group> groups_;
    int n_sf_ = 0;
    double rc_max_ = 0.0;
};

}  // namespace hdnnp
