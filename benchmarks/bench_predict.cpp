// Standalone prediction benchmark (no Python): loads a potential and the first
// structure of an input.data file, optionally replicates it, and reports the time of
// each stage, atom-steps/s and memory. Run it on a cluster node to size a simulation.
//
//   hdnnp-bench POTENTIAL_DIR INPUT.data [--rep NX NY NZ] [--steps N] [--threads T] [--no-sort]
//               [--ewald n2p2|TOL] [--solver dense|cg] [--cg-tolerance T] [--background] [--json FILE]
// 2G, 3G, 4G and CENT potentials (nnp_generation in input.nn). 3G/4G/CENT: the total charge is the structure's
// `charge` line (times the replicas; a charged cell needs --background, the uniform neutralising
// background); --ewald n2p2 (default: n2p2's parameters) or an energy
// tolerance; --solver dense (default) or cg. --json FILE: {"energy", "forces", "charges",
// "natoms", "timings"} of the first evaluation in the potential's units (charges empty for 2G).
// (--no-sort: compute in the input atom order instead of the neighbour list's spatial order)
// A potential with a ZBL pair baseline (hdnnp_zbl) includes it, and its cost alone is reported.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "hdnnp/errors.hpp"
#include "hdnnp/fourth_generation.hpp"
#include "hdnnp/third_generation.hpp"
#include "hdnnp/model.hpp"
#include "hdnnp/settings.hpp"
#include "hdnnp/neighbor.hpp"
#include "hdnnp/structure_io.hpp"

using namespace hdnnp;
using Clock = std::chrono::steady_clock;

static double seconds(Clock::time_point a, Clock::time_point b) {
    return std::chrono::duration<double>(b - a).count();
}

static long peak_rss_kb() {
    std::ifstream f("/proc/self/status");
    std::string line;
    while (std::getline(f, line))
        if (line.rfind("VmHWM:", 0) == 0) return std::atol(line.c_str() + 6);
    return -1;
}

static void write_json(const std::string& path, double energy, const std::vector<double>& forces,
                       const std::vector<double>& charges, int64_t n, const std::vector<std::pair<std::string, double>>& t) {
    std::string s = "{\"energy\": ";
    char buf[64];
    auto num = [&](double v) { std::snprintf(buf, sizeof(buf), "%.17g", v); s += buf; };
    num(energy);
    s += ", \"forces\": [";
    for (int64_t i = 0; i < n; ++i) {
        s += i ? ", [" : "[";
        for (int c = 0; c < 3; ++c) { if (c) s += ", "; num(forces[3 * i + c]); }
        s += "]";
    }
    s += "], \"charges\": [";
    for (size_t i = 0; i < charges.size(); ++i) { if (i) s += ", "; num(charges[i]); }
    s += "], \"natoms\": " + std::to_string(n) + ", \"timings\": {";
    for (size_t k = 0; k < t.size(); ++k) { s += (k ? ", \"" : "\"") + t[k].first + "\": "; num(t[k].second); }
    s += "}}\n";
    const std::string tmp = path + ".tmp-hdnnp";
    FILE* f = std::fopen(tmp.c_str(), "w");
    if (!f) throw InputError("cannot write '" + path + "'");
    const bool ok = std::fwrite(s.data(), 1, s.size(), f) == s.size();
    if (std::fclose(f) != 0 || !ok || std::rename(tmp.c_str(), path.c_str()) != 0)
        throw InputError("cannot write '" + path + "'");
}

