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
#include "hdnnp/errors.hpp"
#include "memory.h"
#include "neigh_list.h"
#include "neighbor.h"
#include "update.h"

using namespace LAMMPS_NS;

namespace {

// Same values as the Python API (ASE's CODATA 2014 units), so that LAMMPS and Python agree
// to round-off: Angstrom per length unit, eV per energy unit.
double length_in_angstrom(std::string u) {
    for (auto& c : u) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    if (u == "angstrom" || u == "a" || u == "ang") return 1.0;
    if (u == "bohr" || u == "au" || u == "a0") return 0.5291772105638411;
    if (u == "nm") return 10.0;
    return 0.0;
}
double energy_in_ev(std::string u) {
    for (auto& c : u) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    if (u == "ev") return 1.0;
    if (u == "ha" || u == "hartree" || u == "au") return 27.211386024367243;
    if (u == "ry" || u == "rydberg") return 13.605693012183622;
    if (u == "kcal/mol") return 0.04336410390059322;
    if (u == "kj/mol") return 0.010364269574711572;
    if (u == "mev") return 1e-3;
    return 0.0;
}

}  // namespace

PairBPNN::PairBPNN(LAMMPS* lmp) : Pair(lmp) {
    single_enable = 0;
    restartinfo = 0;
    one_coeff = 1;
    manybody_flag = 1;
    no_virial_fdotr_compute = 1;  // the core returns the virial (sum over pairs)
    centroidstressflag = CENTROID_NOTAVAIL;
    nextra = 1;
    pvector = new double[nextra];
}

PairBPNN::~PairBPNN() {
    delete[] pvector;
    memory->destroy(ext_grade_);
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
        } else {
            error->all(FLERR, "pair_style bpnn: unknown keyword '{}' (known: threads, length_factor, "
                              "energy_factor, extrapolation_every, extrapolation_stop, extrapolation_write)", k);
        }
    }
    if (explicit_units_ && !(length_factor_ > 0.0 && energy_factor_ > 0.0))
        error->all(FLERR, "pair_style bpnn: length_factor and energy_factor must both be given and positive");
}

void PairBPNN::read_units_from_potential() {
    // The declaration written by hdnnp: a line "# hdnnp: length_unit=Bohr energy_unit=Ha".
    const std::string path = directory_ + "/input.nn";
    std::ifstream in(path);
    std::string line;
    while (std::getline(in, line)) {
        const auto pos = line.find("hdnnp:");
        if (line.rfind("#", 0) != 0 || pos == std::string::npos) continue;
        std::istringstream ss(line.substr(pos + 6));
        std::string kv;
        while (ss >> kv) {
            const auto eq = kv.find('=');
            if (eq == std::string::npos) continue;
            if (kv.substr(0, eq) == "length_unit") native_length_ = kv.substr(eq + 1);
            if (kv.substr(0, eq) == "energy_unit") native_energy_ = kv.substr(eq + 1);
        }
    }
}

void PairBPNN::coeff(int narg, char** arg) {
    const int ntypes = atom->ntypes;
    if (narg != 3 + ntypes)
        error->all(FLERR, "pair_coeff for bpnn: expected '* * <potential dir> <element or NULL per type>' "
                          "with {} element(s), got {} argument(s)", ntypes, narg);
    if (std::strcmp(arg[0], "*") != 0 || std::strcmp(arg[1], "*") != 0)
        error->all(FLERR, "pair_coeff for bpnn: the first two arguments must be '* *'");
    directory_ = arg[2];
    try {
        model_ = hdnnp::Model::load(directory_);
    } catch (const std::exception& e) {
        error->all(FLERR, "pair bpnn: cannot load potential '{}': {}", directory_, e.what());
    }
    if (!allocated) {
        allocated = 1;
        memory->create(setflag, ntypes + 1, ntypes + 1, "pair:setflag");
        memory->create(cutsq, ntypes + 1, ntypes + 1, "pair:cutsq");
    }
    type_map_.assign(ntypes + 1, -1);
    std::string known;
    for (const auto& s : model_->element_symbols()) known += (known.empty() ? "" : " ") + s;
    for (int t = 1; t <= ntypes; ++t) {
        const std::string el = arg[2 + t];
        if (el == "NULL") continue;
        const int e = model_->element_index(el);
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
    if (!model_) error->all(FLERR, "pair style bpnn: pair_coeff has not been given");
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
        const double l = length_in_angstrom(native_length_), e = energy_in_ev(native_energy_);
        if (l == 0.0) error->all(FLERR, "pair bpnn: unknown length unit '{}' in {}/input.nn", native_length_, directory_);
        if (e == 0.0) error->all(FLERR, "pair bpnn: unknown energy unit '{}' in {}/input.nn", native_energy_, directory_);
        length_factor_ = l;
        energy_factor_ = e / e_lmp;
    }
    neighbor->add_request(this, NeighConst::REQ_FULL);
}

double PairBPNN::init_one(int, int) { return model_->cutoff() * length_factor_; }

