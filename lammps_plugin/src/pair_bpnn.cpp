#include "pair_bpnn.h"

#include <mpi.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>
#include <sstream>

#include "atom.h"
#include "comm.h"
#include "domain.h"
#include "error.h"
#include "force.h"
#include "hdnnp/domain.hpp"
#include "hdnnp/errors.hpp"
#include "hdnnp/units.hpp"
#include "memory.h"
#include "neigh_list.h"
#include "neighbor.h"
#include "update.h"

using namespace LAMMPS_NS;

namespace LAMMPS_NS {
// This rank's domain as the core sees it: LAMMPS's forward/reverse communication of per-atom
// values (through the pair style's pack/unpack), sums, gathers and exchanges over the ranks.
class LammpsDomain : public hdnnp::DomainComm {
public:
    explicit LammpsDomain(PairBPNN* p) : p_(p) {}
    void forward(double* v, int w) override { exchange(v, w, true); }
    void reverse(double* v, int w) override { exchange(v, w, false); }
    void sum(double* v, int n) override {
        if (n > 0) MPI_Allreduce(MPI_IN_PLACE, v, n, MPI_DOUBLE, MPI_SUM, p_->world);
    }
    int64_t gather(const double* v, int64_t n_local, int w, std::vector<double>& all) override {
        const int nprocs = p_->comm->nprocs, me = p_->comm->me;
        int mine = static_cast<int>(n_local * w);
        std::vector<int> counts(nprocs), displs(nprocs, 0);
        MPI_Allgather(&mine, 1, MPI_INT, counts.data(), 1, MPI_INT, p_->world);
        for (int r = 1; r < nprocs; ++r) displs[r] = displs[r - 1] + counts[r - 1];
        all.resize(static_cast<size_t>(displs.back()) + counts.back());
        MPI_Allgatherv(v, mine, MPI_DOUBLE, all.data(), counts.data(), displs.data(), MPI_DOUBLE, p_->world);
        return displs[me] / w;
    }
    bool root() const override { return p_->comm->me == 0; }
    int rank() const override { return p_->comm->me; }
    int size() const override { return p_->comm->nprocs; }
    void alltoall(const std::vector<std::vector<double>>& send, std::vector<std::vector<double>>& recv) override {
        // point-to-point (non-blocking receives, then sends), as LAMMPS's own remaps do: the
        // mpich wheel's MPI_Alltoallv failed here ("free(): invalid pointer") in optimised builds
        const int P = p_->comm->nprocs, me = p_->comm->me;
        std::vector<MPI_Request> req;
        for (int r = 0; r < P; ++r)
            if (r != me && !recv[r].empty()) {
                req.emplace_back();
                MPI_Irecv(recv[r].data(), static_cast<int>(recv[r].size()), MPI_DOUBLE, r, 0, p_->world, &req.back());
            }
        for (int r = 0; r < P; ++r)
            if (r != me && !send[r].empty())
                MPI_Send(send[r].data(), static_cast<int>(send[r].size()), MPI_DOUBLE, r, 0, p_->world);
        if (send[me].size() != recv[me].size())
            p_->error->one(FLERR, "pair bpnn: internal error: {} values to itself, {} expected", send[me].size(),
                           recv[me].size());
        std::copy(send[me].begin(), send[me].end(), recv[me].begin());
        if (!req.empty()) MPI_Waitall(static_cast<int>(req.size()), req.data(), MPI_STATUSES_IGNORE);
    }

private:
    void exchange(double* v, int w, bool fwd) {
        p_->comm_buf_ = v;
        p_->comm_width_ = w;
        if (fwd) p_->comm->forward_comm(p_, w);
        else p_->comm->reverse_comm(p_, w);
        p_->comm_buf_ = nullptr;
    }
    PairBPNN* p_;
};
}  // namespace LAMMPS_NS

// LAMMPS's virial order xx, yy, zz, xy, xz, yz as indices of a row-major 3 x 3 matrix
constexpr int kVoigt[6] = {0, 4, 8, 1, 2, 5};

using hdnnp::angstrom_per_length_unit;
using hdnnp::ev_per_energy_unit;

PairBPNN::PairBPNN(LAMMPS* lmp) : Pair(lmp) {
    single_enable = 0;
    restartinfo = 0;
    one_coeff = 1;
    manybody_flag = 1;
    no_virial_fdotr_compute = 1;  // the core returns the virial (sum over pairs)
    centroidstressflag = CENTROID_NOTAVAIL;
    // compute pair: [0] extrapolating atoms, [1] max, [2] mean committee force deviation,
    // [3] committee energy deviation (the last values computed); 3G/4G/CENT: [4] electrostatic
    // energy, [5] CG iterations of the last step (charges + adjoint; a committee's summed over
    // its members), [6] total charge, [7] a committee's largest per-atom charge deviation.
    nextra = 8;
    pvector = new double[nextra];
    for (int k = 0; k < nextra; ++k) pvector[k] = 0.0;
}

PairBPNN::~PairBPNN() {
    delete[] pvector;
    memory->destroy(ext_grade_);
    memory->destroy(dev_atom_);
    memory->destroy(dq_atom_);
    if (allocated) {
        memory->destroy(setflag);
        memory->destroy(cutsq);
    }
}

