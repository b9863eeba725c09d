// O(N) neighbour lists with cell lists, for any triclinic cell, any cell size
// (many periodic images when the cell is smaller than the cutoff), mixed
// periodicity (slabs) and free molecules.
#pragma once
#include <cstdint>
#include <vector>

namespace hdnnp {

/// Non-owning neighbour view handed to Model::compute, over n_centers centre atoms.
/// Pairs are numbered by `offsets` (prefix sums of the per-centre counts). The neighbour
/// of pair p of centre c is index[p] (CSR), or, when `first` is set (LAMMPS's paged
/// lists, used in place; indexed by atom), first[center(c)][p - offsets[c]] & mask. Centre c is atom c, or
/// centers[c] when set. The displacement is x[j] + shifts[shift_id[p]] - x[i];
/// shift_id/shifts may be null (LAMMPS ghost atoms: plain x[j] - x[i]).
struct NeighborView {
    int64_t n_centers = 0;
    const int64_t* offsets = nullptr;  ///< n_centers + 1
    const int32_t* index = nullptr;    ///< neighbour atom per pair (CSR)
    const int32_t* shift_id = nullptr; ///< per pair, into shifts (nullable)
    const double* shifts = nullptr;    ///< 3 per shift id, same units as positions
    const int* const* first = nullptr; ///< per centre: its neighbours (instead of index)
    const int* centers = nullptr;      ///< atom index of each centre (nullable: c)
    int mask = ~0;                     ///< applied to first[c][k] (LAMMPS NEIGHMASK)

    int64_t center(int64_t c) const { return centers ? centers[c] : c; }
    int32_t neighbor(int64_t c, int64_t p) const {
        return first ? (first[center(c)][p - offsets[c]] & mask) : index[p];
    }
};

/// Owning full neighbour list (every pair appears for both atoms).
struct NeighborList {
    std::vector<int64_t> offsets;
    std::vector<int32_t> index;
    std::vector<int32_t> shift_id;
    std::vector<double> shifts;      ///< cartesian shift vectors, 3 per id
    std::vector<int32_t> images;     ///< integer cell images, 3 per id
    std::vector<int64_t> order;      ///< spatial order: centre c is input atom order[c] (else empty)
    NeighborView view() const {
        NeighborView v;
        v.n_centers = static_cast<int64_t>(offsets.size()) - 1;
        v.offsets = offsets.data();
        v.index = index.data();
        v.shift_id = shift_id.data();
        v.shifts = shifts.data();
        return v;
    }
};

/// Build the full list of pairs closer than `cutoff`.
/// `cell` holds the lattice vectors as rows (row-major 3x3) and may be null when no
/// direction is periodic. Throws InputError for NaN/inf positions, a singular cell, or
/// two atoms closer than `min_distance` (naming both atoms, by input index).
/// With `spatial_order`, atoms are renumbered in cell-list order (`order`; all indices of
/// the list refer to the renumbered atoms): the caller computes on positions[order] and maps
/// results back. Atoms close in space are then close in memory, which keeps the cost per
/// atom constant for large structures (the force scatter stays in cache).
/// With `half` (not with spatial_order), atom a lists only neighbours j >= a (j == a: its
/// periodic images, both T and -T): every pair once, half the memory.
NeighborList build_neighbor_list(const double* positions, int64_t n, const double* cell,
                                 const bool pbc[3], double cutoff, double min_distance,
                                 bool spatial_order = false,
                                 bool half = false);

/// The full list of the pairs closer than `cutoff` of a `half` list built with a cutoff at least as
/// long (every pair listed for both atoms, the second with the negated image): one cell-list pass
/// serves two lists (the electrostatics' and the descriptors').
NeighborList full_from_half(const NeighborList& half, const double* positions, double cutoff);

}  // namespace hdnnp
