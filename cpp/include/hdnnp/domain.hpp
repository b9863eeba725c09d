// The electrostatics of 3G/4G/CENT potentials on one domain of a spatial decomposition (an MPI rank
// of LAMMPS): the domain's own atoms and its ghost atoms (periodic images and the neighbouring
// domains' atoms within the communication cutoff). No domain holds arrays of the whole system:
// per-atom vectors cover local + ghost atoms, the real space is a sum over the neighbour list,
// the reciprocal space runs on this domain's brick of a distributed particle mesh (or, for the
// n2p2-identical Ewald parameters, on structure factors summed over the domains), and the CG
// solver's dot products are sums over the domains. The core stays free of MPI: the caller
// provides the communication (DomainComm) and the distributed FFT (DomainFft).
//
// Molecules (no periodic cell) are the exception: their Coulomb sum has no cutoff, so the
// charges of all atoms are gathered on every domain (DomainComm::gather), as for a free
// cluster the whole pair sum is O(N^2) work anyway.
#pragma once
#include <complex>
#include <cstdint>
#include <memory>
#include <vector>

#include "hdnnp/electrostatics.hpp"
#include "hdnnp/ewald_parameters.hpp"
#include "hdnnp/model.hpp"
#include "hdnnp/pme.hpp"

namespace hdnnp {

/// What a domain decomposition provides. Per-atom arrays hold n_all atoms (local first, then
/// ghosts), `width` values per atom.
class DomainComm {
public:
    virtual ~DomainComm() = default;
    /// Every ghost atom's values := its owner's.
    virtual void forward(double* values, int width) = 0;
    /// Every ghost atom's values added to its owner's (the ghosts' entries are left as they are).
    virtual void reverse(double* values, int width) = 0;
    /// In-place sum over all domains.
    virtual void sum(double* values, int count) = 0;
    /// The local atoms' values (n_local x width) of every domain, concatenated in domain order,
    /// into `all`; returns where this domain's start.
    virtual int64_t gather(const double* values, int64_t n_local, int width, std::vector<double>& all) = 0;
    /// One domain (the first) adds the terms of the whole system (e.g. the reciprocal-space
    /// virial of the structure factors), so that sums over the domains count them once.
    virtual bool root() const = 0;
    /// This domain's index and the number of domains.
    virtual int rank() const = 0;
    virtual int size() const = 0;
    /// Personalised exchange: send[r] goes to domain r, recv[r] (sized by the caller) comes from it.
    virtual void alltoall(const std::vector<std::vector<double>>& send, std::vector<std::vector<double>>& recv) = 0;
};

/// This domain's brick of the particle mesh: grid points lo[d] <= m_d < hi[d] of K[d] along lattice
/// vector d. The bricks of all domains tile the grid.
struct MeshBrick {
    int K[3] = {0, 0, 0};
    int lo[3] = {0, 0, 0}, hi[3] = {0, 0, 0};
    int64_t size() const { return static_cast<int64_t>(hi[0] - lo[0]) * (hi[1] - lo[1]) * (hi[2] - lo[2]); }
};

/// The distributed real-to-complex 3-D FFT of the bricks (unscaled): a real grid, each domain
/// holding its brick (index ((m0 - lo0) n1 + (m1 - lo1)) n2 + (m2 - lo2), m2 fastest), and its half
/// spectrum (k_0 < K_0, k_1 < K_1, k_2 <= K_2 / 2; the rest is the conjugate), each domain holding
/// the box half_spectrum_box() (index ((k0 - lo0) n1 + k1 - lo1) n2 + k2 - lo2).
class DomainFft {
public:
    virtual ~DomainFft() = default;
    virtual void half_spectrum_box(int lo[3], int hi[3]) const = 0;
    /// spec (on the half-spectrum box) := F grid; grid := F^-1 spec (spec is overwritten).
    virtual void forward_real(const double* grid, std::complex<double>* spec) = 0;
    virtual void inverse_real(std::complex<double>* spec, double* grid) = 0;
    /// grid := F^-1 [G F grid] for a real, even G given on half_spectrum_box().
    virtual void convolve_real(double* grid, const double* G) = 0;
    /// Free the scratch memory kept between transforms (e.g. before the forces' larger buffers).
    virtual void release() {}
};

/// Real-to-complex convolutions over the bricks of all domains: the grid is moved between pencil
/// layouts (whole lines along direction 2, then 1, then 0) by personalised exchanges
/// (DomainComm::alltoall), with one-dimensional transforms (Eigen) in between. Built
/// collectively (every domain's brick is gathered).
class DistributedRealFft : public DomainFft {
public:
    DistributedRealFft(const MeshBrick& brick, DomainComm& comm, int threads);
    void half_spectrum_box(int lo[3], int hi[3]) const override;
    void convolve_real(double* grid, const double* G) override;
    void forward_real(const double* grid, std::complex<double>* spec) override;
    void inverse_real(std::complex<double>* spec, double* grid) override;
    void release() override;