void PairBPNN::settings(int narg, char** arg) {
    for (int i = 0; i < narg; ++i) {
        const std::string k = arg[i];
        auto need = [&](int n) {
            if (i + n >= narg) error->all(FLERR, "pair_style bpnn: keyword {} needs {} value(s)", k, n);
        };
        if (k == "threads") {
            need(1); threads_ = utils::inumeric(FLERR, arg[++i], false, lmp);
        } else if (k == "length_factor") {
            need(1); length_factor_ = utils::numeric(FLERR, arg[++i], false, lmp); explicit_units_ = true;
        } else if (k == "energy_factor") {
            need(1); energy_factor_ = utils::numeric(FLERR, arg[++i], false, lmp); explicit_units_ = true;
        } else if (k == "extrapolation_every") {
            need(1); ext_every_ = utils::inumeric(FLERR, arg[++i], false, lmp);
        } else if (k == "extrapolation_stop") {
            need(1); ext_stop_ = utils::inumeric(FLERR, arg[++i], false, lmp);
        } else if (k == "extrapolation_write") {
            need(1); ext_file_ = arg[++i];
        } else if (k == "deviation_every") {
            need(1); dev_every_ = utils::inumeric(FLERR, arg[++i], false, lmp);
            if (dev_every_ < 0) error->all(FLERR, "pair_style bpnn: deviation_every must be >= 0");
        } else if (k == "deviation_threshold") {
            need(1); dev_lo_ = utils::numeric(FLERR, arg[++i], false, lmp);
        } else if (k == "deviation_max") {
            need(1); dev_hi_ = utils::numeric(FLERR, arg[++i], false, lmp);
        } else if (k == "deviation_write") {
            need(1); dev_write_ = arg[++i];
        } else if (k == "deviation_log") {
            need(1); dev_log_ = arg[++i];
        } else if (k == "total_charge") {
            need(1); total_charge_ = utils::numeric(FLERR, arg[++i], false, lmp);
        } else if (k == "ewald") {
            need(1);
            const std::string v = arg[++i];
            ewald_tol_ = v == "n2p2" ? 0.0 : utils::numeric(FLERR, v, false, lmp);
            if (ewald_tol_ < 0.0 || (v != "n2p2" && !(ewald_tol_ > 0.0)))
                error->all(FLERR, "pair_style bpnn: ewald takes n2p2 or a positive energy tolerance, not {}", v);
        } else if (k == "solver") {
            need(1); solver_ = arg[++i];
            if (solver_ != "cg" && solver_ != "dense")
                error->all(FLERR, "pair_style bpnn: solver takes cg or dense, not {}", solver_);
        } else if (k == "qeq_tolerance") {
            need(1); qeq_tol_ = utils::numeric(FLERR, arg[++i], false, lmp);
            if (!(qeq_tol_ > 0.0)) error->all(FLERR, "pair_style bpnn: qeq_tolerance must be positive");
        } else if (k == "qeq_preconditioner") {
            need(1); qeq_pc_ = arg[++i];
            if (qeq_pc_ != "mesh" && qeq_pc_ != "jacobi")
                error->all(FLERR, "pair_style bpnn: qeq_preconditioner takes mesh or jacobi, not {}", qeq_pc_);
        } else if (k == "background") {
            need(1); background_ = utils::logical(FLERR, arg[++i], false, lmp) != 0;
        } else if (k == "warm_start") {
            need(1);
            const std::string v = arg[++i];
            if (v == "extrapolate") warm_start_ = 2;
            else warm_start_ = utils::logical(FLERR, v, false, lmp);
        } else {
            error->all(FLERR, "pair_style bpnn: unknown keyword '{}' (known: threads, length_factor, "
                              "energy_factor, extrapolation_every, extrapolation_stop, extrapolation_write, "
                              "deviation_every, deviation_threshold, deviation_max, deviation_write, "
                              "deviation_log, total_charge, ewald, solver, qeq_tolerance, qeq_preconditioner, background, "
                              "warm_start)", k);
        }
    }
    if (explicit_units_ && !(length_factor_ > 0.0 && energy_factor_ > 0.0))
        error->all(FLERR, "pair_style bpnn: length_factor and energy_factor must both be given and positive");
}

void PairBPNN::read_units_from_potential() {
    native_length_.clear();
    native_energy_.clear();
    if (charged()) {
        native_length_ = desc_->length_unit();
        native_energy_ = desc_->energy_unit();
        for (int m = 1; m < n_members(); ++m) {
            const hdnnp::Model& d = member_descriptors(m);
            if (d.length_unit() != native_length_ || d.energy_unit() != native_energy_)
                error->all(FLERR, "pair bpnn: committee member '{}' declares units '{}'/'{}' but '{}' declares "
                                  "'{}'/'{}'", d.directory(), d.length_unit(), d.energy_unit(), directory_,
                           native_length_, native_energy_);
        }
        return;
    }
    for (int k = 0; k < model_->size(); ++k) {
        // the '# hdnnp: length_unit=... energy_unit=...' declaration, as the core read it
        const std::string l = model_->member(k).length_unit(), e = model_->member(k).energy_unit();
        if (k == 0) { native_length_ = l; native_energy_ = e; continue; }
        if (l != native_length_ || e != native_energy_)
            error->all(FLERR, "pair bpnn: committee member '{}' declares units '{}'/'{}' but '{}' declares "
                              "'{}'/'{}'", model_->member(k).directory(), l, e, directory_, native_length_,
                       native_energy_);
    }
}

void PairBPNN::coeff(int narg, char** arg) {
    const int ntypes = atom->ntypes;
    if (narg < 3 + ntypes)
        error->all(FLERR, "pair_coeff for bpnn: expected '* * <potential dir> [<more dirs> (committee)] "
                          "<element or NULL per type>' with {} element(s), got {} argument(s)", ntypes, narg);
    if (std::strcmp(arg[0], "*") != 0 || std::strcmp(arg[1], "*") != 0)
        error->all(FLERR, "pair_coeff for bpnn: the first two arguments must be '* *'");
    // The last ntypes arguments are elements; everything before them is a potential directory.
    std::vector<std::string> dirs(arg + 2, arg + narg - ntypes);
    directory_ = dirs.front();
    model_.reset(); pot4_.reset(); pot3_.reset(); desc_.reset();
    members4_.clear(); members3_.clear();
    auto generation = [](const std::string& dir) {
        const hdnnp::Settings S = hdnnp::Settings::read_file(dir + "/input.nn");
        const std::string gen = S.has("nnp_type") ? S.args("nnp_type").at(0) : "2";
        if (gen == "3" || gen == "3G-HDNNP") return 3;
        if (gen == "4" || gen == "4G-HDNNP" || gen == "cent" || gen == "CENT") return 4;
        return 2;
    };
    std::string loading = directory_;
    try {
        const int gen = generation(directory_);
        if (gen == 2) {
            loading = dirs.size() == 1 ? directory_ : "committee";
            model_ = hdnnp::Committee::load(dirs);
        }
        for (const auto& d : dirs) {   // 3G/4G/CENT: each member its own potential
            if (gen == 2) break;
            loading = d;
            if (generation(d) != gen)
                throw std::invalid_argument("committee members must be of one generation ('" + d + "' is not that of '" +
                                            directory_ + "')");
            if (gen == 3) members3_.push_back(hdnnp::ThirdGenerationPotential::load(d));
            else members4_.push_back(hdnnp::FourthGenerationPotential::load(d));
        }
    } catch (const std::exception& e) {
        error->all(FLERR, "pair bpnn: cannot load potential '{}': {}", loading, e.what());
    }
    if (!members3_.empty()) { pot3_ = members3_.front(); desc_ = pot3_->short_model_ptr(); }
    if (!members4_.empty()) { pot4_ = members4_.front(); desc_ = pot4_->descriptor_model(); }
    for (int m = 1; m < n_members() && charged(); ++m) {
        const hdnnp::Model& d = member_descriptors(m);
        if (d.element_symbols() != desc_->element_symbols())
            error->all(FLERR, "pair bpnn: committee member '{}' has other elements (or another order) than '{}'",
                       d.directory(), directory_);
        if (members4_.size() && members4_[m]->cent() != pot4_->cent())
            error->all(FLERR, "pair bpnn: committee member '{}' and '{}' are not both CENT or both 4G", d.directory(),
                       directory_);
    }
    // per-atom values the distributed charge path exchanges: at most 2 forward, 6 back (the mesh's
    // strain derivatives); a committee's member forces (3 per member) back
    comm_reverse = std::max(n_members() > 1 ? 3 * n_members() : 0, desc_ ? 6 : 0);
    comm_forward = desc_ ? 2 : 0;
    if (!allocated) {
        allocated = 1;
        memory->create(setflag, ntypes + 1, ntypes + 1, "pair:setflag");
        memory->create(cutsq, ntypes + 1, ntypes + 1, "pair:cutsq");
    }
    type_map_.assign(ntypes + 1, -1);
    std::string known;
    for (const auto& s : first().element_symbols()) known += (known.empty() ? "" : " ") + s;
    for (int t = 1; t <= ntypes; ++t) {
        const std::string el = arg[narg - ntypes + t - 1];
        if (el == "NULL") continue;
        const int e = first().element_index(el);
        if (e < 0)
            error->all(FLERR, "pair bpnn: element '{}' (atom type {}) is not in potential '{}' (elements: {})",
                       el, t, directory_, known);
        type_map_[t] = e;
    }
    for (int i = 1; i <= ntypes; ++i)
        for (int j = 1; j <= ntypes; ++j) setflag[i][j] = (type_map_[i] >= 0 && type_map_[j] >= 0) ? 1 : 0;
    if (!explicit_units_) read_units_from_potential();
}