void PairBPNN::compute(int eflag, int vflag) {
    ev_init(eflag, vflag);
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
    try {
        model_->compute(A, opt, res_);
    } catch (const std::exception& e) {
        error->one(FLERR, "pair bpnn: {}", e.what());
    }
    const double ef = energy_factor_;
    double** f = atom->f;
    for (int i = 0; i < nall; ++i)
        for (int c = 0; c < 3; ++c) f[i][c] += res_.forces[3 * i + c] * ef;
    if (eflag_global) eng_vdwl += res_.energy * ef;
    if (eflag_atom)
        for (int i = 0; i < nlocal; ++i) eatom[i] += res_.atom_energies[i] * ef;
    // virial order in LAMMPS: xx, yy, zz, xy, xz, yz; W is row-major 3x3.
    static const int vi[6] = {0, 4, 8, 1, 2, 5};
    if (vflag_global)
        for (int k = 0; k < 6; ++k) virial[k] += res_.virial[vi[k]] * ef;
    if (vflag_atom)
        for (int i = 0; i < nlocal; ++i)
            for (int k = 0; k < 6; ++k) vatom[i][k] += res_.atom_virials[9 * i + vi[k]] * ef;
    handle_extrapolation();
}

void PairBPNN::handle_extrapolation() {
    const int nlocal = atom->nlocal;
    if (atom->nmax > nmax_) {
        nmax_ = atom->nmax;
        memory->destroy(ext_grade_);
        memory->create(ext_grade_, nmax_, "pair:bpnn:extrapolation");
    }
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
    if (!ext_file_.empty()) write_configuration("extrapolation");
    if (ext_stop_ > 0 && ext_steps_ >= ext_stop_)
        error->all(FLERR, "pair bpnn: stopping at step {}: {} step(s) with extrapolating atoms "
                          "(extrapolation_stop {})", step, ext_steps_, ext_stop_);
}

void PairBPNN::write_configuration(const char* reason) {
    // Gather (tag, type, x, f) of all local atoms to rank 0 and append one n2p2 input.data
    // frame (LAMMPS units), written with a single write so that no frame is half-written.
    const int nlocal = atom->nlocal;
    std::vector<double> mine(8 * static_cast<size_t>(nlocal));
    for (int i = 0; i < nlocal; ++i) {
        double* r = &mine[8 * static_cast<size_t>(i)];
        r[0] = static_cast<double>(atom->tag[i]);
        r[1] = atom->type[i];
        for (int c = 0; c < 3; ++c) { r[2 + c] = atom->x[i][c]; r[5 + c] = atom->f[i][c]; }
    }
    int n = 8 * nlocal;
    std::vector<int> counts(comm->nprocs), displs(comm->nprocs, 0);
    MPI_Gather(&n, 1, MPI_INT, counts.data(), 1, MPI_INT, 0, world);
    std::vector<double> all;
    if (comm->me == 0) {
        for (int p = 1; p < comm->nprocs; ++p) displs[p] = displs[p - 1] + counts[p - 1];
        all.resize(static_cast<size_t>(displs.back()) + counts.back());
    }
    MPI_Gatherv(mine.data(), n, MPI_DOUBLE, all.data(), counts.data(), displs.data(), MPI_DOUBLE, 0, world);
    if (comm->me != 0) return;
    const size_t na = all.size() / 8;
    std::vector<size_t> order(na);
    for (size_t k = 0; k < na; ++k) order[k] = k;
    std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return all[8 * a] < all[8 * b]; });
    const auto symbols = model_->element_symbols();
    std::ostringstream os;
    os.precision(12);
    os << "begin\ncomment " << reason << " at step " << update->ntimestep
       << " (pair bpnn; LAMMPS units, forces from the potential)\n";
    if (domain->xperiodic || domain->yperiodic || domain->zperiodic) {
        const double* h = domain->h;  // xx yy zz yz xz xy
        os << "lattice " << h[0] << " 0 0\n";
        os << "lattice " << h[5] << " " << h[1] << " 0\n";
        os << "lattice " << h[4] << " " << h[3] << " " << h[2] << "\n";
    }
    for (size_t k : order) {
        const double* r = &all[8 * k];
        const int e = type_map_[static_cast<int>(r[1])];
        os << "atom " << r[2] << " " << r[3] << " " << r[4] << " " << (e >= 0 ? symbols[e] : "X")
           << " 0 0 " << r[5] << " " << r[6] << " " << r[7] << "\n";
    }
    os << "energy 0\ncharge 0\nend\n";
    const std::string s = os.str();
    FILE* fp = std::fopen(ext_file_.c_str(), "a");
    if (!fp) error->one(FLERR, "pair bpnn: cannot open '{}' for writing", ext_file_);
    const size_t w = std::fwrite(s.data(), 1, s.size(), fp);
    std::fclose(fp);
    if (w != s.size()) error->one(FLERR, "pair bpnn: short write to '{}'", ext_file_);
}

void* PairBPNN::extract_peratom(const char* name, int& ncol) {
    if (std::strcmp(name, "extrapolation") == 0) {
        ncol = 0;
        return ext_grade_;
    }
    return nullptr;
}

double PairBPNN::memory_usage() {
    return static_cast<double>(nmax_) * sizeof(double) + species_.capacity() * sizeof(int32_t) +
           offsets_.capacity() * sizeof(int64_t) + res_.forces.capacity() * sizeof(double);
}
