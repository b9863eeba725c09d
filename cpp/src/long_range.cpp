#include "hdnnp/long_range.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "hdnnp/errors.hpp"
#include "hdnnp/units.hpp"

namespace hdnnp {

ElectrostaticsSettings ElectrostaticsSettings::read(const Settings& S, const std::string& nn) {
    ElectrostaticsSettings p;
    auto at = [&](const std::string& key) { return nn + ":" + std::to_string(S.get(key).line); };
    if (S.has("screen_electrostatics")) {
        const auto t = S.args("screen_electrostatics");
        const std::string w = at("screen_electrostatics");
        if (t.size() < 2) throw ConfigError(w + ": screen_electrostatics needs r_in and r_out");
        p.screening.r_in = parse_double(t[0], w);
        p.screening.r_out = parse_double(t[1], w);
        const std::string core = t.size() > 2 ? t[2] : "c";
        if (core != "c" && core != "e" && core != "p1" && core != "p2" && core != "p3" && core != "p4")
            throw ConfigError(w + ": screen_electrostatics: unknown core function '" + core + "'");
        p.screening.core = core.size() == 2 ? core[1] : core[0];
    }
    if (S.has("ewald_truncation_error_method")) {
        const std::string w = at("ewald_truncation_error_method");
        p.ewald_method = static_cast<int>(parse_int(S.args("ewald_truncation_error_method").at(0), w));
        if (p.ewald_method != 0 && p.ewald_method != 1)
            throw ConfigError(w + ": ewald_truncation_error_method must be 0 (Jackson-Catlow) or 1 (Kolafa-Perram)");
    }
    if (S.has("ewald_prec")) {
        p.ewald_prec.clear();
        for (const auto& a : S.args("ewald_prec")) p.ewald_prec.push_back(parse_double(a, at("ewald_prec")));
        if (p.ewald_prec.empty()) throw ConfigError(at("ewald_prec") + ": ewald_prec needs a value");
    }
    double given = 0.0;
    if (S.has("four_pi_epsilon")) {
        const std::string w = at("four_pi_epsilon");
        given = parse_double(S.args("four_pi_epsilon").at(0), w);
        if (!(given > 0.0)) throw ConfigError(w + ": four_pi_epsilon must be positive");
    }
    p.four_pi_eps = given > 0.0 ? given : 1.0;
    const auto* lu = S.declared("length_unit");
    const auto* eu = S.declared("energy_unit");
    if (lu && eu) {
        const double lf = angstrom_per_length_unit(lu->args), ef = ev_per_energy_unit(eu->args);
        if (lf > 0.0 && ef > 0.0) {
            const double derived = lf * ef / COULOMB_EV_ANGSTROM;
            if (given > 0.0 && std::fabs(given - derived) > 1e-4 * derived) {
                char buf[160];
                std::snprintf(buf, sizeof(buf), ": four_pi_epsilon %g contradicts the declared units (%s, %s), in "
                              "which 4 pi eps0 = %.10g", given, lu->args.c_str(), eu->args.c_str(),
                              derived);
                throw ConfigError(at("four_pi_epsilon") + buf + "; remove the line (it is derived from the units) "
                                  "or correct it");
            }
            p.four_pi_eps = derived;
        }
    }
    return p;
}

EwaldParameters ElectrostaticsSettings::choose(const ChargeOptions& opt, const double* cell, int64_t n,
                                               double max_sigma, bool matrix_free) const {
    if (opt.fixed_ewald) return opt.ewald;
    const double volume = cell_volume(cell);
    if (opt.ewald_tolerance <= 0.0)
        return n2p2_ewald_parameters(ewald_method, ewald_prec, volume, n, four_pi_eps, max_sigma);
    if (matrix_free) return pme_ewald_parameters(opt.ewald_tolerance, cell, n, 1.0, four_pi_eps, max_sigma);
    return accuracy_ewald_parameters(opt.ewald_tolerance, volume, n, 1.0, four_pi_eps, 0.0, max_sigma, false);
}

ElectrostaticsSetup ElectrostaticsSettings::setup(const ChargeOptions& opt, int64_t n, const double* pos,
                                                  const double* cell, const double* sigma, double max_sigma,
                                                  bool matrix_free, EwaldParameters& ewald) const {
    ElectrostaticsSetup es;
    es.n = n; es.positions = pos; es.cell = cell; es.sigma = sigma; es.four_pi_eps = four_pi_eps;
    es.screening = screening; es.threads = opt.threads;
    ewald = EwaldParameters();
    if (cell) {
        ewald = choose(opt, cell, n, max_sigma, matrix_free);
        es.eta = ewald.eta; es.r_cut = ewald.r_cut; es.k_cut = ewald.k_cut;
        for (int d = 0; d < 3; ++d) es.mesh[d] = ewald.mesh[d];
        es.mesh_order = ewald.mesh_order;
    }
    return es;
}

void DescriptorPass::run(const Model& M, int64_t n, const double* pos, const int32_t* species, const double* cell,
                         int threads) {
    const bool p = cell != nullptr;
    const bool pbc[3] = {p, p, p};
    run(M, build_neighbor_list(pos, n, cell, pbc, M.cutoff(), 1e-6), n, pos, species, threads);
}

void DescriptorPass::run(const Model& M, NeighborList list, int64_t n, const double* pos, const int32_t* species,
                         int threads) {
    nl = std::move(list);
    AtomsView view;
    view.n_local = n; view.n_all = n; view.positions = pos; view.species = species; view.neighbors = nl.view();
    run(M, view, threads);
}

void DescriptorPass::run(const Model& M, const AtomsView& view, int threads) {
    atoms = view;
    ComputeOptions o;
    o.forces = false; o.virial = false; o.descriptors = true; o.scaled_descriptors = true;
    o.threads = threads; o.baseline = false;
    M.compute(atoms, o, res);
}

void DescriptorPass::forces(const Model& M, const double* w, int threads, ComputeResult& out,
                            bool atom_virial) const {
    ComputeOptions o;
    o.forces = true; o.virial = true; o.dEdG = w; o.threads = threads; o.baseline = false;
    o.atom_virial = atom_virial;
    M.compute(atoms, o, out);
}

void ElectrostaticsSettings::check_charged_cell(bool periodic, double q, const ChargeOptions& opt,
                                                const std::string& nn) {
    if (!periodic || q == 0.0 || opt.background) return;
    char buf[64];
    std::snprintf(buf, sizeof(buf), "%g", q);
    throw InputError(std::string("the periodic cell carries a total charge of ") + buf + " e: the potential " + nn +
                     " neutralises a charged cell with a uniform background only when asked for (background option; "
                     "its energy -pi eta^2 Q^2 / (V 4 pi eps0) is then included)");
}

void finish_atom_virials(int64_t n, double background_per_atom, const std::vector<double>* more,
                         std::vector<double>& W) {
    W.resize(9 * n, 0.0);
    for (int64_t i = 0; i < n; ++i)
        for (int d = 0; d < 3; ++d) W[9 * i + 4 * d] += background_per_atom;
    if (more && !more->empty())
        for (int64_t k = 0; k < 9 * n; ++k) W[k] += (*more)[k];
}

void check_species(int64_t n, const int32_t* species, int n_elements) {
    if (n < 1) throw InputError("the structure has no atoms");
    for (int64_t i = 0; i < n; ++i)
        if (species[i] < 0 || species[i] >= n_elements)
            throw InputError("atom " + std::to_string(i) + " has an element index outside the potential's elements");
}

}  // namespace hdnnp