void PairBPNN::init_style() {
    if (force->newton_pair == 0) error->all(FLERR, "pair style bpnn requires newton pair on");
    if (!model_ && !desc_) error->all(FLERR, "pair style bpnn: pair_coeff has not been given");
    if (charged()) {
        const char* gen = pot3_ ? "3G" : pot4_->cent() ? "CENT" : "4G";
        if (!atom->q_flag)
            error->all(FLERR, "pair bpnn: the {} potential '{}' computes atomic charges: it needs an atom style "
                              "with charges (atom_style charge or full)", gen, directory_);
        if (comm->nprocs > 1 && !distributed())
            error->all(FLERR, "pair bpnn: the {} potential '{}' with the dense solver runs on one MPI rank; use "
                              "solver cg (distributed over MPI ranks), or OpenMP threads (pair_style bpnn threads "
                              "N) inside that rank", gen, directory_);
        if (n_members() > 1 && !distributed())
            error->all(FLERR, "pair bpnn: committees of {} potentials need solver cg", gen);
        if (distributed() && comm->style != Comm::BRICK)
            error->all(FLERR, "pair bpnn: the distributed charge equilibration needs comm_style brick");
        const int np = domain->xperiodic + domain->yperiodic + domain->zperiodic;
        if (np != 0 && np != 3)
            error->all(FLERR, "pair bpnn: {} potentials need a box periodic in all three directions or in none",
                       gen);
    }
    if (!explicit_units_) {
        const std::string us = update->unit_style;
        double e_lmp = 0.0;  // eV per LAMMPS energy unit
        if (us == "metal") e_lmp = 1.0;
        else if (us == "real") e_lmp = 0.04336410390059322;
        else
            error->all(FLERR, "pair bpnn: automatic unit conversion supports 'units metal' and 'units real', "
                              "not '{}'; give length_factor and energy_factor to pair_style", us);
        if (native_length_.empty() || native_energy_.empty())
            error->all(FLERR, "pair bpnn: potential '{}' does not declare its units (a line "
                              "'# hdnnp: length_unit=... energy_unit=...' in input.nn); give "
                              "length_factor and energy_factor to pair_style", directory_);
        const double l = angstrom_per_length_unit(native_length_), e = ev_per_energy_unit(native_energy_);
        if (l == 0.0) error->all(FLERR, "pair bpnn: unknown length unit '{}' in {}/input.nn", native_length_, directory_);
        if (e == 0.0) error->all(FLERR, "pair bpnn: unknown energy unit '{}' in {}/input.nn", native_energy_, directory_);
        length_factor_ = l;
        energy_factor_ = e / e_lmp;
    }
    neighbor->add_request(this, NeighConst::REQ_FULL);
    if (!distributed()) return;
    // Ewald parameters for the run (from the box and atom count at its start), and how far the
    // ghost atoms must reach: the descriptors' cutoff, the real-space and screening radii, and the
    // B-spline stencil of the mesh (order + 2 grid spacings: a brick's points lie up to one
    // spacing outside the sub-domain)
    const double lf = length_factor_;
    reach_ = 0.0;
    for (int m = 0; m < n_members(); ++m) {
        const hdnnp::ElectrostaticsSettings& es = pot4_ ? members4_[m]->electrostatics() : members3_[m]->electrostatics();
        reach_ = std::max({reach_, member_descriptors(m).cutoff(), es.screening.r_out});
        if (pot3_) reach_ = std::max(reach_, members3_[m]->charge_model().cutoff());
    }
    ewald_ = hdnnp::EwaldParameters();
    if (domain->xperiodic) {
        hdnnp::ChargeOptions o;
        o.ewald_tolerance = ewald_tol_ / energy_factor_;
        o.solver = "cg";
        double cell[9] = {0}, inv[9] = {0};
        const double* h = domain->h;
        cell[0] = h[0] / lf;
        cell[3] = h[5] / lf; cell[4] = h[1] / lf;
        cell[6] = h[4] / lf; cell[7] = h[3] / lf; cell[8] = h[2] / lf;
        try {
            // one Ewald splitting and mesh for the whole committee: the members' choices must agree
            // (they do when the members share the electrostatics keywords and Gaussian widths)
            for (int m = 0; m < n_members(); ++m) {
                const hdnnp::EwaldParameters p = pot4_ ? members4_[m]->ewald_parameters(o, cell, atom->natoms)
                                                       : members3_[m]->ewald_parameters(o, cell, atom->natoms);
                if (m == 0) { ewald_ = p; continue; }
                if (p.eta != ewald_.eta || p.r_cut != ewald_.r_cut || p.k_cut != ewald_.k_cut ||
                    p.mesh[0] != ewald_.mesh[0] || p.mesh[1] != ewald_.mesh[1] || p.mesh[2] != ewald_.mesh[2])
                    error->all(FLERR, "pair bpnn: committee member '{}' gets other Ewald parameters than '{}' (eta {} "
                                      "vs {}): the members must share the electrostatics settings of input.nn and "
                                      "their Gaussian widths", member_descriptors(m).directory(), directory_, p.eta,
                               ewald_.eta);
            }
        } catch (const std::exception& e) {
            error->all(FLERR, "pair bpnn: {}", e.what());
        }
        reach_ = std::max(reach_, ewald_.r_cut);
        // n2p2's Ewald parameters can reach far (thousands of neighbours per atom): room in the
        // neighbour list pages for them (neigh_modify one / page), with a margin for fluctuations
        const double rc = reach_ * lf + neighbor->skin;
        const double need = 4.0 / 3.0 * 3.14159265358979 * rc * rc * rc * atom->natoms / (domain->xprd * domain->yprd * domain->zprd);
        const int one = static_cast<int>(std::min(1.5 * need + 100.0, 1e8));
        if (one > neighbor->oneatom) {
            if (comm->me == 0)
                utils::logmesg(lmp, "pair bpnn: neighbour list room raised to {} neighbours per atom (neigh_modify "
                                    "one; the real-space Ewald cutoff {:.4g})\n", one, ewald_.r_cut * lf);
            neighbor->oneatom = one;
            neighbor->pgsize = std::max(neighbor->pgsize, 10 * one);
        }
        if (ewald_.mesh[0] > 0) {
            // plane spacings 1 / |column d of the inverse cell| (upper triangular: closed form)
            inv[0] = 1.0 / cell[0]; inv[4] = 1.0 / cell[4]; inv[8] = 1.0 / cell[8];
            inv[3] = -cell[3] * inv[0] * inv[4];
            inv[7] = -cell[7] * inv[4] * inv[8];
            inv[6] = (cell[3] * cell[7] - cell[6] * cell[4]) * inv[0] * inv[4] * inv[8];
            for (int d = 0; d < 3; ++d) {
                const double len = std::sqrt(inv[d] * inv[d] + inv[3 + d] * inv[3 + d] + inv[6 + d] * inv[6 + d]);
                reach_ = std::max(reach_, (ewald_.mesh_order + 2) / (len * ewald_.mesh[d]));
            }
        }
    }
}