int main(int argc, char** argv) {
    if (argc < 3) {
        std::fprintf(stderr, "usage: %s POTENTIAL_DIR INPUT.data [--rep NX NY NZ] [--steps N] [--threads T] [--no-sort] "
                             "[--ewald n2p2|TOL] [--solver dense|cg] [--cg-tolerance T] [--background] [--json FILE]\n", argv[0]);
        return 2;
    }
    int rep[3] = {1, 1, 1}, steps = 5, threads = 0;
    bool sort = true;
    double ewald_tol = 0.0;
    std::string solver = "dense", json;
    double cg_tol = 1e-10;
    bool background = false;
    for (int a = 3; a < argc; ++a) {
        if (!std::strcmp(argv[a], "--ewald") && a + 1 < argc) {
            const std::string v = argv[++a];
            if (v != "n2p2") {
                char* end = nullptr;
                ewald_tol = std::strtod(v.c_str(), &end);
                if (*end || !(ewald_tol > 0.0)) {
                    std::fprintf(stderr, "hdnnp-bench: error: --ewald takes n2p2 or a positive energy tolerance, not %s\n", v.c_str());
                    return 2;
                }
            }
            continue;
        }
        if (!std::strcmp(argv[a], "--solver") && a + 1 < argc) {
            solver = argv[++a];
            if (solver != "dense" && solver != "cg") {
                std::fprintf(stderr, "hdnnp-bench: error: --solver takes dense or cg, not %s\n", solver.c_str());
                return 2;
            }
            continue;
        }
        if (!std::strcmp(argv[a], "--cg-tolerance") && a + 1 < argc) {
            cg_tol = std::atof(argv[++a]);
            if (!(cg_tol > 0.0)) {
                std::fprintf(stderr, "hdnnp-bench: error: --cg-tolerance takes a positive relative residual\n");
                return 2;
            }
            continue;
        }
        if (!std::strcmp(argv[a], "--background")) {
            background = true;
            continue;
        }
        if (!std::strcmp(argv[a], "--json") && a + 1 < argc) {
            json = argv[++a];
            continue;
        }
        if (!std::strcmp(argv[a], "--rep") && a + 3 < argc) {
            for (int k = 0; k < 3; ++k) rep[k] = std::atoi(argv[++a]);
        } else if (!std::strcmp(argv[a], "--steps") && a + 1 < argc) {
            steps = std::atoi(argv[++a]);
        } else if (!std::strcmp(argv[a], "--threads") && a + 1 < argc) {
            threads = std::atoi(argv[++a]);
        } else if (!std::strcmp(argv[a], "--no-sort")) {
            sort = false;
        } else {
            std::fprintf(stderr, "hdnnp-bench: error: unknown argument %s\n", argv[a]);
            return 2;
        }
    }
    try {
        const long rss0 = peak_rss_kb();
        const Settings settings = Settings::read_file(std::string(argv[1]) + "/input.nn");
        const std::string gen = settings.has("nnp_type") ? settings.args("nnp_type").at(0) : "2";
        const bool g3 = gen == "3" || gen == "3G-HDNNP";
        const bool g4 = g3 || gen == "4" || gen == "4G-HDNNP" || gen == "cent" || gen == "CENT";   // with charges
        if (!g4 && gen != "2" && gen != "2G-HDNNP")
            throw ConfigError(std::string(argv[1]) + "/input.nn: nnp_generation " + gen +
                              ": hdnnp-bench runs 2G, 3G, 4G and CENT potentials");
        std::shared_ptr<const FourthGenerationPotential> pot4;
        std::shared_ptr<const ThirdGenerationPotential> pot3;
        std::shared_ptr<const Model> model;
        if (g3) {
            pot3 = ThirdGenerationPotential::load(argv[1]);
            model = pot3->short_model_ptr();
            for (const auto& w : pot3->warnings()) std::fprintf(stderr, "warning: %s\n", w.c_str());
        } else if (g4) {
            pot4 = FourthGenerationPotential::load(argv[1]);
            model = pot4->descriptor_model();
        } else {
            model = Model::load(argv[1]);
        }
        auto structures = read_input_data(argv[2]);
        if (structures.empty()) throw InputError("no structure in input file");
        const Structure& s = structures.front();
        if (!s.periodic && (rep[0] * rep[1] * rep[2] != 1)) throw InputError("--rep needs a periodic structure");
        // Replicate.
        std::vector<double> pos;
        std::vector<int32_t> species;
        for (int a = 0; a < rep[0]; ++a)
            for (int b = 0; b < rep[1]; ++b)
                for (int c = 0; c < rep[2]; ++c)
                    for (size_t i = 0; i < s.n_atoms(); ++i) {
                        for (int k = 0; k < 3; ++k)
                            pos.push_back(s.positions[3 * i + k] + a * s.lattice[k] + b * s.lattice[3 + k] +
                                          c * s.lattice[6 + k]);
                        const int e = model->element_index(s.symbols[i]);
                        if (e < 0) throw InputError("element " + s.symbols[i] + " unknown to the potential");
                        species.push_back(e);
                    }
        double cell[9];
        for (int r = 0; r < 3; ++r)
            for (int k = 0; k < 3; ++k) cell[3 * r + k] = s.lattice[3 * r + k] * rep[r];
        const int64_t n = static_cast<int64_t>(species.size());
        const bool pbc[3] = {s.periodic, s.periodic, s.periodic};
#ifdef _OPENMP
        if (threads > 0) omp_set_num_threads(threads);
        const int used_threads = omp_get_max_threads();
#else
        const int used_threads = 1;
#endif
        if (g4) {
            const double q_tot = s.charge * rep[0] * rep[1] * rep[2];
            ChargeOptions o;
            o.ewald_tolerance = ewald_tol; o.solver = solver; o.threads = threads; o.background = background;
            o.cg_tolerance = cg_tol;
            ChargeResult r4;
            std::vector<double> warm;
            double t_first = 0.0, t_sum = 0.0;
            for (int step = 0; step < steps + 1; ++step) {  // step 0: the first (cold) evaluation
                auto t0 = Clock::now();
                if (pot3)
                    pot3->compute(n, pos.data(), species.data(), s.periodic ? cell : nullptr, q_tot, o, r4);
                else
                    pot4->compute(n, pos.data(), species.data(), s.periodic ? cell : nullptr, q_tot, o, r4,
                                  solver == "cg" ? &warm : nullptr);
                const double dt = seconds(t0, Clock::now());
                if (step == 0) {
                    t_first = dt;
                    if (!json.empty())
                        write_json(json, r4.energy, r4.forces, r4.charges, n, {{"first_evaluation", dt}});
                } else {
                    t_sum += dt;
                }
            }
            const long rss1 = peak_rss_kb();
            std::printf("potential          %s (%s)\n", argv[1], pot3 ? "3G" : pot4->cent() ? "CENT" : "4G");
            std::printf("atoms              %lld (replication %dx%dx%d), threads %d, total charge %g\n",
                        static_cast<long long>(n), rep[0], rep[1], rep[2], used_threads, q_tot);
            std::printf("solver             %s, Ewald %s", pot3 ? "none (3G: local charges)" : solver.c_str(),
                        ewald_tol > 0 ? "tolerance" : "n2p2");
            if (s.periodic)
                std::printf(" (eta %.6g, r_cut %.6g, k_cut %.6g, mesh %d x %d x %d)", r4.ewald.eta, r4.ewald.r_cut,
                            r4.ewald.k_cut, r4.ewald.mesh[0], r4.ewald.mesh[1], r4.ewald.mesh[2]);
            std::printf("\nenergy             %.12e\n", r4.energy);
            std::printf("time first eval    %.4f s (energy, charges, forces, virial)\n", t_first);
            if (steps > 0) {
                std::printf("time per eval      %.4f s (mean of %d more%s)\n", t_sum / steps, steps,
                            solver == "cg" ? ", warm-started charges" : "");
                std::printf("atom-steps/s       %.0f\n", n / (t_sum / steps));
            }
            if (!r4.cg_iterations.empty())
                std::printf("CG iterations      %d (charges), %d (adjoint), last evaluation\n", r4.cg_iterations[0],
                            r4.cg_iterations.size() > 1 ? r4.cg_iterations[1] : 0);
            std::printf("peak RSS           %.1f MB (%.0f bytes/atom above start)\n", rss1 / 1024.0,
                        (rss1 - rss0) * 1024.0 / n);
            return 0;
        }
        double t_nl = 0, t_e = 0, t_ef = 0, t_base = 0;
        ComputeResult rb;
        ComputeResult r;
        NeighborList nl;
        std::vector<double> spos;
        std::vector<int32_t> sspecies;
        int64_t pairs = 0;
        for (int step = 0; step < steps + 1; ++step) {  // step 0 is a warm-up
            auto t0 = Clock::now();
            nl = build_neighbor_list(pos.data(), n, s.periodic ? cell : nullptr, pbc, model->cutoff(), 1e-6, sort);
            if (sort) {  // atoms in the list's spatial order (as the Python API does)
                spos.resize(3 * n);
                sspecies.resize(n);
                for (int64_t c = 0; c < n; ++c) {
                    const int64_t a = nl.order[c];
                    for (int k = 0; k < 3; ++k) spos[3 * c + k] = pos[3 * a + k];
                    sspecies[c] = species[a];
                }
            }
            auto t1 = Clock::now();
            AtomsView A;
            A.n_local = n; A.n_all = n;
            A.positions = sort ? spos.data() : pos.data();
            A.species = sort ? sspecies.data() : species.data();
            A.neighbors = nl.view();
            ComputeOptions eo;
            eo.forces = false; eo.virial = false; eo.threads = threads;
            model->compute(A, eo, r);
            auto t2 = Clock::now();
            ComputeOptions fo;
            fo.threads = threads;
            model->compute(A, fo, r);
            auto t3 = Clock::now();
            // the ZBL pair baseline alone (hdnnp_zbl; included in the two computes above)
            if (model->baseline()) model->baseline()->compute(A, fo, rb);
            auto t4 = Clock::now();
            if (step > 0) {
                t_nl += seconds(t0, t1); t_e += seconds(t1, t2); t_ef += seconds(t2, t3); t_base += seconds(t3, t4);
            } else if (!json.empty()) {  // the first evaluation, in the input atom order
                std::vector<double> f(3 * n);
                for (int64_t c = 0; c < n; ++c) {
                    const int64_t a = sort ? nl.order[c] : c;
                    for (int k = 0; k < 3; ++k) f[3 * a + k] = r.forces[3 * c + k];
                }
                write_json(json, r.energy, f, {}, n, {{"neighbours", seconds(t0, t1)}, {"energy_forces", seconds(t2, t3)}});
            }
            pairs = nl.offsets.back();
        }
        t_nl /= steps; t_e /= steps; t_ef /= steps; t_base /= steps;
        const long rss1 = peak_rss_kb();
        std::printf("potential          %s\n", argv[1]);
        std::printf("atoms              %lld (replication %dx%dx%d), threads %d\n", static_cast<long long>(n),
                    rep[0], rep[1], rep[2], used_threads);
        std::printf("neighbours/atom    %.1f (cutoff %.4g)\n", static_cast<double>(pairs) / n, model->cutoff());
        std::printf("energy             %.12e\n", r.energy);
        std::printf("time neighbours    %.4f s\n", t_nl);
        std::printf("time SF+NN energy  %.4f s\n", t_e);
        std::printf("time SF+NN+forces  %.4f s (forces part ~%.4f s)\n", t_ef, t_ef - t_e);
        if (model->baseline())
            std::printf("time ZBL baseline  %.4f s (%.2f%% of SF+NN+forces, which includes it; baseline energy %.6e)\n",
                        t_base, 100.0 * t_base / t_ef, rb.energy);
        std::printf("atom-steps/s       %.0f (energy+forces+virial, neighbour list included)\n", n / (t_nl + t_ef));
        std::printf("atom-steps/s       %.0f (energy+forces+virial, neighbour list excluded)\n", n / t_ef);
        std::printf("peak RSS           %.1f MB (%.0f bytes/atom above start)\n", rss1 / 1024.0,
                    (rss1 - rss0) * 1024.0 / n);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "hdnnp-bench: error: %s\n", e.what());
        return 2;
    }
    return 0;
}
