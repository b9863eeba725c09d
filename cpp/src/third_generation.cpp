#include "hdnnp/third_generation.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <memory>

#include "hdnnp/errors.hpp"
#include "hdnnp/neighbor.hpp"

namespace hdnnp {

std::shared_ptr<const ThirdGenerationPotential> ThirdGenerationPotential::load(const std::string& dir,
                                                                               const std::string& correction,
                                                                               bool short_networks) {
    auto p = std::make_shared<ThirdGenerationPotential>();
    const std::string nn = dir.empty() || dir.back() == '/' ? dir + "input.nn" : dir + "/input.nn";
    p->path_ = nn;
    {
        std::ifstream f(nn);
        if (!f) throw ConfigError(nn + ": no such file");
    }
    const Settings S = Settings::read_file(nn);   // read once; both models are built from it
    const std::string gen = S.has("nnp_type") ? S.args("nnp_type").at(0) : "2";
    if (gen != "3" && gen != "3G-HDNNP")
        throw ConfigError(nn + ": not a 3G potential (nnp_generation " + gen + ")");
    LoadOptions how;
    how.part = true;
    how.weights = short_networks;
    p->has_short_ = short_networks;
    p->short_ = Model::load(dir, S, how);
    how.weights = true;
    how.networks = NetworkSet::Charge;
    p->charge_ = Model::load(dir, S, how);
    const Model& M = *p->short_;
    if (M.mean_energy() != 0.0 || M.conv_energy() != 1.0)
        throw ConfigError(nn + ": normalised 3G potentials are not supported yet");
    if (short_networks && M.baseline_auto() && !M.baseline())
        throw ConfigError(nn + ": 'hdnnp_zbl auto' leaves the baseline's radii to training; a potential to predict "
                          "with needs them written out ('hdnnp_zbl <element> <element> <r_inner> <r_outer>', as "
                          "hdnnp train writes them)");
    if (p->charge_->element_symbols() != M.element_symbols())
        throw ConfigError(nn + ": the charge and short networks must describe the same elements");
    p->es_ = ElectrostaticsSettings::read(S, nn);
    p->warnings_ = M.warnings();
    std::string ignored;
    for (const auto& k : {"ewald_alpha", "ewald_cutoff", "ewald_kmax"})
        if (S.has(k)) ignored += (ignored.empty() ? "" : ", ") + std::string(k);
    if (!ignored.empty())
        p->warnings_.push_back(nn + ": " + ignored + " (RuNNer's fixed Ewald parameters) are not used: the Ewald "
                               "parameters follow from ewald_prec (n2p2's methods) or an energy tolerance, and are "
                               "reported with each periodic result");
    std::string mode = correction;
    if (mode.empty()) {
        const std::string flag = S.has("enforce_totcharge") ? S.args("enforce_totcharge").at(0) : "0";
        if (flag != "0" && flag != "1")
            throw ConfigError(nn + ":" + std::to_string(S.get("enforce_totcharge").line) +
                              ": enforce_totcharge must be 0 or 1, not " + flag);
        mode = flag == "1" ? "rescale" : "none";
    }
    if (mode == "none") p->correction_ = ChargeCorrection::None;
    else if (mode == "rescale") p->correction_ = ChargeCorrection::Rescale;
    else if (mode == "shift") p->correction_ = ChargeCorrection::Shift;
    else throw ConfigError("charge_correction must be one of none, rescale, shift, not '" + mode + "'");
    return p;
}

void ThirdGenerationPotential::correct(ChargeCorrection mode, int64_t n, const double* q, double total, double* Q,
                                       const double* g, double* out, DomainComm* comm) {
    if (mode == ChargeCorrection::None) {
        if (Q) std::copy(q, q + n, Q);
        if (g) std::copy(g, g + n, out);
        return;
    }
    if (mode == ChargeCorrection::Shift) {
        CompensatedSum s, sg;
        for (int64_t i = 0; i < n; ++i) { s.add(q[i]); if (g) sg.add(g[i]); }
        double t[3] = {s.value(), sg.value(), static_cast<double>(n)};
        if (comm) comm->sum(t, 3);
        const double d = (t[0] - total) / t[2], mg = t[1] / t[2];
        for (int64_t i = 0; i < n; ++i) {
            if (Q) Q[i] = q[i] - d;
            if (g) out[i] = g[i] - mg;
        }
        return;
    }
    // rescale: with P, N the sums of the positive and the negative charges and e = (P + N - total)/2,
    // positive charges are scaled by (P - e)/P, the others by (N - e)/N
    CompensatedSum sp_, sn_, gp_, gn_;
    for (int64_t i = 0; i < n; ++i) {
        (q[i] > 0.0 ? sp_ : sn_).add(q[i]);
        if (g) (q[i] > 0.0 ? gp_ : gn_).add(g[i] * q[i]);
    }
    double t[4] = {sp_.value(), sn_.value(), gp_.value(), gn_.value()};
    if (comm) comm->sum(t, 4);
    const double P = t[0], N = t[1];
    if (P == 0.0 || N == 0.0)
        throw InputError(std::string("charge rescaling (enforce_totcharge) needs both positive and negative atomic "
                                     "charges; the charge networks give only ") +
                         (P == 0.0 ? "negative (or zero)" : "positive") + " ones");
    const double e = 0.5 * (P + N - total), sp = 1.0 - e / P, sn = 1.0 - e / N;
    const double gp = t[2], gn = t[3];
    for (int64_t i = 0; i < n; ++i) {
        const bool pos = q[i] > 0.0;
        if (Q) Q[i] = q[i] * (pos ? sp : sn);
        if (g)
            out[i] = pos ? g[i] * sp + gp * (e - 0.5 * P) / (P * P) - 0.5 * gn / N
                         : g[i] * sn - 0.5 * gp / P + gn * (e - 0.5 * N) / (N * N);
    }
}

void ThirdGenerationPotential::compute(int64_t n, const double* pos, const int32_t* species, const double* cell,
                                       double q_tot, const ChargeOptions& opt, ChargeResult& out) const {
    const Model& Ms = *short_;
    const Model& Mq = *charge_;
    check_species(n, species, Ms.n_elements());
    const bool periodic = cell != nullptr;
    ElectrostaticsSettings::check_charged_cell(periodic, q_tot, opt, path_);
    const bool pbc[3] = {periodic, periodic, periodic};
    const bool grads = opt.forces || opt.virial;
    // charge descriptors (scaled) and network charges
    DescriptorPass dp;
    dp.run(Mq, n, pos, species, cell, opt.threads);
    ComputeResult& dres = dp.res;
    const AtomsView& Aq = dp.atoms;
    const NeighborList& nlq = dp.nl;
    out.charge_extrapolations = std::move(dres.extrapolations);
    std::vector<double>& G = dres.descriptors;
    const auto& off = dres.descriptor_offsets;
    NetworkWorkspace ws;
    out.network_charges.assign(n, 0.0);
    for (int64_t i = 0; i < n; ++i)
        out.network_charges[i] = Mq.elements()[species[i]].network.evaluate(&G[off[i]], nullptr, ws);
    out.charges.assign(n, 0.0);
    correct(correction_, n, out.network_charges.data(), q_tot, out.charges.data());
    const auto& Q = out.charges;
    CompensatedSum qs;
    for (int64_t i = 0; i < n; ++i) qs.add(Q[i]);
    const double S = qs.value();
    // point-charge electrostatics
    std::vector<double> zero(n, 0.0);   // (point charges: zero widths; and the zero adjoint below)
    const ElectrostaticsSetup es = es_.setup(opt, n, pos, cell, zero.data(), 0.0, true, out.ewald);
    const double volume = periodic ? cell_volume(cell) : 0.0;
    const Electrostatics op(es);
    out.n_kvectors = op.n_kvectors();
    out.mesh_points = op.mesh_points();
    std::vector<double> dEdQ(n);
    const double e_elec = op.energy(Q.data(), dEdQ.data());
    // a charged cell's background, with the charges' sum S a function of the positions
    const double e_bg = periodic && S != 0.0 ? es_.background_energy(S, out.ewald.eta, volume) : 0.0;
    out.electrostatic_energy = e_elec + e_bg;
    std::fill(out.dipole, out.dipole + 3, 0.0);
    if (!periodic)
        for (int64_t i = 0; i < n; ++i)
            for (int d = 0; d < 3; ++d) out.dipole[d] += Q[i] * pos[3 * i + d];
    // short networks (and the baseline)
    std::unique_ptr<NeighborList> nls_own;
    if (Ms.cutoff() != Mq.cutoff())
        nls_own = std::make_unique<NeighborList>(build_neighbor_list(pos, n, cell, pbc, Ms.cutoff(), 1e-6));
    AtomsView As = Aq;
    As.neighbors = nls_own ? nls_own->view() : nlq.view();
    ComputeOptions sopt;
    sopt.forces = grads; sopt.virial = grads; sopt.threads = opt.threads; sopt.baseline = false;
    sopt.atom_virial = grads && opt.atom_virial;
    ComputeResult sres;
    if (has_short_) {
        Ms.compute(As, sopt, sres);
    } else {   // (the electrostatic part alone: training's step 2)
        sres.energy = 0.0;
        sres.atom_energies.assign(n, 0.0);
        sres.extrapolating_atoms.assign(n, 0);
        sres.forces.assign(grads ? 3 * n : 0, 0.0);
    }
    out.atom_energies_short = sres.atom_energies;
    const double e_short = sres.energy;
    out.baseline_energy = 0.0;
    if (has_short_ && Ms.baseline()) {
        Ms.baseline()->add(As, sopt, sres);
        out.baseline_energy = sres.energy - e_short;
    }
    out.extrapolations = std::move(sres.extrapolations);
    out.extrapolating_atoms = sres.extrapolating_atoms;
    for (int64_t i = 0; i < n; ++i)
        out.extrapolating_atoms[i] = std::max(out.extrapolating_atoms[i], dres.extrapolating_atoms[i]);
    out.atom_energies.assign(n, 0.0);
    for (int64_t i = 0; i < n; ++i) out.atom_energies[i] = sres.atom_energies[i] + 0.5 * Q[i] * dEdQ[i] + e_bg / n;
    CompensatedSum total;
    total.add(sres.energy);
    total.add(e_elec);
    total.add(e_bg);
    out.energy = total.value();
    out.forces.clear();
    out.adjoint.clear();
    out.electronegativities.clear();
    out.cg_iterations.clear();
    std::fill(out.virial, out.virial + 9, 0.0);
    if (!grads) return;
    charge_gradient(n, species, G.data(), off.data(), out.network_charges.data(), q_tot, dEdQ.data(), e_bg, S, nullptr);
    ComputeResult fres;
    dp.forces(Mq, G.data(), opt.threads, fres);
    out.forces = std::move(fres.forces);
    double W[9] = {0};
    op.add_derivatives(Q.data(), zero.data(), out.forces.data(), W);
    for (int64_t k = 0; k < 3 * n; ++k) out.forces[k] += sres.forces[k];
    for (int k = 0; k < 9; ++k) out.virial[k] = fres.virial[k] + W[k] + sres.virial[k];
    for (int d = 0; d < 3; ++d) out.virial[4 * d] += e_bg;
}

void ThirdGenerationPotential::charge_gradient(int64_t n, const int32_t* species, double* G, const int64_t* off,
                                               const double* q_net, double q_tot, double* dEdQ, double e_bg, double S,
                                               DomainComm* comm) const {
    // dE/dq of the network charges through the correction (the background's energy depends on
    // S = sum Q), then dE/dG (raw G) = dE/dq dq/dG x the scaling factor, written over G
    if (e_bg != 0.0)
        for (int64_t i = 0; i < n; ++i) dEdQ[i] += 2.0 * e_bg / S;
    std::vector<double> g(n), dq;
    correct(correction_, n, q_net, q_tot, nullptr, dEdQ, g.data(), comm);
    NetworkWorkspace ws;
    for (int64_t i = 0; i < n; ++i) {
        const ElementModel& em = charge_->elements()[species[i]];
        const int K = em.descriptor.size();
        dq.assign(K, 0.0);
        em.network.evaluate(&G[off[i]], dq.data(), ws);
        for (int k = 0; k < K; ++k) G[off[i] + k] = g[i] * dq[k] * em.factor[k];
    }
}

EwaldParameters ThirdGenerationPotential::ewald_parameters(const ChargeOptions& opt, const double* cell,
                                                           int64_t n_total) const {
    return es_.choose(opt, cell, n_total, 0.0, true);
}

void ThirdGenerationPotential::compute_domain(const DomainAtoms& A, DomainComm& comm, DomainFft* fft, double q_tot,
                                              const ChargeOptions& opt, ChargeResult& out) const {
    const Model& Ms = *short_;
    const Model& Mq = *charge_;
    const int64_t n = A.n_local, na = A.n_all;
    if (na > 0) check_species(na, A.species, Ms.n_elements());
    const bool periodic = A.cell != nullptr;
    ElectrostaticsSettings::check_charged_cell(periodic, q_tot, opt, path_);
    if (periodic && !opt.fixed_ewald)
        throw std::invalid_argument("compute_domain: periodic systems need fixed Ewald parameters (ewald_parameters())");
    if (A.n_total < 1) throw InputError("the system has no atoms");
    const bool grads = opt.forces || opt.virial;
    AtomsView view;
    view.n_local = n; view.n_all = na; view.positions = A.positions; view.species = A.species;
    view.neighbors = A.neighbors;
    // charge descriptors (scaled), network charges, the correction (sums over all domains)
    DescriptorPass dp;
    dp.run(Mq, view, opt.threads);
    out.charge_extrapolations = std::move(dp.res.extrapolations);
    std::vector<double>& G = dp.res.descriptors;
    const auto& off = dp.res.descriptor_offsets;
    NetworkWorkspace ws;
    out.network_charges.assign(n, 0.0);
    for (int64_t i = 0; i < n; ++i)
        out.network_charges[i] = Mq.elements()[A.species[i]].network.evaluate(&G[off[i]], nullptr, ws);
    out.charges.assign(n, 0.0);
    correct(correction_, n, out.network_charges.data(), q_tot, out.charges.data(), nullptr, nullptr, &comm);
    const auto& Q = out.charges;
    CompensatedSum qs;
    for (int64_t i = 0; i < n; ++i) qs.add(Q[i]);
    double S = qs.value();
    comm.sum(&S, 1);
    // point-charge electrostatics on the domain
    std::vector<double> zero(na, 0.0);
    out.ewald = periodic ? opt.ewald : EwaldParameters();
    const DomainElectrostatics op(A, zero.data(), es_.four_pi_eps, es_.screening, out.ewald, comm, fft, opt.threads);
    out.n_kvectors = op.n_kvectors();
    out.mesh_points = op.mesh_points();
    std::vector<double> dEdQ(n);
    const double e_elec = op.energy(Q.data(), dEdQ.data());
    const double e_bg = periodic && S != 0.0 ? es_.background_energy(S, out.ewald.eta, cell_volume(A.cell)) : 0.0;
    const double e_bg_atom = e_bg / A.n_total;
    out.electrostatic_energy = e_elec + e_bg_atom * n;
    std::fill(out.dipole, out.dipole + 3, 0.0);
    if (!periodic)
        for (int64_t i = 0; i < n; ++i)
            for (int d = 0; d < 3; ++d) out.dipole[d] += Q[i] * A.positions[3 * i + d];
    // short networks and the baseline on the same neighbour list (it reaches both cutoffs)
    ComputeOptions sopt;
    sopt.forces = grads; sopt.virial = grads; sopt.threads = opt.threads; sopt.baseline = false;
    sopt.atom_virial = grads && opt.atom_virial;
    ComputeResult sres;
    Ms.compute(view, sopt, sres);
    out.atom_energies_short = sres.atom_energies;
    const double e_short = sres.energy;
    out.baseline_energy = 0.0;
    if (Ms.baseline()) {
        Ms.baseline()->add(view, sopt, sres);
        out.baseline_energy = sres.energy - e_short;
    }
    out.extrapolations = std::move(sres.extrapolations);
    out.extrapolating_atoms = sres.extrapolating_atoms;
    for (int64_t i = 0; i < n; ++i)
        out.extrapolating_atoms[i] = std::max(out.extrapolating_atoms[i], dp.res.extrapolating_atoms[i]);
    out.atom_energies.assign(n, 0.0);
    for (int64_t i = 0; i < n; ++i) out.atom_energies[i] = sres.atom_energies[i] + 0.5 * Q[i] * dEdQ[i] + e_bg_atom;
    CompensatedSum total;
    total.add(sres.energy);
    total.add(e_elec);
    total.add(e_bg_atom * n);
    out.energy = total.value();
    out.forces.clear();
    out.adjoint.clear();
    out.electronegativities.clear();
    out.cg_iterations.clear();
    std::fill(out.virial, out.virial + 9, 0.0);
    if (!grads) return;
    charge_gradient(n, A.species, G.data(), off.data(), out.network_charges.data(), q_tot, dEdQ.data(), e_bg, S,
                    &comm);
    ComputeResult fres;
    dp.forces(Mq, G.data(), opt.threads, fres, opt.atom_virial);
    out.forces = std::move(fres.forces);
    out.forces.resize(3 * na, 0.0);
    double W[9] = {0};
    if (opt.atom_virial) {
        out.atom_virials = std::move(fres.atom_virials);
        out.atom_virials.resize(9 * n, 0.0);
    }
    op.add_derivatives(Q.data(), zero.data(), out.forces.data(), W, opt.atom_virial ? &out.atom_virials : nullptr);
    for (int64_t k = 0; k < 3 * na; ++k) out.forces[k] += sres.forces[k];
    for (int k = 0; k < 9; ++k) out.virial[k] = fres.virial[k] + W[k] + sres.virial[k];
    if (comm.root())
        for (int d = 0; d < 3; ++d) out.virial[4 * d] += e_bg;
    if (opt.atom_virial) finish_atom_virials(n, e_bg / A.n_total, &sres.atom_virials, out.atom_virials);
}

}  // namespace hdnnp