double PairBPNN::init_one(int, int) { return (distributed() ? reach_ : first().cutoff()) * length_factor_; }

void PairBPNN::compute(int eflag, int vflag) {
    ev_init(eflag, vflag);
    if (distributed()) {
        compute_domain(eflag, vflag);
        return;
    }
    if (charged()) {
        compute_charged(eflag, vflag);
        return;
    }
    const int nlocal = atom->nlocal, nall = nlocal + atom->nghost;
    const int inum = list->inum;
    species_.resize(nall);
    const int* type = atom->type;
    for (int i = 0; i < nall; ++i) species_[i] = type_map_[type[i]];
    offsets_.resize(inum + 1);
    offsets_[0] = 0;
    for (int ii = 0; ii < inum; ++ii) offsets_[ii + 1] = offsets_[ii] + list->numneigh[list->ilist[ii]];

    hdnnp::AtomsView A;
    A.n_local = nlocal;
    A.n_all = nall;
    A.positions = nall ? &atom->x[0][0] : nullptr;
    A.species = species_.data();
    A.length_factor = 1.0 / length_factor_;
    A.neighbors.n_centers = inum;
    A.neighbors.offsets = offsets_.data();
    A.neighbors.first = list->firstneigh;
    A.neighbors.centers = list->ilist;
    A.neighbors.mask = NEIGHMASK;
    hdnnp::ComputeOptions opt;
    opt.forces = true;
    opt.virial = vflag_global != 0;
    opt.atom_virial = vflag_atom != 0;
    opt.threads = threads_;
    dev_now_ = dev_trigger_ || (dev_every_ > 0 && update->ntimestep % dev_every_ == 0);
    opt.member_forces = dev_now_;
    try {
        model_->compute(A, opt, res_);
    } catch (const std::exception& e) {
        error->one(FLERR, "pair bpnn: {}", e.what());
    }
    const double ef = energy_factor_;
    double** f = atom->f;
    for (int i = 0; i < nall; ++i)
        for (int c = 0; c < 3; ++c) f[i][c] += res_.forces[3 * i + c] * ef;
    tally(res_.energy, res_.atom_energies.data(), res_.virial);
    if (vflag_atom)
        for (int i = 0; i < nlocal; ++i)
            for (int k = 0; k < 6; ++k) vatom[i][k] += res_.atom_virials[9 * i + kVoigt[k]] * ef;
    grow_peratom();
    if (dev_now_) handle_deviation();
    handle_extrapolation();
}

void PairBPNN::compute_charged(int eflag, int vflag) {
    // One rank: its local atoms are all atoms. Positions and cell in the potential's units; the
    // core makes its own periodic images (the ghost atoms are not used).
    (void)eflag;
    const int nlocal = atom->nlocal;
    if (vflag_atom)
        error->all(FLERR, "pair bpnn: per-atom virials of 4G/CENT potentials need solver cg (the dense solver "
                          "gives the global virial only)");
    const double lf = length_factor_, ef = energy_factor_;
    species_.resize(nlocal);
    pos_.resize(3 * static_cast<size_t>(nlocal));
    for (int i = 0; i < nlocal; ++i) {
        species_[i] = type_map_[atom->type[i]];
        if (species_[i] < 0)
            error->one(FLERR, "pair bpnn: atom {} has a type mapped to NULL: 3G/4G/CENT potentials describe every "
                              "atom", atom->tag[i]);
        for (int c = 0; c < 3; ++c) pos_[3 * i + c] = atom->x[i][c] / lf;
    }
    const bool periodic = domain->xperiodic != 0;
    double cell[9] = {0};
    if (periodic) {
        const double* h = domain->h;  // xx yy zz yz xz xy; lattice vectors as rows
        cell[0] = h[0] / lf;
        cell[3] = h[5] / lf; cell[4] = h[1] / lf;
        cell[6] = h[4] / lf; cell[7] = h[3] / lf; cell[8] = h[2] / lf;
    }
    hdnnp::ChargeOptions o;
    o.ewald_tolerance = ewald_tol_ / ef;
    o.solver = solver_;
    o.cg_tolerance = qeq_tol_;
    o.background = background_;
    o.forces = true;
    o.virial = true;
    o.threads = threads_;
    // warm start of the CG solver from the previous step's charges and adjoint, by atom tag (one
    // rank holds every atom; no atom map is needed)
    tagint max_tag = 0;
    for (int i = 0; i < nlocal; ++i) max_tag = std::max(max_tag, atom->tag[i]);
    const bool warm = warm_start_ && solver_ == "cg" &&
                      static_cast<bigint>(q_by_tag_.size()) == static_cast<bigint>(max_tag) + 1;
    warm_q_.assign(nlocal, 0.0);
    warm_lam_.assign(nlocal, 0.0);
    if (warm)
        for (int i = 0; i < nlocal; ++i) {
            warm_q_[i] = q_by_tag_[atom->tag[i]];
            warm_lam_[i] = lam_by_tag_[atom->tag[i]];
        }
    try {
        pot4_->compute(nlocal, pos_.data(), species_.data(), periodic ? cell : nullptr, total_charge_, o, cres_,
                       warm ? &warm_q_ : nullptr, warm ? &warm_lam_ : nullptr);
    } catch (const std::exception& e) {
        error->one(FLERR, "pair bpnn: {}", e.what());
    }
    q_by_tag_.assign(static_cast<size_t>(max_tag) + 1, 0.0);
    lam_by_tag_.assign(static_cast<size_t>(max_tag) + 1, 0.0);
    for (int i = 0; i < nlocal; ++i) {
        q_by_tag_[atom->tag[i]] = cres_.charges[i];
        if (!cres_.adjoint.empty()) lam_by_tag_[atom->tag[i]] = cres_.adjoint[i];
    }
    double** f = atom->f;
    double* q = atom->q;
    for (int i = 0; i < nlocal; ++i) {
        for (int c = 0; c < 3; ++c) f[i][c] += cres_.forces[3 * i + c] * ef / lf;
        q[i] = cres_.charges[i];
    }
    finish_charged();
}