    struct Box { int lo[3], hi[3]; int64_t size() const; };

private:
    /// the along-line transforms of directions 1 and 0 (c2: pencils along 1, c3: along 0)
    void lines(std::complex<double>* data, int direction, bool forward);
    /// data in layout `from` (this domain's box, `w` doubles per point) -> layout `to`
    void move(const std::vector<Box>& from, const std::vector<Box>& to, const double* in, double* out, int w);
    DomainComm& comm_;
    int K_[3], H_ = 0, threads_ = 0;
    std::vector<Box> brick_, l1_, l1c_, l2_, l3_;   ///< per domain: brick, pencils along 2 (real, complex), 1, 0
    std::vector<std::vector<double>> send_, recv_;  ///< scratch of move()
    std::vector<double> real_;                      ///< scratch of convolve_real()
    std::vector<std::complex<double>> c1_, c2_, c3_;
};

/// The FFT of a domain that holds the whole grid (a single process): the core's own transforms.
class SerialMeshFft : public DomainFft {
public:
    SerialMeshFft(const int K[3], int threads) : K_{K[0], K[1], K[2]}, threads_(threads) {}
    void half_spectrum_box(int lo[3], int hi[3]) const override {
        for (int d = 0; d < 3; ++d) { lo[d] = 0; hi[d] = d < 2 ? K_[d] : K_[2] / 2 + 1; }
    }
    void convolve_real(double* grid, const double* G) override { mesh_convolve_real(grid, G, K_, threads_, &spec_); }
    void forward_real(const double* grid, std::complex<double>* spec) override {
        mesh_forward_real(grid, spec, K_, threads_);
    }
    void inverse_real(std::complex<double>* spec, double* grid) override { mesh_inverse_real(spec, grid, K_, threads_); }
    void release() override { spec_.clear(); spec_.shrink_to_fit(); }

private:
    int K_[3];
    int threads_;
    std::vector<std::complex<double>> spec_;   ///< the half spectrum, kept between transforms
};

/// The atoms of one domain in the potential's units.
struct DomainAtoms {
    int64_t n_local = 0, n_all = 0;
    int64_t n_total = 0;                ///< atoms of the whole system
    const double* positions = nullptr;  ///< n_all x 3
    const int32_t* species = nullptr;   ///< n_all
    const int64_t* ids = nullptr;       ///< n_all: the atom's identity (a ghost has its owner's)
    /// Full neighbour list of the local atoms over all n_all (LAMMPS's, used in place); it must
    /// reach the descriptors' cutoff, the real-space cutoff and the screening radius (pairs
    /// beyond are skipped).
    NeighborView neighbors;
    const double* cell = nullptr;       ///< lattice vectors as rows; null: a molecule
    const double* origin = nullptr;     ///< the cell's lower corner (fractional coordinates 0)
    MeshBrick brick;                    ///< the particle mesh (periodic, mesh mode)
};

/// The QEq matrix A0 (electrostatics.hpp) on one domain: products, energies and derivatives of
/// local-atom vectors. `ewald` must be given (chosen once for the run: ElectrostaticsSettings::choose).
class DomainElectrostatics {
public:
    DomainElectrostatics(const DomainAtoms& atoms, const double* sigma, double four_pi_eps, const Screening& screening,
                         const EwaldParameters& ewald, DomainComm& comm, DomainFft* fft, int threads);

