#include "hdnnp/fourth_generation.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "hdnnp/errors.hpp"
#include "hdnnp/neighbor.hpp"
#include "hdnnp/qeq.hpp"

namespace hdnnp {
namespace {

std::string join(const std::string& dir, const std::string& f) {
    return dir.empty() || dir.back() == '/' ? dir + f : dir + "/" + f;
}

NeuralNetwork network(const Settings& S, const std::string& kind, int n_in, const std::string& where) {
    const std::string h = "global_hidden_layers_" + kind, nd = "global_nodes_" + kind, ac = "global_activation_" + kind;
    for (const auto& k : {h, nd, ac})
        if (!S.has(k)) throw ConfigError(where + ": " + k + " is missing");
    const long nh = parse_int(S.args(h).at(0), where);
    const auto nodes = S.args(nd), acts = S.args(ac);
    if (static_cast<long>(nodes.size()) < nh || static_cast<long>(acts.size()) < nh + 1)
        throw ConfigError(where + ": " + nd + "/" + ac + " do not match " + h + " " + std::to_string(nh));
    std::vector<int> sizes{n_in};
    std::vector<Activation> av;
    for (long l = 0; l < nh; ++l) sizes.push_back(static_cast<int>(parse_int(nodes[l], where)));
    sizes.push_back(1);
    for (long l = 0; l <= nh; ++l) av.push_back(activation_from_letter(acts[l], where));
    return NeuralNetwork(sizes, av, S.has("normalize_nodes"));
}

}  // namespace

std::shared_ptr<const FourthGenerationPotential> FourthGenerationPotential::load(const std::string& dir) {
    auto p = std::make_shared<FourthGenerationPotential>();
    p->desc_ = Model::load(dir, false);
    const Model& M = *p->desc_;
    const Settings& S = M.settings();
    const std::string nn = join(dir, "input.nn");
    p->path_ = nn;
    const std::string gen = S.has("nnp_type") ? S.args("nnp_type").at(0) : "2";
    p->cent_ = gen == "cent" || gen == "CENT";
    if (gen != "4" && gen != "4G-HDNNP" && !p->cent_)
        throw ConfigError(nn + ": not a 4G or CENT potential (nnp_generation " + gen + ")");
    if (M.scaling_mode() != ScalingMode::None && M.elements().front().g_min.empty())
        throw ModelFileError(join(dir, "scaling.data") + ": no such file");
    if (M.mean_energy() != 0.0 || M.conv_energy() != 1.0)
        throw ConfigError(nn + ": normalised 4G potentials are not supported yet");
    const int ne = M.n_elements();
    p->sigma_.assign(ne, 0.0);
    p->hardness_.assign(ne, 0.0);
    for (const auto& e : S.all("fixed_gausswidth")) {
        const auto t = split_ws(e.args);
        const std::string w = nn + ":" + std::to_string(e.line);
        if (t.size() < 2) throw ConfigError(w + ": expected 'fixed_gausswidth <element> <width>'");
        const int el = M.element_index(t[0]);
        if (el < 0) throw ConfigError(w + ": fixed_gausswidth for " + t[0] + ", which is not an element of this potential");
        p->sigma_[el] = parse_double(t[1], w);
    }
    for (int e = 0; e < ne; ++e)
        if (!(p->sigma_[e] > 0.0)) throw ConfigError(nn + ": fixed_gausswidth must be given for every element");
    p->es_ = ElectrostaticsSettings::read(S, nn);
    if (p->cent_ && S.has("screen_electrostatics"))
        throw ConfigError(nn + ":" + std::to_string(S.get("screen_electrostatics").line) + ": screen_electrostatics "
                          "cannot be used with CENT (the energy is the charge-equilibration functional itself)");
    if (M.baseline_auto() && !M.baseline())
        throw ConfigError(nn + ": 'hdnnp_zbl auto' leaves the baseline's radii to training; a potential to predict "
                          "with needs them written out ('hdnnp_zbl <element> <element> <r_inner> <r_outer>', as "
                          "hdnnp train writes them)");
    for (int e = 0; e < ne; ++e) {
        const ElementModel& em = M.elements()[e];
        const int K = em.descriptor.size();
        char name[40];
        p->elec_.push_back(network(S, "electrostatic", K, nn));
        std::snprintf(name, sizeof(name), "weightse.%03d.data", em.z);
        load_network_weights(p->elec_.back(), join(dir, name), "the electronegativity network of " + em.symbol);
        if (!p->cent_) {
            p->short_.push_back(network(S, "short", K + 1, nn));
            std::snprintf(name, sizeof(name), "weights.%03d.data", em.z);
            load_network_weights(p->short_.back(), join(dir, name), "the short network of " + em.symbol);
        }
        std::snprintf(name, sizeof(name), "hardness.%03d.data", em.z);
        const auto h = read_number_column(join(dir, name), "the hardness of " + em.symbol);
        if (h.empty()) throw ModelFileError(join(dir, name) + ": no hardness value");
        p->hardness_[e] = h[0];
    }
    return p;
}

void FourthGenerationPotential::compute(int64_t n, const double* pos, const int32_t* species, const double* cell,
                                        double q_tot, const ChargeOptions& opt, ChargeResult& out,
                                        std::vector<double>* warm, std::vector<double>* warm_adj) const {
    const Model& M = *desc_;
    check_species(n, species, M.n_elements());
    const bool periodic = cell != nullptr;
    ElectrostaticsSettings::check_charged_cell(periodic, q_tot, opt, path_);
    // electrostatics and Ewald parameters (first: a stored half list of theirs that reaches the
    // descriptors' cutoff gives their full list without a second cell-list pass)
    std::vector<double> sig(n), J(n);
    for (int64_t i = 0; i < n; ++i) { sig[i] = sigma_[species[i]]; J[i] = hardness_[species[i]]; }
    double max_sigma = 0.0;
    for (double s : sigma_) max_sigma = std::max(max_sigma, s);
    const bool cg = opt.solver == "cg";
    if (!cg && opt.solver != "dense") throw std::invalid_argument("solver must be 'dense' or 'cg'");
    const ElectrostaticsSetup es = es_.setup(opt, n, pos, cell, sig.data(), max_sigma, cg, out.ewald);
    const double volume = periodic ? cell_volume(cell) : 0.0;
    const Electrostatics op(es);
    // descriptors (scaled: the networks' inputs)
    DescriptorPass dp;
    if (op.half_list() && op.list_reach() >= M.cutoff())
        dp.run(M, full_from_half(*op.half_list(), pos, M.cutoff()), n, pos, species, opt.threads);
    else
        dp.run(M, n, pos, species, cell, opt.threads);
    ComputeResult& dres = dp.res;
    const AtomsView& A = dp.atoms;
    out.extrapolations = std::move(dres.extrapolations);
    out.extrapolating_atoms = std::move(dres.extrapolating_atoms);
    // (dE/dG overwrites the descriptors atom by atom for the force pass: no second array of them)
    std::vector<double>& G = dres.descriptors;
    const auto& off = dres.descriptor_offsets;
    // electronegativities
    electronegativities(n, species, G.data(), off.data(), out.electronegativities);
    const auto& chi = out.electronegativities;
    out.n_kvectors = op.n_kvectors();
    out.mesh_points = op.mesh_points();
    // charges
    std::vector<double> minus_chi(n);
    for (int64_t i = 0; i < n; ++i) minus_chi[i] = -chi[i];
    out.charges.assign(n, q_tot / n);
    out.cg_iterations.clear();
    std::unique_ptr<QEqDense> qeq;
    std::vector<double> A0Q;
    if (!cg) {
        std::vector<double> A0(static_cast<size_t>(n) * n);
        op.dense(A0.data());
        qeq = std::make_unique<QEqDense>(n, A0.data(), J.data());
        qeq->solve(minus_chi.data(), 1, q_tot, out.charges.data());
        A0Q.assign(n, 0.0);
        for (int64_t i = 0; i < n; ++i) {
            double s = 0.0;
            for (int64_t j = 0; j < n; ++j) s += A0[i * n + j] * out.charges[j];
            A0Q[i] = s;
        }
    } else {
        if (warm && static_cast<int64_t>(warm->size()) == n) out.charges = *warm;
        A0Q.assign(n, 0.0);   // (the solver's last product serves the energy)
        const QEqSolution sol = solve_qeq_cg(op, J.data(), minus_chi.data(), q_tot, out.charges.data(),
                                             opt.cg_tolerance, opt.cg_max_iterations, &A0Q);
        out.cg_iterations.push_back(sol.iterations);
    }
    if (warm) *warm = out.charges;
    const auto& Q = out.charges;
    std::vector<double> dEelec(n);
    double e_elec = op.energy(Q.data(), dEelec.data(), A0Q.empty() ? nullptr : A0Q.data());
    const double e_bg = periodic && q_tot != 0.0 ? es_.background_energy(q_tot, out.ewald.eta, volume) : 0.0;
    out.electrostatic_energy = e_elec + e_bg;
    const bool grads = opt.forces || opt.virial;
    std::fill(out.dipole, out.dipole + 3, 0.0);
    if (!periodic)
        for (int64_t i = 0; i < n; ++i)
            for (int d = 0; d < 3; ++d) out.dipole[d] += Q[i] * pos[3 * i + d];
    // the hdnnp_zbl pair baseline (its pairs lie within the descriptors' neighbour list)
    ComputeResult bres;
    const bool has_base = static_cast<bool>(M.baseline());
    if (has_base) {
        ComputeOptions bopt;
        bopt.forces = grads; bopt.virial = grads; bopt.threads = opt.threads;
        M.baseline()->compute(A, bopt, bres);
    }
    out.baseline_energy = has_base ? bres.energy : 0.0;
    auto finish = [&]() {
        if (!has_base) return;
        out.energy += bres.energy;
        for (int64_t i = 0; i < n; ++i) out.atom_energies[i] += bres.atom_energies[i];
        if (!grads) return;
        for (int64_t k = 0; k < 3 * n; ++k) out.forces[k] += bres.forces[k];
        for (int k = 0; k < 9; ++k) out.virial[k] += bres.virial[k];
    };
    // Forces and virial of E(R) with dE/dG (raw G) = w through the core's descriptor force pass,
    // plus -d/dR [E_elec(Q) + lam^T A0 Q] at fixed Q and lam, plus the background's virial.
    auto force_pass = [&](const std::vector<double>& w, const std::vector<double>& lam) {
        ComputeResult fres;
        dp.forces(M, w.data(), opt.threads, fres);
        out.forces = std::move(fres.forces);
        double W[9] = {0};
        op.add_derivatives(Q.data(), lam.data(), out.forces.data(), W);
        for (int k = 0; k < 9; ++k) out.virial[k] = fres.virial[k] + W[k];
        for (int d = 0; d < 3; ++d) out.virial[4 * d] += e_bg;
    };
    if (cent_) {
        // E = chi.Q + 1/2 J Q^2 + 1/2 Q^T A0 Q (+ background, offsets); dE/dQ is uniform at the
        // minimum, so the forces are those at fixed Q: -Q dchi/dR - d(1/2 Q^T A0 Q)/dR
        if (A0Q.empty()) {
            A0Q.assign(n, 0.0);
            op.apply(Q.data(), A0Q.data());
        }
        CompensatedSum e, e_off, half;
        out.atom_energies.assign(n, 0.0);
        for (int64_t i = 0; i < n; ++i) {
            const double ei = chi[i] * Q[i] + 0.5 * J[i] * Q[i] * Q[i] + 0.5 * Q[i] * A0Q[i];
            e.add(ei);
            half.add(0.5 * Q[i] * A0Q[i]);
            e_off.add(M.elements()[species[i]].atom_energy);
            out.atom_energies[i] = ei + e_bg / n + M.elements()[species[i]].atom_energy;
        }
        out.electrostatic_energy = half.value() + e_bg;
        CompensatedSum total;
        total.add(e.value());
        total.add(e_bg);
        total.add(e_off.value());
        out.energy = total.value();
        out.atom_energies_short.assign(n, 0.0);
        out.forces.clear();
        out.adjoint.clear();
        std::fill(out.virial, out.virial + 9, 0.0);
        if (!grads) return finish();
        std::vector<double> zero(n, 0.0);
        energy_gradient(n, species, G.data(), off.data(), Q.data(), nullptr);
        force_pass(G, zero);
        return finish();
    }
    // short networks on [G, Q]
    std::vector<double> dEs_dQ;
    short_energies(n, species, G.data(), off.data(), Q.data(), grads, out.atom_energies_short, dEs_dQ);
    CompensatedSum e_short, e_off;
    for (int64_t i = 0; i < n; ++i) {
        e_short.add(out.atom_energies_short[i]);
        e_off.add(M.elements()[species[i]].atom_energy);
    }
    CompensatedSum total;
    total.add(e_short.value());
    total.add(out.electrostatic_energy);
    total.add(e_off.value());
    out.energy = total.value();
    out.atom_energies.assign(n, 0.0);
    for (int64_t i = 0; i < n; ++i)
        out.atom_energies[i] = out.atom_energies_short[i] + M.elements()[species[i]].atom_energy +
                               0.5 * Q[i] * dEelec[i] + e_bg / n;
    out.forces.clear();
    out.adjoint.clear();
    std::fill(out.virial, out.virial + 9, 0.0);
    if (!grads) return finish();
    // one adjoint solve: lambda = K^-1 [-(dE_elec/dQ + dE_short/dQ); 0]
    std::vector<double> rhs(n), lam(n, 0.0);
    for (int64_t i = 0; i < n; ++i) rhs[i] = -(dEelec[i] + dEs_dQ[i]);
    if (!cg) {
        qeq->solve(rhs.data(), 1, 0.0, lam.data());
    } else {
        if (warm_adj && static_cast<int64_t>(warm_adj->size()) == n) lam = *warm_adj;
        const QEqSolution sol = solve_qeq_cg(op, J.data(), rhs.data(), 0.0, lam.data(), opt.cg_tolerance,
                                             opt.cg_max_iterations);
        out.cg_iterations.push_back(sol.iterations);
    }
    if (warm_adj) *warm_adj = lam;
    out.adjoint = lam;
    // dE/dG (raw G) = (dE_short/dG + lambda dchi/dG) x the scaling factor, through the core's force pass
    energy_gradient(n, species, G.data(), off.data(), Q.data(), lam.data());
    force_pass(G, lam);
    finish();
}

void FourthGenerationPotential::electronegativities(int64_t n, const int32_t* species, const double* G,
                                                    const int64_t* off, std::vector<double>& chi) const {
    NetworkWorkspace ws;
    chi.assign(n, 0.0);
    for (int64_t i = 0; i < n; ++i) chi[i] = elec_[species[i]].evaluate(&G[off[i]], nullptr, ws);
}

void FourthGenerationPotential::short_energies(int64_t n, const int32_t* species, const double* G,
                                               const int64_t* off, const double* Q, bool grads,
                                               std::vector<double>& e_short, std::vector<double>& dE_dQ) const {
    NetworkWorkspace ws;
    std::vector<double> x, dx;
    e_short.assign(n, 0.0);
    dE_dQ.assign(n, 0.0);
    for (int64_t i = 0; i < n; ++i) {
        const int e = species[i];
        const int K = desc_->elements()[e].descriptor.size();
        x.assign(&G[off[i]], &G[off[i]] + K);
        x.push_back(Q[i]);
        dx.assign(K + 1, 0.0);
        e_short[i] = short_[e].evaluate(x.data(), grads ? dx.data() : nullptr, ws);
        if (grads) dE_dQ[i] = dx[K];
    }
}

void FourthGenerationPotential::energy_gradient(int64_t n, const int32_t* species, double* G, const int64_t* off,
                                                const double* Q, const double* lam) const {
    // dE/dG (raw G) = (dE_short/dG + lambda dchi/dG) x the scaling factor (CENT: Q dchi/dG)
    NetworkWorkspace ws;
    std::vector<double> x, dx, dchi;
    for (int64_t i = 0; i < n; ++i) {
        const int e = species[i];
        const ElementModel& em = desc_->elements()[e];
        const int K = em.descriptor.size();
        x.assign(&G[off[i]], &G[off[i]] + K);
        dchi.assign(K, 0.0);
        elec_[e].evaluate(x.data(), dchi.data(), ws);
        if (cent_) {
            for (int k = 0; k < K; ++k) G[off[i] + k] = Q[i] * dchi[k] * em.factor[k];
            continue;
        }
        x.push_back(Q[i]);
        dx.assign(K + 1, 0.0);
        short_[e].evaluate(x.data(), dx.data(), ws);
        for (int k = 0; k < K; ++k) G[off[i] + k] = (dx[k] + lam[i] * dchi[k]) * em.factor[k];
    }
}

EwaldParameters FourthGenerationPotential::ewald_parameters(const ChargeOptions& opt, const double* cell,
                                                            int64_t n_total) const {
    double max_sigma = 0.0;
    for (double s : sigma_) max_sigma = std::max(max_sigma, s);
    return es_.choose(opt, cell, n_total, max_sigma, true);
}

void FourthGenerationPotential::compute_domain(const DomainAtoms& A, DomainComm& comm, DomainFft* fft,
                                               double q_tot, const ChargeOptions& opt, ChargeResult& out,
                                               std::vector<double>* warm, std::vector<double>* warm_adj) const {
    const Model& M = *desc_;
    const int64_t n = A.n_local, na = A.n_all;
    if (na > 0) check_species(na, A.species, M.n_elements());
    const bool periodic = A.cell != nullptr;
    ElectrostaticsSettings::check_charged_cell(periodic, q_tot, opt, path_);
    if (periodic && !opt.fixed_ewald)
        throw std::invalid_argument("compute_domain: periodic systems need fixed Ewald parameters (ewald_parameters())");
    if (A.n_total < 1) throw InputError("the system has no atoms");
    std::vector<double> sig(na), J(n);
    for (int64_t i = 0; i < na; ++i) sig[i] = sigma_[A.species[i]];
    for (int64_t i = 0; i < n; ++i) J[i] = hardness_[A.species[i]];
    out.ewald = periodic ? opt.ewald : EwaldParameters();
    const DomainElectrostatics op(A, sig.data(), es_.four_pi_eps, es_.screening, out.ewald, comm, fft, opt.threads);
    out.n_kvectors = op.n_kvectors();
    out.mesh_points = op.mesh_points();
    // descriptors of the local atoms (scaled: the networks' inputs)
    DescriptorPass dp;
    AtomsView view;
    view.n_local = n; view.n_all = na; view.positions = A.positions; view.species = A.species;
    view.neighbors = A.neighbors;
    dp.run(M, view, opt.threads);
    out.extrapolations = std::move(dp.res.extrapolations);
    out.extrapolating_atoms = std::move(dp.res.extrapolating_atoms);
    std::vector<double>& G = dp.res.descriptors;
    const auto& off = dp.res.descriptor_offsets;
    electronegativities(n, A.species, G.data(), off.data(), out.electronegativities);
    const auto& chi = out.electronegativities;
    // charges: the CG solver with sums over the domains
    std::vector<double> minus_chi(n);
    for (int64_t i = 0; i < n; ++i) minus_chi[i] = -chi[i];
    out.charges.assign(n, q_tot / A.n_total);
    if (warm && static_cast<int64_t>(warm->size()) == n) out.charges = *warm;
    std::vector<double> A0Q(n);   // (the solver's last product serves the energy)
    const bool mesh_pc = opt.cg_preconditioner == "mesh";
    if (!mesh_pc && opt.cg_preconditioner != "jacobi")
        throw InputError("unknown CG preconditioner '" + opt.cg_preconditioner + "' (mesh or jacobi)");
    out.cg_iterations.assign(1, solve_qeq_cg(op, comm, A.n_total, J.data(), minus_chi.data(), q_tot,
                                             out.charges.data(), opt.cg_tolerance, opt.cg_max_iterations,
                                             &A0Q, mesh_pc).iterations);
    if (warm) *warm = out.charges;
    const auto& Q = out.charges;
    std::vector<double> dEelec(n);
    const double e_elec = op.energy(Q.data(), dEelec.data(), &A0Q);
    // the background of a charged cell: its energy shared evenly by the atoms, its virial once
    const double e_bg_all = periodic && q_tot != 0.0 ? es_.background_energy(q_tot, out.ewald.eta, cell_volume(A.cell))
                                                     : 0.0;
    const double e_bg_atom = e_bg_all / A.n_total;
    std::fill(out.dipole, out.dipole + 3, 0.0);
    if (!periodic)
        for (int64_t i = 0; i < n; ++i)
            for (int d = 0; d < 3; ++d) out.dipole[d] += Q[i] * A.positions[3 * i + d];
    const bool grads = opt.forces || opt.virial;
    out.atom_energies.assign(n, 0.0);
    std::vector<double> lam(n, 0.0), dEs_dQ;
    CompensatedSum total, e_el;
    e_el.add(e_elec);
    e_el.add(e_bg_atom * n);
    if (cent_) {
        // E = chi.Q + 1/2 J Q^2 + 1/2 Q^T A0 Q: at the minimum the forces are those at fixed Q
        CompensatedSum half;
        for (int64_t i = 0; i < n; ++i) {
            const double ei = chi[i] * Q[i] + 0.5 * J[i] * Q[i] * Q[i] + 0.5 * Q[i] * A0Q[i];
            half.add(0.5 * Q[i] * A0Q[i]);
            out.atom_energies[i] = ei + e_bg_atom + M.elements()[A.species[i]].atom_energy;
            total.add(out.atom_energies[i]);
        }
        e_el = CompensatedSum();
        e_el.add(half.value());
        e_el.add(e_bg_atom * n);
        out.atom_energies_short.assign(n, 0.0);
        out.adjoint.clear();
    } else {
        short_energies(n, A.species, G.data(), off.data(), Q.data(), grads, out.atom_energies_short, dEs_dQ);
        for (int64_t i = 0; i < n; ++i) {
            out.atom_energies[i] = out.atom_energies_short[i] + M.elements()[A.species[i]].atom_energy +
                                   0.5 * Q[i] * dEelec[i] + e_bg_atom;
            total.add(out.atom_energies_short[i]);
            total.add(M.elements()[A.species[i]].atom_energy);
        }
        total.add(e_el.value());
        if (grads) {
            // one adjoint solve: lambda = K^-1 [-(dE_elec/dQ + dE_short/dQ); 0]
            std::vector<double> rhs(n);
            for (int64_t i = 0; i < n; ++i) rhs[i] = -(dEelec[i] + dEs_dQ[i]);
            if (warm_adj && static_cast<int64_t>(warm_adj->size()) == n) lam = *warm_adj;
            out.cg_iterations.push_back(solve_qeq_cg(op, comm, A.n_total, J.data(), rhs.data(), 0.0, lam.data(),
                                                     opt.cg_tolerance, opt.cg_max_iterations, nullptr, mesh_pc)
                                            .iterations);
            if (warm_adj) *warm_adj = lam;
        }
        out.adjoint = lam;
    }
    out.electrostatic_energy = e_el.value();
    out.energy = total.value();
    out.forces.clear();
    std::fill(out.virial, out.virial + 9, 0.0);
    ComputeResult bres;
    const bool has_base = static_cast<bool>(M.baseline());
    if (has_base) {
        ComputeOptions bopt;
        bopt.forces = grads; bopt.virial = grads; bopt.threads = opt.threads;
        bopt.atom_virial = grads && opt.atom_virial;
        M.baseline()->compute(dp.atoms, bopt, bres);
        out.energy += bres.energy;
        for (int64_t i = 0; i < n; ++i) out.atom_energies[i] += bres.atom_energies[i];
    }
    out.baseline_energy = has_base ? bres.energy : 0.0;
    if (!grads) return;
    energy_gradient(n, A.species, G.data(), off.data(), Q.data(), lam.data());
    ComputeResult fres;
    dp.forces(M, G.data(), opt.threads, fres, opt.atom_virial);
    out.forces = std::move(fres.forces);
    out.forces.resize(3 * na, 0.0);
    double W[9] = {0};
    if (opt.atom_virial) {
        out.atom_virials = std::move(fres.atom_virials);
        out.atom_virials.resize(9 * n, 0.0);
    }
    op.add_derivatives(Q.data(), lam.data(), out.forces.data(), W, opt.atom_virial ? &out.atom_virials : nullptr);
    for (int k = 0; k < 9; ++k) out.virial[k] = fres.virial[k] + W[k];
    if (comm.root())
        for (int d = 0; d < 3; ++d) out.virial[4 * d] += e_bg_all;
    if (has_base) {
        for (int64_t k = 0; k < 3 * na; ++k) out.forces[k] += bres.forces[k];
        for (int k = 0; k < 9; ++k) out.virial[k] += bres.virial[k];
    }
    if (opt.atom_virial)
        finish_atom_virials(n, e_bg_all / A.n_total, has_base ? &bres.atom_virials : nullptr, out.atom_virials);
}

}  // namespace hdnnp