void PairBPNN::setup_fft(const int K[3], const int lo[3], const int hi[3]) {
    // (re)build the FFT when the mesh or a brick changed (balance): collectively. Real-to-complex
    // transforms over pencils, exchanged through LAMMPS's communicator (point to point): KSPACE's
    // FFT3d transforms complex data only, and its remaps took 30 % of a 2-rank step
    int changed = !rfft_;
    for (int d = 0; d < 3; ++d) changed |= K[d] != fft_K_[d] || lo[d] != fft_lo_[d] || hi[d] != fft_hi_[d];
    MPI_Allreduce(MPI_IN_PLACE, &changed, 1, MPI_INT, MPI_MAX, world);
    if (!changed) return;
    for (int d = 0; d < 3; ++d) { fft_K_[d] = K[d]; fft_lo_[d] = lo[d]; fft_hi_[d] = hi[d]; }
    hdnnp::MeshBrick mb;
    for (int d = 0; d < 3; ++d) { mb.K[d] = K[d]; mb.lo[d] = lo[d]; mb.hi[d] = hi[d]; }
    if (!dom_) dom_ = std::make_unique<LammpsDomain>(this);
    rfft_ = std::make_unique<hdnnp::DistributedRealFft>(mb, *dom_, threads_);
}

void PairBPNN::compute_domain(int eflag, int vflag) {
    // This rank's atoms and ghosts, in the potential's units; the core's distributed path.
    (void)eflag; (void)vflag;
    const int nlocal = atom->nlocal, nall = nlocal + atom->nghost;
    const double lf = length_factor_, ef = energy_factor_;
    species_.resize(nall);
    pos_.resize(3 * static_cast<size_t>(nall));
    ids_.resize(nall);
    for (int i = 0; i < nall; ++i) {
        species_[i] = type_map_[atom->type[i]];
        if (species_[i] < 0)
            error->one(FLERR, "pair bpnn: atom {} has a type mapped to NULL: 3G/4G/CENT potentials describe every atom",
                       atom->tag[i]);
        for (int c = 0; c < 3; ++c) pos_[3 * i + c] = atom->x[i][c] / lf;
        ids_[i] = atom->tag[i];
    }
    const int inum = list->inum;
    offsets_.resize(inum + 1);
    offsets_[0] = 0;
    for (int ii = 0; ii < inum; ++ii) offsets_[ii + 1] = offsets_[ii] + list->numneigh[list->ilist[ii]];
    hdnnp::DomainAtoms A;
    A.n_local = nlocal;
    A.n_all = nall;
    A.n_total = atom->natoms;
    A.positions = pos_.data();
    A.species = species_.data();
    A.ids = ids_.data();
    A.neighbors.n_centers = inum;
    A.neighbors.offsets = offsets_.data();
    A.neighbors.first = list->firstneigh;
    A.neighbors.centers = list->ilist;
    A.neighbors.mask = NEIGHMASK;
    const bool periodic = domain->xperiodic != 0;
    double cell[9] = {0}, origin[3] = {0, 0, 0};
    if (periodic) {
        const double* h = domain->h;  // xx yy zz yz xz xy; lattice vectors as rows
        cell[0] = h[0] / lf;
        cell[3] = h[5] / lf; cell[4] = h[1] / lf;
        cell[6] = h[4] / lf; cell[7] = h[3] / lf; cell[8] = h[2] / lf;
        for (int c = 0; c < 3; ++c) origin[c] = domain->boxlo[c] / lf;
        A.cell = cell;
        A.origin = origin;
    }
    if (periodic && ewald_.mesh[0] > 0) {
        // this rank's brick: the grid points of its sub-domain (fractional splits, PPPM's rule)
        const double* split[3] = {comm->xsplit, comm->ysplit, comm->zsplit};
        for (int d = 0; d < 3; ++d) {
            A.brick.K[d] = ewald_.mesh[d];
            A.brick.lo[d] = static_cast<int>(split[d][comm->myloc[d]] * ewald_.mesh[d]);
            A.brick.hi[d] = static_cast<int>(split[d][comm->myloc[d] + 1] * ewald_.mesh[d]);
        }
        if (comm->nprocs > 1) setup_fft(A.brick.K, A.brick.lo, A.brick.hi);
        else if (!serial_fft_ || std::memcmp(serial_K_, A.brick.K, sizeof serial_K_) != 0) {
            serial_fft_ = std::make_unique<hdnnp::SerialMeshFft>(A.brick.K, threads_);
            std::memcpy(serial_K_, A.brick.K, sizeof serial_K_);
        }
    }
    hdnnp::ChargeOptions o;
    o.fixed_ewald = true;
    o.ewald = ewald_;
    o.solver = "cg";
    o.cg_tolerance = qeq_tol_;
    o.background = background_;
    o.forces = true;
    o.virial = true;
    o.atom_virial = vflag_atom != 0;
    o.cg_preconditioner = qeq_pc_;
    o.threads = threads_;
    if (!dom_) dom_ = std::make_unique<LammpsDomain>(this);
    LammpsDomain& dom = *dom_;
    hdnnp::DomainFft* fft = comm->nprocs > 1 ? static_cast<hdnnp::DomainFft*>(rfft_.get()) : serial_fft_.get();
    const int M = n_members();
    dev_now_ = M > 1 && (dev_trigger_ || (dev_every_ > 0 && update->ntimestep % dev_every_ == 0));
    past_.resize(M);
    past2_.resize(M);
    auto find = [](const std::vector<Past>& v, tagint t) -> const Past* {
        auto it = std::lower_bound(v.begin(), v.end(), Past{t, 0.0, 0.0, 0.0});
        return it != v.end() && it->tag == t ? &*it : nullptr;
    };
    if (dev_now_) {
        res_.member_forces.assign(static_cast<size_t>(M) * 3 * nall, 0.0);
        res_.member_energies.assign(M, 0.0);
    }
    member_q_.assign(static_cast<size_t>(M) * nlocal, 0.0);
    member_lam_.assign(static_cast<size_t>(M) * nlocal, 0.0);
    for (int m = 0; m < M; ++m) {
        // warm start: the charges travel with the atoms (atom->q, the committee mean); a member's own
        // charges and adjoint of the last two steps are kept by tag on the rank that owned the atom
        // (an atom that changed rank, or whose charge was set from outside, starts from atom->q)
        warm_q_.assign(atom->q, atom->q + nlocal);
        warm_lam_.assign(nlocal, 0.0);
        for (int i = 0; i < nlocal; ++i) {
            const Past* p1 = find(past_[m], atom->tag[i]);
            if (!p1 || p1->written != warm_q_[i]) continue;
            warm_q_[i] = p1->q;
            warm_lam_[i] = p1->lam;
            const Past* p2 = warm_start_ == 2 ? find(past2_[m], atom->tag[i]) : nullptr;
            if (p2) {
                warm_q_[i] = 2.0 * p1->q - p2->q;
                warm_lam_[i] = 2.0 * p1->lam - p2->lam;
            }
        }
        hdnnp::ChargeResult& r = M == 1 ? cres_ : mres_;
        try {
            if (pot3_) members3_[m]->compute_domain(A, dom, fft, total_charge_, o, r);
            else if (warm_start_) members4_[m]->compute_domain(A, dom, fft, total_charge_, o, r, &warm_q_, &warm_lam_);
            else members4_[m]->compute_domain(A, dom, fft, total_charge_, o, r);
        } catch (const std::exception& e) {
            error->one(FLERR, "pair bpnn: {}", e.what());
        }
        std::copy(r.charges.begin(), r.charges.end(), member_q_.begin() + static_cast<size_t>(m) * nlocal);
        if (!r.adjoint.empty())
            std::copy(r.adjoint.begin(), r.adjoint.end(), member_lam_.begin() + static_cast<size_t>(m) * nlocal);
        if (dev_now_) {
            std::copy(r.forces.begin(), r.forces.end(), res_.member_forces.begin() + static_cast<size_t>(m) * 3 * nall);
            res_.member_energies[m] = r.energy;
        }
        if (M > 1) accumulate_member(m, M);
    }
    // the charges written (the committee mean) and each member's state for the next step's guess
    double* q = atom->q;
    for (int i = 0; i < nlocal; ++i) q[i] = cres_.charges[i];
    for (int m = 0; m < M; ++m) {
        past2_[m].swap(past_[m]);
        past_[m].resize(nlocal);
        const size_t o = static_cast<size_t>(m) * nlocal;
        for (int i = 0; i < nlocal; ++i) past_[m][i] = {atom->tag[i], member_q_[o + i], member_lam_[o + i], q[i]};
        std::sort(past_[m].begin(), past_[m].end());
    }
    double** f = atom->f;
    for (int i = 0; i < nall; ++i)
        for (int c = 0; c < 3; ++c) f[i][c] += cres_.forces[3 * i + c] * ef / lf;
    dom.forward(q, 1);   // (ghost atoms carry their owners' charges, e.g. for dumps of other styles)
    if (vflag_atom)
        for (int i = 0; i < nlocal; ++i)
            for (int k = 0; k < 6; ++k) vatom[i][k] += cres_.atom_virials[9 * i + kVoigt[k]] * ef;
    finish_charged();
    if (M > 1) charge_deviation();
    if (dev_now_) handle_deviation();
}