    int64_t n_local() const { return nl_; }
    /// diag(A0) of the local atoms.
    void diagonal(double* d) const;
    /// y = A0 x (local atoms; x's ghosts are filled here).
    void apply(const double* x, double* y) const;
    /// This domain's share of E_elec(Q) (local atoms' terms) and dE_elec/dQ_i of the local atoms
    /// (`AQ`: A0 Q when the caller has it, e.g. from the solver).
    double energy(const double* Q, double* dEdQ, const std::vector<double>* AQ = nullptr) const;
    /// F (n_all x 3: ghost forces go to their owners with the caller's force communication) and the
    /// virial share W of -d/dR [E_elec(Q) + lam^T A0 Q] at fixed Q and lam (local atoms' values);
    /// `atom_virials` (n_local x 9, optional; every domain or none: the mesh's share is collective):
    /// added to, the local atoms' virials (ChargeResult::atom_virials).
    void add_derivatives(const double* Q, const double* lam, double* F, double* W,
                         std::vector<double>* atom_virials = nullptr) const;
    int64_t n_kvectors() const { return static_cast<int64_t>(kcoef_.size()); }
    bool has_mesh() const { return static_cast<bool>(mesh_); }
    /// y = M^-1 r, the CG's preconditioner with the particle mesh (local atoms; collective; dinv:
    /// 1 / diag(A0 + J), sum_dinv: its sum over all atoms).
    void precondition(const double* r, double* y, const double* dinv, double sum_dinv) const;
    int64_t mesh_points() const;

private:
    class Mesh;
    void real_rows(const NeighborView& neighbors);
    /// Wat_i += u_i phi_i (phi: n_local x 6 strain derivatives xx yy zz xy xz yz, symmetric)
    void add_strain_shares(const double* u, const double* phi, double* Wat) const;
    /// u (n_local x w) -> n_all x w with the ghosts filled
    std::vector<double> with_ghosts(const double* u, int w) const;
    double self_term(int64_t i) const;
    double distance(int64_t i, int64_t j) const;

    int64_t nl_ = 0, na_ = 0, ntot_ = 0;
    bool periodic_ = false;
    DomainComm& comm_;
    int threads_ = 0;
    std::vector<double> pos_, sigma_;
    std::vector<int64_t> ids_;
    double fpe_ = 1.0, eta_ = 0.0, r_cut_ = 0.0, volume_ = 0.0, sigma_max_ = 0.0;
    double cell_[9] = {0}, inv_cell_[9] = {0};
    Screening scr_;
    // real space, per local atom: partners within max(r_cut, r_out) (real_rows) and their A0 kernel
    std::vector<int64_t> row_;               ///< n_local + 1
    std::vector<int32_t> col_;
    std::vector<double> k_;
    // reciprocal space: structure factors (half sphere) or this domain's mesh brick
    std::vector<double> kvec_, kcoef_;
    std::shared_ptr<const Mesh> mesh_;
    // molecules: every atom's position and width (gathered), and where the local atoms start
    std::vector<double> all_pos_, all_sigma_;
    int64_t offset_ = 0;
};

/// The CG solver of solve_qeq_cg on one domain: x (local atoms) holds the starting guess and
/// receives the solution of [A0 + diag(J) 1; 1^T 0] [x; mu] = [b; total]; the dot products are
/// summed over the domains.
QEqSolution solve_qeq_cg(const DomainElectrostatics& op, DomainComm& comm, int64_t n_total, const double* J,
                         const double* b, double total, double* x, double tol, int max_iterations,
                         std::vector<double>* A0x = nullptr, bool mesh_preconditioner = false);

}  // namespace hdnnp
