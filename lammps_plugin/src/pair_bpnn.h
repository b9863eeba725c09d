// pair_style bpnn: Behler-Parrinello HDNNPs (n2p2/RuNNer files) through the hdnnp core: 2G and
// committees, and 3G, and 4G and CENT with the CG solver (charges written to atom->q), on any MPI
// decomposition: each rank works on its own and its ghost atoms (hdnnp/domain.hpp; LAMMPS's
// forward/reverse communication, MPI_Allreduce, and a pencil-decomposed real FFT for the mesh).
// The dense QEq solver runs on one MPI rank (OpenMP threads inside it).
#pragma once
#include <algorithm>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "hdnnp/fourth_generation.hpp"
#include "hdnnp/model.hpp"
#include "hdnnp/third_generation.hpp"
#include "pair.h"

namespace LAMMPS_NS {

class PairBPNN : public Pair {
public:
    explicit PairBPNN(class LAMMPS*);
    ~PairBPNN() override;
    void compute(int, int) override;
    void settings(int, char**) override;
    void coeff(int, char**) override;
    void init_style() override;
    double init_one(int, int) override;
    void* extract(const char*, int&) override;
    void* extract_peratom(const char*, int&) override;
    int pack_forward_comm(int, int*, double*, int, int*) override;
    void unpack_forward_comm(int, int, double*) override;
    int pack_reverse_comm(int, int, double*) override;
    void unpack_reverse_comm(int, int*, double*) override;
    double memory_usage() override;

private:
    // A committee of one or more potentials (one directory = a single potential); 2G.
    std::shared_ptr<const hdnnp::Committee> model_;
    // Or a potential with charges (3G, 4G, CENT) and its descriptor model (elements, cutoff, units).
    std::shared_ptr<const hdnnp::FourthGenerationPotential> pot4_;
    std::shared_ptr<const hdnnp::ThirdGenerationPotential> pot3_;
    std::shared_ptr<const hdnnp::Model> desc_;
    // Committees of charged potentials: every member (pot4_ / pot3_ is the first) solves its own
    // charges; MD uses the mean energy, forces and charges.
    std::vector<std::shared_ptr<const hdnnp::FourthGenerationPotential>> members4_;
    std::vector<std::shared_ptr<const hdnnp::ThirdGenerationPotential>> members3_;
    int n_members() const {
        return model_ ? model_->size() : static_cast<int>(std::max(members4_.size(), members3_.size()));
    }
    const hdnnp::Model& member_descriptors(int m) const {
        return members4_.empty() ? *members3_[m]->short_model_ptr() : members4_[m]->descriptors();
    }
    hdnnp::ChargeResult mres_;                  // one member's result
    std::vector<double> member_q_, member_lam_;  // members' charges and adjoints (M x n_local)
    double* dq_atom_ = nullptr;                  // per local atom: the committee's charge deviation
    double q_dev_max_ = 0.0;
    void accumulate_member(int m, int M);
    void charge_deviation();
    double total_charge_ = 0.0;       // elementary charges
    double ewald_tol_ = 1e-3;         // LAMMPS energy units (whole cell); 0: n2p2's parameters
    std::string solver_ = "cg";
    double qeq_tol_ = 1e-10;          // relative residual of the CG solves
    std::string qeq_pc_ = "mesh";     // the CG's preconditioner (distributed path with a mesh)
    bool background_ = false;
    // CG starting guess: 0 = none (neutral charges, zero adjoint), 1 = the previous step's charges
    // and adjoint, 2 = their linear extrapolation from the last two steps (2 x_n - x_(n-1))
    int warm_start_ = 2;
    std::vector<double> q_by_tag_, lam_by_tag_;   // warm start of the CG solver, by atom tag
    std::vector<double> pos_, warm_q_, warm_lam_;
    hdnnp::ChargeResult cres_;
    bool charged() const { return static_cast<bool>(desc_); }
    // The distributed path (4G/CENT with the CG solver): Ewald parameters held for the run, the
    // mesh's FFT, per-atom values being communicated (comm_buf_: n_all x comm_width_).
    bool distributed() const { return pot3_ || (pot4_ && solver_ == "cg"); }
    void compute_domain(int eflag, int vflag);
    void setup_fft(const int K[3], const int lo[3], const int hi[3]);
    hdnnp::EwaldParameters ewald_;
    double reach_ = 0.0;                 // native length: what the ghost atoms must cover
    std::unique_ptr<hdnnp::SerialMeshFft> serial_fft_;   // (one rank: the core's FFT, no remaps)
    int serial_K_[3] = {0, 0, 0};
    std::unique_ptr<class LammpsDomain> dom_;            // this rank's domain for the core
    std::unique_ptr<hdnnp::DistributedRealFft> rfft_;    // (more than one rank: real convolutions)
    int fft_K_[3] = {0, 0, 0}, fft_lo_[3] = {0, 0, 0}, fft_hi_[3] = {0, 0, 0};
    double* comm_buf_ = nullptr;
    int comm_width_ = 0;
    std::vector<int64_t> ids_;
    // per member, the last two steps' (tag, charge, adjoint, charge written to atom->q) of this
    // rank's atoms (sorted by tag): the warm start
    struct Past {
        tagint tag;
        double q, lam, written;
        bool operator<(const Past& o) const { return tag < o.tag; }
    };
    std::vector<std::vector<Past>> past_, past2_;
    friend class LammpsDomain;
    const hdnnp::Model& first() const { return charged() ? *desc_ : model_->first(); }
    void compute_charged(int eflag, int vflag);
    void finish_charged();
    void tally(double energy, const double* atom_energies, const double* W);
    void grow_peratom();
    std::string directory_;            // the first member's
    std::vector<int> type_map_;        // LAMMPS type -> element index, -1 = NULL
    // Units: Angstrom-like LAMMPS length per native length and LAMMPS energy per native
    // energy; from `length_factor`/`energy_factor`, or from the potential's declaration.
    double length_factor_ = 0.0, energy_factor_ = 0.0;
    bool explicit_units_ = false;
    std::string native_length_, native_energy_;
    int threads_ = 0;
    // Extrapolation handling.
    int ext_every_ = 100;             // at most one log line per this many steps
    long ext_stop_ = 0;               // stop after this many steps with extrapolation (0: never)
    std::string ext_file_;            // write extrapolating configurations here
    long ext_steps_ = 0;              // steps with extrapolation so far
    bigint ext_last_line_ = -1;       // step of the last log line
    long ext_since_line_ = 0;         // steps with extrapolation since then
    bigint ext_max_atoms_ = 0;        // most atoms extrapolating in one step since then
    double* ext_grade_ = nullptr;     // per local atom, for fix pair
    // Committee force deviation (computed on triggered steps only).
    int dev_every_ = 0;               // member forces every this many steps (0: when triggered)
    int dev_trigger_ = 0;             // set by `fix pair ... force_deviation 1`
    double dev_lo_ = 0.0, dev_hi_ = 0.0;  // write frames with lo < max deviation (< hi if hi > 0)
    std::string dev_write_;           // frames with high deviation (n2p2 input.data)
    std::string dev_log_;             // one line per deviation step: step max min mean e_std
    double* dev_atom_ = nullptr;      // per local atom, LAMMPS force units
    bool dev_now_ = false;
    int nmax_ = 0;
    // Scratch (no copy of the neighbour list itself).
    std::vector<int32_t> species_;
    std::vector<int64_t> offsets_;
    hdnnp::ComputeResult res_;

    void read_units_from_potential();
    void handle_extrapolation();
    void handle_deviation();
    void write_configuration(const std::string& path, const std::string& reason);
};

}  // namespace LAMMPS_NS