void PairBPNN::accumulate_member(int m, int M) {
    // cres_ := the committee mean of the members' results (mres_ holds member m's): energies,
    // forces, virials and charges averaged; CG iterations summed; extrapolation records joined
    const hdnnp::ChargeResult& r = mres_;
    hdnnp::ChargeResult& c = cres_;
    const double w = 1.0 / M;
    auto add = [&](std::vector<double>& to, const std::vector<double>& from) {
        if (m == 0) to.assign(from.size(), 0.0);
        for (size_t k = 0; k < from.size(); ++k) to[k] += w * from[k];
    };
    add(c.atom_energies, r.atom_energies);
    add(c.charges, r.charges);
    add(c.forces, r.forces);
    add(c.atom_virials, r.atom_virials);
    if (m == 0) {
        c.energy = c.electrostatic_energy = 0.0;
        std::fill(c.virial, c.virial + 9, 0.0);
        c.cg_iterations.clear();
        c.extrapolations.clear();
        c.charge_extrapolations.clear();
        c.extrapolating_atoms.assign(r.extrapolating_atoms.size(), 0);
    }
    c.energy += w * r.energy;
    c.electrostatic_energy += w * r.electrostatic_energy;
    for (int k = 0; k < 9; ++k) c.virial[k] += w * r.virial[k];
    c.cg_iterations.insert(c.cg_iterations.end(), r.cg_iterations.begin(), r.cg_iterations.end());
    c.extrapolations.insert(c.extrapolations.end(), r.extrapolations.begin(), r.extrapolations.end());
    c.charge_extrapolations.insert(c.charge_extrapolations.end(), r.charge_extrapolations.begin(),
                                   r.charge_extrapolations.end());
    for (size_t i = 0; i < r.extrapolating_atoms.size(); ++i)
        c.extrapolating_atoms[i] = std::max(c.extrapolating_atoms[i], r.extrapolating_atoms[i]);
}

void PairBPNN::charge_deviation() {
    // per local atom sqrt(mean_m (q_m - q_mean)^2) over the committee, and its maximum (compute pair)
    const int nlocal = atom->nlocal, M = n_members();
    double local_max = 0.0;
    for (int i = 0; i < nlocal; ++i) {
        double sq = 0.0;
        for (int m = 0; m < M; ++m) {
            const double d = member_q_[static_cast<size_t>(m) * nlocal + i] - cres_.charges[i];
            sq += d * d;
        }
        dq_atom_[i] = std::sqrt(sq / M);
        local_max = std::max(local_max, dq_atom_[i]);
    }
    double gmax = 0.0;
    MPI_Allreduce(&local_max, &gmax, 1, MPI_DOUBLE, MPI_MAX, world);
    q_dev_max_ = gmax;
    pvector[7] = comm->me == 0 ? gmax : 0.0;
}

void PairBPNN::finish_charged() {
    // energies and virial, compute pair's values and the extrapolation record of a charged
    // potential's result (this rank's local atoms)
    tally(cres_.energy, cres_.atom_energies.data(), cres_.virial);
    int iters = 0;
    for (int it : cres_.cg_iterations) iters += it;
    double qsum = 0.0;
    for (int i = 0; i < atom->nlocal; ++i) qsum += cres_.charges[i];
    // compute pair sums pvector over the ranks: shares of the sums, the iteration count on rank 0
    pvector[4] = cres_.electrostatic_energy * energy_factor_;
    pvector[5] = comm->me == 0 ? iters : 0.0;
    pvector[6] = qsum;
    // extrapolation: the descriptor records in the 2G result's fields
    res_.extrapolations = cres_.extrapolations;
    for (const auto& x : cres_.charge_extrapolations) res_.extrapolations.push_back(x);
    res_.extrapolating_atoms = cres_.extrapolating_atoms;
    grow_peratom();
    handle_extrapolation();
}

void PairBPNN::tally(double energy, const double* atom_energies, const double* W) {
    // energies and the global virial in LAMMPS units (W: row-major 3 x 3, native energy)
    const double ef = energy_factor_;
    if (eflag_global) eng_vdwl += energy * ef;
    if (eflag_atom)
        for (int i = 0; i < atom->nlocal; ++i) eatom[i] += atom_energies[i] * ef;
    if (vflag_global)
        for (int k = 0; k < 6; ++k) virial[k] += W[kVoigt[k]] * ef;
}

void PairBPNN::grow_peratom() {
    // per-atom arrays of fix pair (extrapolation grade, committee force deviation)
    if (atom->nmax <= nmax_) return;
    nmax_ = atom->nmax;
    memory->destroy(ext_grade_);
    memory->create(ext_grade_, nmax_, "pair:bpnn:extrapolation");
    memory->destroy(dev_atom_);
    memory->create(dev_atom_, nmax_, "pair:bpnn:force_deviation");
    std::fill(dev_atom_, dev_atom_ + nmax_, 0.0);
    memory->destroy(dq_atom_);
    memory->create(dq_atom_, nmax_, "pair:bpnn:charge_deviation");
    std::fill(dq_atom_, dq_atom_ + nmax_, 0.0);
}

int PairBPNN::pack_forward_comm(int n, int* list, double* buf, int, int*) {
    const int w = comm_width_;
    int k = 0;
    for (int ii = 0; ii < n; ++ii)
        for (int c = 0; c < w; ++c) buf[k++] = comm_buf_[static_cast<size_t>(list[ii]) * w + c];
    return k;
}

void PairBPNN::unpack_forward_comm(int n, int first, double* buf) {
    const int w = comm_width_;
    int k = 0;
    for (int i = first; i < first + n; ++i)
        for (int c = 0; c < w; ++c) comm_buf_[static_cast<size_t>(i) * w + c] = buf[k++];
}

int PairBPNN::pack_reverse_comm(int n, int first, double* buf) {
    if (comm_buf_) {   // the distributed charge path's per-atom values
        const int w = comm_width_;
        int k = 0;
        for (int i = first; i < first + n; ++i)
            for (int c = 0; c < w; ++c) buf[k++] = comm_buf_[static_cast<size_t>(i) * w + c];
        return k;
    }
    // Members' forces on ghost atoms go to their owners, like the forces themselves.
    const int M = n_members();
    const size_t na = res_.member_forces.size() / (3 * static_cast<size_t>(M));
    int k = 0;
    for (int i = first; i < first + n; ++i)
        for (int m = 0; m < M; ++m)
            for (int c = 0; c < 3; ++c) buf[k++] = res_.member_forces[(m * na + i) * 3 + c];
    return k;
}

void PairBPNN::unpack_reverse_comm(int n, int* list, double* buf) {
    if (comm_buf_) {
        const int w = comm_width_;
        int k = 0;
        for (int ii = 0; ii < n; ++ii)
            for (int c = 0; c < w; ++c) comm_buf_[static_cast<size_t>(list[ii]) * w + c] += buf[k++];
        return;
    }
    const int M = n_members();
    const size_t na = res_.member_forces.size() / (3 * static_cast<size_t>(M));
    int k = 0;
    for (int ii = 0; ii < n; ++ii) {
        const int i = list[ii];
        for (int m = 0; m < M; ++m)
            for (int c = 0; c < 3; ++c) res_.member_forces[(m * na + i) * 3 + c] += buf[k++];
    }
}

void PairBPNN::handle_deviation() {
    // Per-atom deviation sqrt(mean_m |F_m - F_mean|^2) of the complete (reverse-communicated)
    // member forces of the owned atoms; the global max/mean and the energy deviation.
    const int nlocal = atom->nlocal, M = n_members();
    const double ef = energy_factor_;
    // LAMMPS force units per member-force unit (a charged potential's forces are in its own units)
    const double ff = charged() ? energy_factor_ / length_factor_ : energy_factor_;
    double local_max = 0.0, local_sum = 0.0;
    if (M > 1) {
        comm->reverse_comm(this);
        const size_t na = res_.member_forces.size() / (3 * static_cast<size_t>(M));
        for (int i = 0; i < nlocal; ++i) {
            double mean[3] = {0, 0, 0}, sq = 0.0;
            for (int m = 0; m < M; ++m)
                for (int c = 0; c < 3; ++c) mean[c] += res_.member_forces[(m * na + i) * 3 + c] / M;
            for (int m = 0; m < M; ++m)
                for (int c = 0; c < 3; ++c) {
                    const double d = res_.member_forces[(m * na + i) * 3 + c] - mean[c];
                    sq += d * d;
                }
            dev_atom_[i] = std::sqrt(sq / M) * ff;
            local_max = std::max(local_max, dev_atom_[i]);
            local_sum += dev_atom_[i];
        }
    } else {
        std::fill(dev_atom_, dev_atom_ + nlocal, 0.0);
    }
    double gmax = 0.0, gmin = 0.0, gsum = 0.0;
    double local_min = nlocal ? *std::min_element(dev_atom_, dev_atom_ + nlocal) : 1e300;
    MPI_Allreduce(&local_max, &gmax, 1, MPI_DOUBLE, MPI_MAX, world);
    MPI_Allreduce(&local_min, &gmin, 1, MPI_DOUBLE, MPI_MIN, world);
    MPI_Allreduce(&local_sum, &gsum, 1, MPI_DOUBLE, MPI_SUM, world);
    std::vector<double> e_local(res_.member_energies), e_all(M, 0.0);
    MPI_Allreduce(e_local.data(), e_all.data(), M, MPI_DOUBLE, MPI_SUM, world);
    double e_mean = 0.0, e_var = 0.0;
    for (double e : e_all) e_mean += e / M;
    for (double e : e_all) e_var += (e - e_mean) * (e - e_mean) / M;
    const double e_std = std::sqrt(e_var) * ef;
    const double gmean = atom->natoms > 0 ? gsum / static_cast<double>(atom->natoms) : 0.0;
    // compute pair sums pvector over the ranks: global values live on rank 0 only.
    const bool root = comm->me == 0;
    pvector[1] = root ? gmax : 0.0;
    pvector[2] = root ? gmean : 0.0;
    pvector[3] = root ? e_std : 0.0;
    const bigint step = update->ntimestep;
    if (!dev_log_.empty() && root) {
        FILE* fp = std::fopen(dev_log_.c_str(), "a");
        if (!fp) error->one(FLERR, "pair bpnn: cannot open '{}' for writing", dev_log_);
        if (std::ftell(fp) == 0)
            std::fprintf(fp, "# step max_force_dev min_force_dev mean_force_dev energy_dev%s "
                             "(LAMMPS force and energy units, charges in e; committee of %d)\n",
                         charged() ? " max_charge_dev" : "", M);
        std::fprintf(fp, "%lld %.10g %.10g %.10g %.10g", static_cast<long long>(step), gmax, gmin, gmean, e_std);
        if (charged()) std::fprintf(fp, " %.10g", q_dev_max_);
        std::fprintf(fp, "\n");
        std::fclose(fp);
    }
    if (!dev_write_.empty() && gmax > dev_lo_ && (dev_hi_ <= 0.0 || gmax < dev_hi_))
        write_configuration(dev_write_, fmt::format("committee force deviation {:.6g}", gmax));
}

void PairBPNN::handle_extrapolation() {
    const int nlocal = atom->nlocal;
    std::fill(ext_grade_, ext_grade_ + nlocal, 0.0);
    // grade = how far outside the scaling.data range, in units of that range (max over SFs)
    for (const auto& x : res_.extrapolations) {
        const double width = x.max > x.min ? x.max - x.min : 1.0;
        const double g = x.value > x.max ? (x.value - x.max) / width : (x.min - x.value) / width;
        ext_grade_[x.atom] = std::max(ext_grade_[x.atom], g);
    }
    bigint local = 0;
    for (int i = 0; i < nlocal; ++i) local += res_.extrapolating_atoms[i] > 0 ? 1 : 0;
    pvector[0] = static_cast<double>(local);  // compute pair sums it over ranks
    bigint total = 0;
    MPI_Allreduce(&local, &total, 1, MPI_LMP_BIGINT, MPI_SUM, world);
    if (total == 0) return;
    ++ext_steps_;
    ++ext_since_line_;
    ext_max_atoms_ = std::max(ext_max_atoms_, total);
    const bigint step = update->ntimestep;
    if (ext_last_line_ < 0 || step - ext_last_line_ >= ext_every_) {
        if (comm->me == 0)
            utils::logmesg(lmp, "pair bpnn: extrapolation at step {}: {} atom(s) outside the symmetry-function "
                                "range of scaling.data ({} step(s) with extrapolation since the last line, at most "
                                "{} atoms; {} in total)\n",
                           step, total, ext_since_line_, ext_max_atoms_, ext_steps_);
        ext_last_line_ = step;
        ext_since_line_ = 0;
        ext_max_atoms_ = 0;
    }
    if (!ext_file_.empty()) write_configuration(ext_file_, "extrapolation");
    if (ext_stop_ > 0 && ext_steps_ >= ext_stop_)
        error->all(FLERR, "pair bpnn: stopping at step {}: {} step(s) with extrapolating atoms "
                          "(extrapolation_stop {})", step, ext_steps_, ext_stop_);
}

void PairBPNN::write_configuration(const std::string& path, const std::string& reason) {
    // Gather (tag, type, x) of all local atoms to rank 0 and append one n2p2 input.data frame
    // (LAMMPS units), written with a single write so that no frame is half-written. Energy
    // and forces are placeholders (0): the frame is meant for labelling by the reference method.
    const int nlocal = atom->nlocal;
    constexpr int R = 5;
    std::vector<double> mine(R * static_cast<size_t>(nlocal));
    for (int i = 0; i < nlocal; ++i) {
        double* r = &mine[R * static_cast<size_t>(i)];
        r[0] = static_cast<double>(atom->tag[i]);
        r[1] = atom->type[i];
        for (int c = 0; c < 3; ++c) r[2 + c] = atom->x[i][c];
    }
    int n = R * nlocal;
    std::vector<int> counts(comm->nprocs), displs(comm->nprocs, 0);
    MPI_Gather(&n, 1, MPI_INT, counts.data(), 1, MPI_INT, 0, world);
    std::vector<double> all;
    if (comm->me == 0) {
        for (int p = 1; p < comm->nprocs; ++p) displs[p] = displs[p - 1] + counts[p - 1];
        all.resize(static_cast<size_t>(displs.back()) + counts.back());
    }
    MPI_Gatherv(mine.data(), n, MPI_DOUBLE, all.data(), counts.data(), displs.data(), MPI_DOUBLE, 0, world);
    if (comm->me != 0) return;
    const size_t na = all.size() / R;
    std::vector<size_t> order(na);
    for (size_t k = 0; k < na; ++k) order[k] = k;
    std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return all[R * a] < all[R * b]; });
    const auto symbols = first().element_symbols();
    std::ostringstream os;
    os.precision(12);
    os << "begin\ncomment " << reason << " at step " << update->ntimestep
       << " (pair bpnn; LAMMPS units; energy and forces are placeholders, to be labelled)\n";
    if (domain->xperiodic || domain->yperiodic || domain->zperiodic) {
        const double* h = domain->h;  // xx yy zz yz xz xy
        os << "lattice " << h[0] << " 0 0\n";
        os << "lattice " << h[5] << " " << h[1] << " 0\n";
        os << "lattice " << h[4] << " " << h[3] << " " << h[2] << "\n";
    }
    for (size_t k : order) {
        const double* r = &all[R * k];
        const int e = type_map_[static_cast<int>(r[1])];
        os << "atom " << r[2] << " " << r[3] << " " << r[4] << " " << (e >= 0 ? symbols[e] : "X")
           << " 0 0 0 0 0\n";
    }
    os << "energy 0\ncharge 0\nend\n";
    const std::string s = os.str();
    FILE* fp = std::fopen(path.c_str(), "a");
    if (!fp) error->one(FLERR, "pair bpnn: cannot open '{}' for writing", path);
    const size_t w = std::fwrite(s.data(), 1, s.size(), fp);
    std::fclose(fp);
    if (w != s.size()) error->one(FLERR, "pair bpnn: short write to '{}'", path);
}

void* PairBPNN::extract_peratom(const char* name, int& ncol) {
    ncol = 0;
    if (std::strcmp(name, "extrapolation") == 0) return ext_grade_;
    if (std::strcmp(name, "force_deviation") == 0) return dev_atom_;
    if (std::strcmp(name, "charge_deviation") == 0) return dq_atom_;
    return nullptr;
}

void* PairBPNN::extract(const char* name, int& dim) {
    // `fix ID all pair N bpnn force_deviation 1` sets this on its steps.
    dim = 0;
    if (std::strcmp(name, "force_deviation_flag") == 0) return &dev_trigger_;
    return nullptr;
}

double PairBPNN::memory_usage() {
    return 2.0 * static_cast<double>(nmax_) * sizeof(double) + res_.member_forces.capacity() * sizeof(double) + species_.capacity() * sizeof(int32_t) +
           offsets_.capacity() * sizeof(int64_t) + res_.forces.capacity() * sizeof(double);
}
