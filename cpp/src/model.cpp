#include "hdnnp/model.hpp"
#include "hdnnp/threads.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <set>
#include <sstream>
#include <stdexcept>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "hdnnp/elements.hpp"
#include "hdnnp/errors.hpp"
#include "hdnnp/units.hpp"

namespace hdnnp {
namespace {

std::string join_path(const std::string& dir, const std::string& file) {
    if (dir.empty() || dir.back() == '/') return dir + file;
    return dir + "/" + file;
}

bool file_exists(const std::string& p) {
    std::ifstream f(p);
    return static_cast<bool>(f);
}

/// Non-comment, non-empty lines with their 1-based line numbers.
std::vector<std::pair<int, std::vector<std::string>>> data_lines(const std::string& path) {
    std::ifstream f(path);
    if (!f) throw ModelFileError("cannot open '" + path + "'");
    std::vector<std::pair<int, std::vector<std::string>>> out;
    std::string line;
    int no = 0;
    while (std::getline(f, line)) {
        ++no;
        const auto c = line.find('#');
        if (c != std::string::npos) line.resize(c);
        auto tok = split_ws(line);
        if (!tok.empty()) out.emplace_back(no, std::move(tok));
    }
    return out;
}

double file_number(const std::string& tok, const std::string& path, int line) {
    try {
        return parse_double(tok, path + ":" + std::to_string(line));
    } catch (const ConfigError& e) {
        throw ModelFileError(e.what());
    }
}

}  // namespace

std::vector<double> read_number_column(const std::string& path, const std::string& what) {
    if (!file_exists(path)) throw ModelFileError(path + ": no such file (" + what + ")");
    std::vector<double> v;
    for (const auto& [no, t] : data_lines(path)) v.push_back(file_number(t[0], path, no));
    return v;
}

void load_network_weights(NeuralNetwork& net, const std::string& wp, const std::string& what) {
    if (!file_exists(wp)) throw ModelFileError("weight file '" + wp + "' for " + what + " is missing");
    const auto lines = data_lines(wp);
    std::vector<double> w;
    w.reserve(lines.size());
    for (const auto& [no, t] : lines) w.push_back(file_number(t[0], wp, no));
    if (static_cast<int>(w.size()) != net.n_weights()) {
        std::ostringstream os;
        os << wp << ": expected " << net.n_weights() << " weights for the declared architecture ";
        const auto sz = net.sizes();
        for (size_t i = 0; i < sz.size(); ++i) os << (i ? "-" : "") << sz[i];
        os << " of " << what << ", found " << w.size();
        throw ModelFileError(os.str());
    }
    for (size_t i = 0; i < w.size(); ++i)
        if (!std::isfinite(w[i]))
            throw ModelFileError(wp + ":" + std::to_string(lines[i].first) + ": weight is not finite");
    net.set_parameters(w);
}

std::vector<std::string> Model::element_symbols() const {
    std::vector<std::string> s;
    for (const auto& e : elements_) s.push_back(e.symbol);
    return s;
}

int Model::element_index(const std::string& symbol) const {
    for (size_t i = 0; i < elements_.size(); ++i)
        if (elements_[i].symbol == symbol) return static_cast<int>(i);
    return -1;
}

std::shared_ptr<const Model> Model::load(const std::string& dir, bool with_weights) {
    const std::string nn_path = join_path(dir, "input.nn");
    if (!file_exists(nn_path)) throw ConfigError("potential directory '" + dir + "' has no input.nn");
    LoadOptions how;
    how.weights = with_weights;
    return load(dir, Settings::read_file(nn_path), how);
}

std::shared_ptr<const Model> Model::load(const std::string& dir, const Settings& settings, const LoadOptions& how) {
    const bool with_weights = how.weights;
    const bool charge = how.networks == NetworkSet::Charge;
    auto m = std::make_shared<Model>();
    m->directory_ = dir;
    m->networks_ = how.networks;
    const std::string nn_path = join_path(dir, "input.nn");
    m->settings_ = settings;
    const Settings& S = m->settings_;
    m->warnings_ = S.warnings();
    auto where = [&](const std::string& key) {
        return nn_path + ":" + std::to_string(S.get(key).line);
    };
    // keyword names of the network set
    const std::string net = charge ? "electrostatic" : "short";
    const std::string sf_key = charge ? "symfunction_electrostatic" : "symfunction_short";
    const std::string smin_key = charge ? "scale_min_elec" : "scale_min_short";
    const std::string smax_key = charge ? "scale_max_elec" : "scale_max_short";

    // (the descriptors of a 4G or CENT potential load without networks; FourthGenerationPotential
    // adds them; CENT has no short networks, so their architecture may be absent)
    bool descriptors_only = false;
    const std::string gen = S.has("nnp_type") ? S.args("nnp_type").at(0) : "2";
    {
        const bool g2 = gen == "2" || gen == "2G-HDNNP", g3 = gen == "3" || gen == "3G-HDNNP";
        const bool g4 = gen == "4" || gen == "4G-HDNNP" || gen == "cent" || gen == "CENT";
        descriptors_only = !with_weights && g4;
        if (charge && !g3)
            throw ConfigError(nn_path + ": charge networks (symfunction_electrostatic) belong to 3G potentials, "
                              "not nnp_generation " + gen);
        if (!(g2 || descriptors_only || (how.part && (g3 || g4))))
            throw ConfigError(where("nnp_type") + ": nnp_type " + gen + " is not a 2G potential: load it with "
                              "hdnnp.load (3G, 4G and CENT potentials are their own types)");
        if (how.part && g3 && !charge && !S.has("symfunction_electrostatic"))
            throw ConfigError(nn_path + ": a 3G potential needs symfunction_electrostatic lines (the charge "
                              "networks' symmetry functions)");
    }

    // Elements, sorted by atomic number as n2p2 does.
    auto el = S.args("elements");
    const long n_el = parse_int(S.args("number_of_elements").at(0), where("number_of_elements"));
    if (n_el != static_cast<long>(el.size()))
        throw ConfigError(where("elements") + ": number_of_elements is " + std::to_string(n_el) +
                          " but " + std::to_string(el.size()) + " elements are listed");
    std::set<std::string> seen;
    for (const auto& e : el) {
        if (atomic_number(e) == 0) throw ConfigError(where("elements") + ": unknown element '" + e + "'");
        if (!seen.insert(e).second) throw ConfigError(where("elements") + ": element '" + e + "' listed twice");
    }
    std::sort(el.begin(), el.end(), [](const std::string& a, const std::string& b) {
        return atomic_number(a) < atomic_number(b);
    });
    std::vector<int> zs;
    for (const auto& e : el) zs.push_back(atomic_number(e));

    // Cutoff function.
    {
        auto a = S.args("cutoff_type");
        const long ct = parse_int(a.at(0), where("cutoff_type"));
        if (ct < 0 || ct > 8) throw ConfigError(where("cutoff_type") + ": cutoff_type must be 0..8");
        m->cutoff_type_ = static_cast<CutoffType>(ct);
        if (a.size() > 1) m->cutoff_alpha_ = parse_double(a[1], where("cutoff_type"));
        if (m->cutoff_alpha_ < 0.0 || m->cutoff_alpha_ >= 1.0)
            throw ConfigError(where("cutoff_type") + ": cutoff alpha must satisfy 0 <= alpha < 1");
    }

    // Normalisation.
    if (charge) {}   // (charges are not normalised)
    else if (S.has("mean_energy")) m->mean_energy_ = parse_double(S.args("mean_energy").at(0), where("mean_energy"));
    if (!charge && S.has("conv_energy") != S.has("conv_length"))
        throw ConfigError(nn_path + ": conv_energy and conv_length must be given together");
    if (!charge && S.has("conv_energy")) {
        m->conv_energy_ = parse_double(S.args("conv_energy").at(0), where("conv_energy"));
        m->conv_length_ = parse_double(S.args("conv_length").at(0), where("conv_length"));
        if (!(m->conv_energy_ > 0.0) || !(m->conv_length_ > 0.0))
            throw ConfigError(nn_path + ": conv_energy and conv_length must be positive");
    }

    // Scaling mode.
    const bool sc = S.has("scale_symmetry_functions"), ce = S.has("center_symmetry_functions"),
               sg = S.has("scale_symmetry_functions_sigma");
    if (sg && (sc || ce))
        throw ConfigError(nn_path + ": scale_symmetry_functions_sigma cannot be combined with "
                          "scale_symmetry_functions or center_symmetry_functions");
    m->scaling_mode_ = sg ? ScalingMode::ScaleSigma
                     : sc && ce ? ScalingMode::ScaleCenter
                     : sc ? ScalingMode::Scale
                     : ce ? ScalingMode::Center : ScalingMode::None;
    if (m->scaling_mode_ == ScalingMode::Scale || m->scaling_mode_ == ScalingMode::ScaleCenter ||
        m->scaling_mode_ == ScalingMode::ScaleSigma) {
        if (S.has(smin_key)) m->s_min_ = parse_double(S.args(smin_key).at(0), where(smin_key));
        else m->warnings_.push_back(nn_path + ": " + smin_key + " not given, using 0");
        if (S.has(smax_key)) m->s_max_ = parse_double(S.args(smax_key).at(0), where(smax_key));
        else m->warnings_.push_back(nn_path + ": " + smax_key + " not given, using 1");
    }

    // Symmetry functions per element, sorted as n2p2 does.
    std::vector<std::vector<SymFuncDef>> defs(el.size());
    for (const auto& e : S.all(sf_key)) {
        const std::string w = nn_path + ":" + std::to_string(e.line);
        SymFuncDef d = parse_symfunction(split_ws(e.args), el, w);
        d.line = e.line;
        d.text = e.args;
        if ((d.type == 3 || d.type == 9 || d.type == 13 || d.type == 90) && d.zeta < 1.0)
            m->warnings_.push_back(w + ": zeta < 1: the angular term (1 + lambda cos theta)^zeta is singular "
                                       "or not smooth where 1 + lambda cos theta = 0");
        defs[d.ec].push_back(d);
    }

    // Network architecture.
    const bool no_short = descriptors_only && !S.has("global_hidden_layers_" + net);
    const long n_hidden = no_short ? 0 : parse_int(S.args("global_hidden_layers_" + net).at(0),
                                                   where("global_hidden_layers_" + net));
    auto gnodes = no_short ? std::vector<std::string>{} : S.args("global_nodes_" + net);
    auto gacts = no_short ? std::vector<std::string>{"l"} : S.args("global_activation_" + net);
    if (n_hidden < 0 || static_cast<long>(gnodes.size()) != n_hidden)
        throw ConfigError(where("global_nodes_" + net) + ": expected " + std::to_string(n_hidden) +
                          " hidden layer sizes, found " + std::to_string(gnodes.size()));
    if (static_cast<long>(gacts.size()) != n_hidden + 1)
        throw ConfigError(where("global_activation_" + net) + ": expected " + std::to_string(n_hidden + 1) +
                          " activation letters (hidden layers + output), found " + std::to_string(gacts.size()));
    std::vector<std::vector<int>> nodes(el.size());
    std::vector<std::vector<std::string>> acts(el.size());
    for (size_t e = 0; e < el.size(); ++e) {
        for (const auto& g : gnodes) nodes[e].push_back(static_cast<int>(parse_int(g, where("global_nodes_" + net))));
        acts[e] = gacts;
    }
    auto elem_of = [&](const std::string& sym, const std::string& w) {
        for (size_t i = 0; i < el.size(); ++i) if (el[i] == sym) return i;
        throw ConfigError(w + ": element '" + sym + "' is not in the 'elements' list");
    };
    for (const auto& en : S.all("element_hidden_layers_" + net)) {
        const std::string w = nn_path + ":" + std::to_string(en.line);
        auto t = split_ws(en.args);
        if (t.size() != 2) throw ConfigError(w + ": expected 'element_hidden_layers_" + net + " <element> <n>'");
        const size_t e = elem_of(t[0], w);
        const long n = parse_int(t[1], w);
        if (n < 0) throw ConfigError(w + ": number of hidden layers must be >= 0");
        const std::string out_act = acts[e].back();
        nodes[e].resize(n, -1);
        acts[e].resize(n);
        acts[e].push_back(out_act);
    }
    for (const auto& en : S.all("element_nodes_" + net)) {
        // Documented meaning (RuNNer/n2p2 docs): element_nodes_short <element> <layer> <nodes>,
        // layer counted from 1 over the hidden layers.
        const std::string w = nn_path + ":" + std::to_string(en.line);
        auto t = split_ws(en.args);
        if (t.size() != 3) throw ConfigError(w + ": expected 'element_nodes_" + net + " <element> <layer> <nodes>'");
        const size_t e = elem_of(t[0], w);
        const long l = parse_int(t[1], w), n = parse_int(t[2], w);
        if (l < 1 || l > static_cast<long>(nodes[e].size()))
            throw ConfigError(w + ": hidden layer " + t[1] + " does not exist for element " + t[0]);
        if (n < 1) throw ConfigError(w + ": number of nodes must be >= 1");
        nodes[e][l - 1] = static_cast<int>(n);
    }
    for (const auto& en : S.all("element_activation_" + net)) {
        const std::string w = nn_path + ":" + std::to_string(en.line);
        auto t = split_ws(en.args);
        if (t.size() != 3)
            throw ConfigError(w + ": expected 'element_activation_" + net + " <element> <layer> <letter>' "
                              "(per-neuron activations are not supported)");
        const size_t e = elem_of(t[0], w);
        const long l = parse_int(t[1], w);
        if (l < 1 || l > static_cast<long>(acts[e].size()))
            throw ConfigError(w + ": layer " + t[1] + " does not exist for element " + t[0]);
        acts[e][l - 1] = t[2];
    }
    const bool normalize = S.has("normalize_nodes");

    // Atomic energy offsets.
    std::vector<double> offsets(el.size(), 0.0);
    std::vector<bool> has_offset(el.size(), false);
    for (const auto& en : charge ? std::vector<SettingsEntry>{} : S.all("atom_energy")) {
        const std::string w = nn_path + ":" + std::to_string(en.line);
        auto t = split_ws(en.args);
        if (t.size() != 2) throw ConfigError(w + ": expected 'atom_energy <element> <energy>'");
        const size_t e = elem_of(t[0], w);
        if (has_offset[e]) throw ConfigError(w + ": atom_energy given twice for " + t[0]);
        has_offset[e] = true;
        offsets[e] = parse_double(t[1], w);
    }

    for (size_t e = 0; e < el.size(); ++e) {
        ElementModel em;
        em.symbol = el[e];
        em.z = zs[e];
        em.atom_energy = offsets[e];
        if (defs[e].empty())
            throw ConfigError(nn_path + ": element " + el[e] + " has no symmetry functions (" + sf_key + ")");
        std::stable_sort(defs[e].begin(), defs[e].end(), symfunction_less);
        em.descriptor = ElementDescriptor(defs[e], m->cutoff_type_, m->cutoff_alpha_, m->conv_length_, zs,
                                          static_cast<int>(el.size()));
        std::vector<int> sizes{em.descriptor.size()};
        std::vector<Activation> av;
        for (size_t l = 0; l < nodes[e].size(); ++l) {
            if (nodes[e][l] < 1)
                throw ConfigError(nn_path + ": number of nodes of hidden layer " + std::to_string(l + 1) +
                                  " of element " + el[e] + " is not set");
            sizes.push_back(nodes[e][l]);
        }
        sizes.push_back(1);
        for (size_t l = 0; l < acts[e].size(); ++l) {
            if (acts[e][l].empty())
                throw ConfigError(nn_path + ": activation of layer " + std::to_string(l + 1) + " of element " +
                                  el[e] + " is not set");
            av.push_back(activation_from_letter(acts[e][l], nn_path));
        }
        em.network = NeuralNetwork(sizes, av, normalize);
        m->cutoff_ = std::max(m->cutoff_, em.descriptor.cutoff() / m->conv_length_);
        m->elements_.push_back(std::move(em));
    }

    // scaling.data: n2p2 (6 columns) or RuNNer (5 columns + final energy line); a 3G potential's
    // scalinge.data in RuNNer's layout ends with one 'charge_min charge_max' line per element.
    const std::string sc_name = charge ? "scalinge.data" : "scaling.data";
    const std::string sc_path = join_path(dir, sc_name);
    size_t total_sf = 0;
    for (const auto& em : m->elements_) total_sf += em.descriptor.size();
    if (file_exists(sc_path)) {
        auto lines = data_lines(sc_path);
        const size_t ncol = lines.empty() ? 0 : lines.front().second.size();
        if (ncol != 6 && ncol != 5)
            throw ModelFileError(sc_path + ": expected 6 columns (n2p2) or 5 columns (RuNNer), found " +
                                 std::to_string(ncol));
        const size_t tail = ncol == 5 ? (charge ? m->elements_.size() : 1) : 0;
        size_t expect = total_sf + tail;
        if (lines.size() != expect) {
            std::ostringstream os;
            os << sc_path << ": expected " << expect << " lines (";
            for (size_t e = 0; e < m->elements_.size(); ++e)
                os << (e ? ", " : "") << m->elements_[e].symbol << " " << m->elements_[e].descriptor.size();
            os << " symmetry functions"
               << (tail ? charge ? " + one 'charge_min charge_max' line per element" : " + energy line" : "") << "), found "
               << lines.size();
            throw ModelFileError(os.str());
        }
        if (charge && tail) {
            for (size_t k = total_sf; k < lines.size(); ++k) {
                const auto& [no, t] = lines[k];
                if (t.size() != 2)
                    throw ModelFileError(sc_path + ":" + std::to_string(no) + ": expected 'charge_min charge_max' "
                                         "(RuNNer's layout ends with one such line per element)");
                m->charge_range_.push_back({file_number(t[0], sc_path, no), file_number(t[1], sc_path, no)});
            }
        }
        if (ncol == 5 && m->scaling_mode_ == ScalingMode::ScaleSigma)
            throw ModelFileError(sc_path + ": RuNNer 5-column layout has no sigma, but "
                                 "scale_symmetry_functions_sigma is set");
        size_t k = 0;
        for (size_t e = 0; e < m->elements_.size(); ++e) {
            ElementModel& em = m->elements_[e];
            for (int s = 0; s < em.descriptor.size(); ++s, ++k) {
                const auto& [no, t] = lines[k];
                const std::string w = sc_path + ":" + std::to_string(no);
                if (t.size() != ncol)
                    throw ModelFileError(w + ": expected " + std::to_string(ncol) + " columns, found " +
                                         std::to_string(t.size()));
                const double ei = file_number(t[0], sc_path, no), si = file_number(t[1], sc_path, no);
                if (ei != static_cast<double>(e + 1) || si != static_cast<double>(s + 1))
                    throw ModelFileError(w + ": expected element " + std::to_string(e + 1) + " SF " +
                                         std::to_string(s + 1) + ", found " + t[0] + " " + t[1]);
                em.g_min.push_back(file_number(t[2], sc_path, no));
                em.g_max.push_back(file_number(t[3], sc_path, no));
                em.g_mean.push_back(file_number(t[4], sc_path, no));
                em.g_sigma.push_back(ncol == 6 ? file_number(t[5], sc_path, no) : 0.0);
            }
        }
    } else if (m->scaling_mode_ != ScalingMode::None && with_weights) {
        throw ModelFileError("potential directory '" + dir + "' has no " + sc_name + ", but input.nn asks "
                             "for symmetry-function scaling");
    }
    for (auto& em : m->elements_) {
        const int n = em.descriptor.size();
        em.factor.assign(n, 1.0);
        em.shift.assign(n, 0.0);
        for (int s = 0; s < n; ++s) {
            if (em.g_max.empty()) break;  // no scaling.data (descriptor-only load)
            const double range = em.g_max[s] - em.g_min[s];
            switch (m->scaling_mode_) {
                case ScalingMode::None: break;
                case ScalingMode::Center: em.shift[s] = em.g_mean[s]; break;
                case ScalingMode::Scale:
                case ScalingMode::ScaleCenter:
                    em.shift[s] = m->scaling_mode_ == ScalingMode::Scale ? em.g_min[s] : em.g_mean[s];
                    if (range > 0.0) em.factor[s] = (m->s_max_ - m->s_min_) / range;
                    else {
                        em.factor[s] = 0.0;
                        m->warnings_.push_back(sc_path + ": symmetry function " + std::to_string(s + 1) + " of " +
                                               em.symbol + " has zero range (min = max); it is scaled to a constant");
                    }
                    break;
                case ScalingMode::ScaleSigma:
                    em.shift[s] = em.g_mean[s];
                    if (em.g_sigma[s] > 0.0) em.factor[s] = (m->s_max_ - m->s_min_) / em.g_sigma[s];
                    else {
                        em.factor[s] = 0.0;
                        m->warnings_.push_back(sc_path + ": symmetry function " + std::to_string(s + 1) + " of " +
                                               em.symbol + " has zero sigma; it is scaled to a constant");
                    }
                    break;
            }
        }
    }

    // Declared units and the ZBL pair baseline.
    if (const auto* d = S.declared("length_unit")) m->length_unit_ = d->args;
    if (const auto* d = S.declared("energy_unit")) m->energy_unit_ = d->args;
    if (!charge) m->read_baseline(nn_path, with_weights);

    // Weights.
    m->has_weights_ = with_weights;
    for (auto& em : m->elements_) {
        if (!with_weights) break;
        char name[32];
        std::snprintf(name, sizeof(name), charge ? "weightse.%03d.data" : "weights.%03d.data", em.z);
        load_network_weights(em.network, join_path(dir, name),
                             charge ? "the charge network of " + em.symbol : "element " + em.symbol);
    }
    return m;
}

void Model::read_baseline(const std::string& nn_path, bool with_weights) {
    const Settings& S = settings_;
    const auto& lines = S.all("hdnnp_zbl");
    if (lines.empty()) return;
    const std::string first = nn_path + ":" + std::to_string(lines.front().line);
    const int ne = n_elements();
    std::vector<int> seen(ne * ne, 0);
    for (const auto& en : lines) {
        const std::string w = nn_path + ":" + std::to_string(en.line);
        auto t = split_ws(en.args);
        if (t.size() == 1 && t[0] == "auto") {
            if (baseline_auto_) throw ConfigError(w + ": 'hdnnp_zbl auto' given twice");
            baseline_auto_ = true;
            continue;
        }
        if (t.size() != 4)
            throw ConfigError(w + ": expected 'hdnnp_zbl <element> <element> <r_inner> <r_outer>' or 'hdnnp_zbl auto'");
        const int a = element_index(t[0]), b = element_index(t[1]);
        for (int k = 0; k < 2; ++k)
            if ((k ? b : a) < 0)
                throw ConfigError(w + ": hdnnp_zbl: element '" + t[k] + "' is not in the 'elements' list");
        const double ri = parse_double(t[2], w), ro = parse_double(t[3], w);
        if (!(ri > 0.0) || !(ro > ri))
            throw ConfigError(w + ": hdnnp_zbl needs 0 < r_inner < r_outer, got " + t[2] + " " + t[3]);
        if (!(ro < cutoff_))
            throw ConfigError(w + ": hdnnp_zbl r_outer " + t[3] + " must be below the symmetry-function cutoff " +
                              std::to_string(cutoff_));
        if (seen[a * ne + b])
            throw ConfigError(w + ": hdnnp_zbl given twice for the pair " + t[0] + "-" + t[1] + " (first on line " +
                              std::to_string(seen[a * ne + b]) + ")");
        seen[a * ne + b] = seen[b * ne + a] = en.line;
        baseline_pairs_.push_back({a, b, ri, ro, en.line});
    }
    if (length_unit_.empty() || energy_unit_.empty())
        throw ConfigError(first + ": hdnnp_zbl needs the potential's units: declare them with a line "
                          "'# hdnnp: length_unit=... energy_unit=...' (e.g. Angstrom and eV)");
    const double lf = angstrom_per_length_unit(length_unit_), ef = ev_per_energy_unit(energy_unit_);
    if (lf == 0.0) throw ConfigError(nn_path + ": unknown length_unit '" + length_unit_ + "'");
    if (ef == 0.0) throw ConfigError(nn_path + ": unknown energy_unit '" + energy_unit_ + "'");
    std::string missing;
    for (int a = 0; a < ne; ++a)
        for (int b = a; b < ne; ++b)
            if (!seen[a * ne + b]) missing += (missing.empty() ? "" : ", ") + elements_[a].symbol + "-" + elements_[b].symbol;
    if (!missing.empty()) {
        if (!baseline_auto_)
            throw ConfigError(first + ": hdnnp_zbl is not given for the element pair(s) " + missing +
                              " (one line per pair, or 'hdnnp_zbl auto' to derive the radii from the training data)");
        if (with_weights)
            throw ConfigError(first + ": 'hdnnp_zbl auto': the radii of " + missing + " are derived from the "
                              "training data when training; a potential to predict with needs them written out "
                              "('hdnnp_zbl <element> <element> <r_inner> <r_outer>', as hdnnp train writes them)");
        return;  // training resolves them
    }
    std::vector<double> ri(ne * ne), ro(ne * ne);
    for (const auto& p : baseline_pairs_) {
        ri[p.a * ne + p.b] = ri[p.b * ne + p.a] = p.r_inner;
        ro[p.a * ne + p.b] = ro[p.b * ne + p.a] = p.r_outer;
    }
    std::vector<int> z;
    for (const auto& e : elements_) z.push_back(e.z);
    baseline_ = std::make_shared<const PairBaseline>(z, ri, ro, lf, ef);
}

namespace {
struct ThreadScratch {
    NeighborScratch nb;
    DescriptorWorkspace dws;
    NetworkWorkspace nws;
    std::vector<double> G, Gs, dEdG, w, grad;
    std::vector<double> tdx, tdy, tdz, tr;
    std::vector<int> tel;
    std::vector<int64_t> tpair;
    std::vector<int> count;
};

/// Neighbours of centre ci (atom i) inside r_c, in internal units, bucketed by element
/// into ts.nb. Returns the first pair closer than sqrt(min2) (skipped), if any.
struct Overlap { int64_t j = -1; double r = 0.0; };
Overlap gather(const Model& M0, const AtomsView& A, int64_t ci, int64_t i, double Lx, double rc, double min2,
               ThreadScratch& ts) {
    const NeighborView& NB = A.neighbors;
    const int ne = M0.n_elements();
    const int64_t p0 = NB.offsets[ci], p1 = NB.offsets[ci + 1];
    const double rc2 = rc * rc;
    const int64_t m = p1 - p0;
    if (static_cast<int64_t>(ts.tdx.size()) < m) {
        ts.tdx.resize(m); ts.tdy.resize(m); ts.tdz.resize(m); ts.tr.resize(m);
        ts.tel.resize(m); ts.tpair.resize(m);
    }
    if (static_cast<int64_t>(ts.nb.dx.size()) < m) ts.nb.reserve(static_cast<int>(m));
    ts.count.assign(ne + 1, 0);
    const double* xi = &A.positions[3 * i];
    Overlap ov;
    int n = 0;
    for (int64_t p = p0; p < p1; ++p) {
        const int32_t j = NB.neighbor(ci, p);
        if (A.species[j] < 0) continue;
        const double* xj = &A.positions[3 * j];
        double sx = 0, sy = 0, sz = 0;
        if (NB.shift_id) {
            const double* sh = &NB.shifts[3 * NB.shift_id[p]];
            sx = sh[0]; sy = sh[1]; sz = sh[2];
        }
        const double dx = (xj[0] + sx - xi[0]) * Lx;
        const double dy = (xj[1] + sy - xi[1]) * Lx;
        const double dz = (xj[2] + sz - xi[2]) * Lx;
        const double r2 = dx * dx + dy * dy + dz * dz;
        if (r2 >= rc2) continue;
        if (r2 < min2) {
            if (ov.j < 0) { ov.j = j; ov.r = std::sqrt(r2); }
            continue;
        }
        ts.tdx[n] = dx; ts.tdy[n] = dy; ts.tdz[n] = dz; ts.tr[n] = std::sqrt(r2);
        ts.tel[n] = A.species[j]; ts.tpair[n] = p;
        ++ts.count[A.species[j] + 1];
        ++n;
    }
    // Bucket neighbours by element (stable counting sort).
    NeighborScratch& nb = ts.nb;
    nb.n = n;
    nb.bucket.assign(ne + 1, 0);
    for (int e = 0; e < ne; ++e) nb.bucket[e + 1] = nb.bucket[e] + ts.count[e + 1];
    std::vector<int>& fill = ts.count;
    for (int e = 0; e < ne; ++e) fill[e] = nb.bucket[e];
    for (int t = 0; t < n; ++t) {
        const int e = ts.tel[t];
        const int s = fill[e]++;
        nb.dx[s] = ts.tdx[t]; nb.dy[s] = ts.tdy[t]; nb.dz[s] = ts.tdz[t]; nb.r[s] = ts.tr[t];
        nb.elem[s] = e; nb.zw[s] = M0.elements()[e].z; nb.pair[s] = ts.tpair[t];
    }
    return ov;
}

/// The overlap error reported by a parallel loop: the one of the lowest centre index, so the
/// message does not depend on the thread schedule.
struct FirstOverlap {
    std::string message;
    int64_t atom = -1;
    void record(int64_t i, const Overlap& ov, double Lx) {
#pragma omp critical(hdnnp_first_overlap)
        if (atom < 0 || i < atom) {
            atom = i;
            std::ostringstream os;
            os << "atoms " << i << " and " << ov.j << " overlap (distance " << ov.r / Lx << ")";
            message = os.str();
        }
    }
};

bool same_definition(const SymFuncDef& a, const SymFuncDef& b) {
    return a.type == b.type && a.ec == b.ec && a.e1 == b.e1 && a.e2 == b.e2 && a.eta == b.eta &&
           a.rs == b.rs && a.rc == b.rc && a.lambda == b.lambda && a.zeta == b.zeta && a.rl == b.rl &&
           a.angle_left == b.angle_left && a.angle_right == b.angle_right && a.theta_s == b.theta_s &&
           a.subtype == b.subtype;
}
}  // namespace

void Model::compute(const AtomsView& A, const ComputeOptions& opt, ComputeResult& out) const {
    const Model* self = this;
    compute_members(&self, 1, A, opt, out);
}

void Model::compute_members(const Model* const* members, const int M, const AtomsView& A,
                            const ComputeOptions& opt, ComputeResult& out) {
    const Model& M0 = *members[0];
    const int64_t nl = A.n_local, na = A.n_all;
    if (nl < 0 || na < nl) throw std::invalid_argument("n_local must be in [0, n_all]");
    const NeighborView& NB = A.neighbors;
    const int64_t nc = NB.n_centers;
    if (NB.centers ? nc > nl : nc != nl)
        throw std::invalid_argument("neighbour list must cover the n_local centres");
    const int ne = M0.n_elements();
    for (int64_t a = 0; a < na; ++a) {
        if (A.species[a] < -1 || A.species[a] >= ne)
            throw InputError("atom " + std::to_string(a) + " has an element index outside the potential's " +
                             std::to_string(ne) + " elements");
        for (int c = 0; c < 3; ++c)
            if (!std::isfinite(A.positions[3 * a + c]))
                throw InputError("atom " + std::to_string(a) + " has a non-finite coordinate");
    }
    const double L = M0.conv_length_;           // native length -> internal (same for all members)
    const double Lx = L * A.length_factor;      // input length -> internal
    const bool need_grad = opt.forces || opt.virial;
    const bool per_member = need_grad && opt.member_forces && M > 1 && !opt.dEdG;
    // Centres are processed in chunks: the per-pair gradients dE_i/dr_j of one chunk live
    // in `pair_grad` until they are reduced into the forces, in a fixed order that does not
    // depend on the number of threads (each thread owns a range of atoms and scans the
    // chunk's pairs in order). Memory: one chunk of pairs, not the whole neighbour list.
    // Member m's pair gradients (per_member) follow at offset (m + 1) * stride.
    // Chunk size: about 8 chunks per call (each ends in a barrier, which costs when the
    // machine is oversubscribed), at least 256 centres, at most 2,048 (the buffer is
    // ~2.3 KB per centre for ~100 neighbours).
    const int64_t chunk = std::clamp<int64_t>((nc + 7) / 8, 256, 2048);
    int64_t max_chunk_pairs = 0;
    for (int64_t c0 = 0; c0 < nc; c0 += chunk)
        max_chunk_pairs = std::max(max_chunk_pairs, NB.offsets[std::min(nc, c0 + chunk)] - NB.offsets[c0]);
    const int64_t stride = 3 * max_chunk_pairs;
    const int n_grad_sets = per_member ? M + 1 : 1;
    std::vector<double> pair_grad(need_grad ? n_grad_sets * stride : 0, 0.0);
    const bool want_virial = opt.virial || opt.atom_virial;
    std::vector<double> centre_virial(want_virial ? 9 * nl : 0, 0.0);  // sum_j -r_ij (x) dE_i/dr_j
    if (need_grad) out.forces.assign(3 * na, 0.0);
    if (per_member) out.member_forces.assign(static_cast<size_t>(M) * 3 * na, 0.0);
    else out.member_forces.clear();
    out.atom_energies.assign(nl, 0.0);
    out.extrapolating_atoms.assign(nl, 0);
    out.extrapolations.clear();
    if (opt.dEdG && opt.descriptors)
        throw std::invalid_argument("descriptors are not computed in a force pass from a given dE/dG");
    if (opt.descriptors) {
        out.descriptor_offsets.assign(nl + 1, 0);
        for (int64_t i = 0; i < nl; ++i)
            out.descriptor_offsets[i + 1] = out.descriptor_offsets[i] +
                (A.species[i] >= 0 ? M0.elements_[A.species[i]].descriptor.size() : 0);
        out.descriptors.assign(out.descriptor_offsets[nl], 0.0);
    }
    std::vector<int64_t> w_offsets;  // start of each centre's dE/dG in opt.dEdG
    if (opt.dEdG) {
        w_offsets.assign(nl + 1, 0);
        for (int64_t i = 0; i < nl; ++i)
            w_offsets[i + 1] = w_offsets[i] + (A.species[i] >= 0 ? M0.elements_[A.species[i]].descriptor.size() : 0);
    }
    // Energies in physical (not normalised) units, per member and atom.
    std::vector<double> atom_e(static_cast<size_t>(M) * nl, 0.0);
    std::vector<char> is_centre(nl, 0);
    FirstOverlap overlap;
    std::vector<std::vector<Extrapolation>> extra_per_thread;
    int nthreads = 1;
#ifdef _OPENMP
    nthreads = opt.threads > 0 ? opt.threads : omp_get_max_threads();
#endif
    extra_per_thread.resize(nthreads);

#pragma omp parallel num_threads(nthreads)
    {
        int tid = 0;
#ifdef _OPENMP
        tid = omp_get_thread_num();
#endif
        ThreadScratch ts;
        auto& extra = extra_per_thread[tid];
        int nthr = 1;
#ifdef _OPENMP
        nthr = omp_get_num_threads();
#endif
        // This thread's share of the force reduction: atoms [f0, f1).
        const int64_t f0 = na * tid / nthr, f1 = na * (tid + 1) / nthr;
        for (int64_t c0 = 0; c0 < nc; c0 += chunk) {
        const int64_t c1 = std::min(nc, c0 + chunk);
        const int64_t pbase = NB.offsets[c0];
#pragma omp for schedule(dynamic, 8)
        for (int64_t ci = c0; ci < c1; ++ci) {
            const int64_t i = NB.center(ci);
            const int64_t p0 = NB.offsets[ci], p1 = NB.offsets[ci + 1];
            if (need_grad)
                for (int s = 0; s < n_grad_sets; ++s)
                    std::fill(&pair_grad[s * stride + 3 * (p0 - pbase)], &pair_grad[s * stride + 3 * (p1 - pbase)], 0.0);
            if (A.species[i] < 0) continue;
            is_centre[i] = 1;
            const ElementModel& em = M0.elements_[A.species[i]];
            const double min2 = opt.min_distance * opt.min_distance * L * L;
            NeighborScratch& nb = ts.nb;
            const Overlap ov = gather(M0, A, ci, i, Lx, em.descriptor.cutoff(), min2, ts);
            if (ov.j >= 0) overlap.record(i, ov, Lx);
            const int n = nb.n;
            // Symmetry functions (once for the committee), extrapolation check against the
            // narrowest member range.
            const int K = em.descriptor.size();
            ts.G.resize(K); ts.Gs.resize(K); ts.dEdG.resize(K); ts.w.resize(K);
            // (with dE/dG given no values are needed: no value pass, no extrapolation record)
            if (!opt.dEdG) em.descriptor.values(nb, ts.dws, ts.G.data());
            int64_t n_out = 0;
            if (!opt.dEdG && !em.g_min.empty()) {
                for (int k = 0; k < K; ++k) {
                    double lo = em.g_min[k], hi = em.g_max[k];
                    for (int mm = 1; mm < M; ++mm) {
                        const ElementModel& e2 = members[mm]->elements_[A.species[i]];
                        if (e2.g_min.empty()) continue;
                        lo = std::max(lo, e2.g_min[k]);
                        hi = std::min(hi, e2.g_max[k]);
                    }
                    const double g = ts.G[k];
                    if (g < lo || g > hi) {
                        ++n_out;
                        extra.push_back({i, k, g, lo, hi});
                    }
                }
            }
            out.extrapolating_atoms[i] = n_out;
            if (opt.descriptors && !opt.scaled_descriptors)
                std::copy(ts.G.begin(), ts.G.end(), &out.descriptors[out.descriptor_offsets[i]]);
            // Each member: scaling, network (E_i and dE_i/dG scaled), then w = dE/dG (raw,
            // physical energy units) for the gradient pass.
            if (need_grad && !per_member) std::fill(ts.w.begin(), ts.w.end(), 0.0);
            if (opt.dEdG) {
                for (int k = 0; k < K; ++k) ts.w[k] = opt.dEdG[w_offsets[i] + k];
            }
            for (int mm = 0; mm < (opt.dEdG ? 0 : M); ++mm) {
                const Model& mo = *members[mm];
                const ElementModel& me = mo.elements_[A.species[i]];
                const double smin = mo.scaling_mode_ == ScalingMode::None || mo.scaling_mode_ == ScalingMode::Center
                                        ? 0.0 : mo.s_min_;
                for (int k = 0; k < K; ++k) ts.Gs[k] = smin + me.factor[k] * (ts.G[k] - me.shift[k]);
                if (mm == 0 && opt.descriptors && opt.scaled_descriptors)
                    std::copy(ts.Gs.begin(), ts.Gs.end(), &out.descriptors[out.descriptor_offsets[i]]);
                const double e_int = me.network.evaluate(ts.Gs.data(), need_grad ? ts.dEdG.data() : nullptr, ts.nws);
                atom_e[static_cast<size_t>(mm) * nl + i] = e_int / mo.conv_energy_ + mo.mean_energy_ + me.atom_energy;
                if (!need_grad) continue;
                const double scale = 1.0 / (mo.conv_energy_ * M);
                if (per_member) {
                    for (int k = 0; k < K; ++k) ts.w[k] = ts.dEdG[k] * me.factor[k] / mo.conv_energy_;
                    ts.grad.assign(3 * static_cast<size_t>(n), 0.0);
                    em.descriptor.gradient(nb, ts.dws, ts.w.data(), ts.grad.data());
                    double* pg = &pair_grad[(mm + 1) * stride];
                    double* mean = &pair_grad[0];
                    for (int s = 0; s < n; ++s) {
                        const int64_t q = 3 * (nb.pair[s] - pbase);
                        for (int c = 0; c < 3; ++c) {
                            pg[q + c] = ts.grad[3 * s + c];
                            mean[q + c] += ts.grad[3 * s + c] / M;
                        }
                    }
                } else {
                    for (int k = 0; k < K; ++k) ts.w[k] += ts.dEdG[k] * me.factor[k] * scale;
                }
            }
            if (!need_grad) continue;
            if (!per_member) {
                ts.grad.assign(3 * static_cast<size_t>(n), 0.0);
                if (opt.dEdG) em.descriptor.gradient_fresh(nb, ts.dws, ts.w.data(), ts.grad.data());
                else em.descriptor.gradient(nb, ts.dws, ts.w.data(), ts.grad.data());
                for (int s = 0; s < n; ++s) {
                    double* g = &pair_grad[3 * (nb.pair[s] - pbase)];
                    g[0] = ts.grad[3 * s];
                    g[1] = ts.grad[3 * s + 1];
                    g[2] = ts.grad[3 * s + 2];
                }
            }
            if (want_virial) {
                double Wi[9] = {0};
                for (int s = 0; s < n; ++s) {
                    const double* g = &pair_grad[3 * (nb.pair[s] - pbase)];
                    const double d[3] = {nb.dx[s], nb.dy[s], nb.dz[s]};
                    for (int a = 0; a < 3; ++a)
                        for (int b = 0; b < 3; ++b) Wi[3 * a + b] -= d[a] * g[b];
                }
                std::copy(Wi, Wi + 9, &centre_virial[9 * i]);
            }
        }  // implicit barrier: the chunk's pair gradients are complete
        if (need_grad && overlap.atom < 0) {  // read after the loop's barrier
            for (int64_t ci = c0; ci < c1; ++ci) {
                const int64_t i = NB.center(ci);
                const bool own_i = i >= f0 && i < f1;
                for (int64_t p = NB.offsets[ci]; p < NB.offsets[ci + 1]; ++p) {
                    const int32_t j = NB.neighbor(ci, p);
                    const bool own_j = j >= f0 && j < f1;
                    if (!own_i && !own_j) continue;
                    for (int s = 0; s < n_grad_sets; ++s) {
                        const double* g = &pair_grad[s * stride + 3 * (p - pbase)];
                        double* F = s == 0 ? out.forces.data() : &out.member_forces[(s - 1) * 3 * na];
                        for (int c = 0; c < 3; ++c) {
                            if (own_i) F[3 * i + c] += g[c];
                            if (own_j) F[3 * j + c] -= g[c];
                        }
                    }
                }
            }
        }
#pragma omp barrier
        }
    }
    if (overlap.atom >= 0) throw InputError(overlap.message);

    // Deterministic reductions (independent of the number of threads).
    out.energy = 0.0;
    out.member_energies.assign(M, 0.0);
    for (int64_t i = 0; i < nl; ++i) {
        if (!is_centre[i]) continue;
        double sum = 0.0;
        for (int mm = 0; mm < M; ++mm) {
            const double e = atom_e[static_cast<size_t>(mm) * nl + i];
            out.member_energies[mm] += e;
            sum += e;
        }
        out.atom_energies[i] = M == 1 ? sum : sum / M;
        out.energy += out.atom_energies[i];
    }
    for (auto& v : extra_per_thread) out.extrapolations.insert(out.extrapolations.end(), v.begin(), v.end());
    std::sort(out.extrapolations.begin(), out.extrapolations.end(),
              [](const Extrapolation& a, const Extrapolation& b) {
                  return a.atom != b.atom ? a.atom < b.atom : a.sf < b.sf;
              });
    std::fill(out.virial, out.virial + 9, 0.0);
    if (need_grad) {
        if (opt.virial)
            for (int64_t i = 0; i < nl; ++i)
                for (int k = 0; k < 9; ++k) out.virial[k] += centre_virial[9 * i + k];
        if (opt.atom_virial) out.atom_virials = std::move(centre_virial);
        for (auto& f : out.forces) f *= Lx;
        for (auto& f : out.member_forces) f *= Lx;
    } else {
        out.forces.clear();
    }
    // The pair baseline, shared by the committee (the members' baselines are equal).
    if (opt.baseline && !opt.dEdG && M0.baseline_) M0.baseline_->add(A, opt, out);
}

namespace {
/// The atoms of a whole-structure call: element indices within the potential's (or -1), finite
/// coordinates, and finite `more` (3 per atom, named `what`) when given.
void check_atoms(const AtomsView& A, int n_elements, const double* more = nullptr, const char* what = nullptr) {
    for (int64_t a = 0; a < A.n_all; ++a) {
        if (A.species[a] < -1 || A.species[a] >= n_elements)
            throw InputError("atom " + std::to_string(a) + " has an element index outside the potential's elements");
        for (int c = 0; c < 3; ++c) {
            if (!std::isfinite(A.positions[3 * a + c]))
                throw InputError("atom " + std::to_string(a) + " has a non-finite coordinate");
            if (more && !std::isfinite(more[3 * a + c]))
                throw InputError("atom " + std::to_string(a) + " has a non-finite " + what);
        }
    }
}
/// The centres of a whole-structure call (every local atom of a potential element that `skip`
/// does not pass over), in parallel: each with its neighbours inside its element's cutoff in
/// ts.nb, then `body(i, ts, local)` (`local`: a Local per thread). Pairs closer than
/// min_distance: an InputError naming the first such centre, after the loop.
template <class Local, class Skip, class Body>
void each_centre(const Model& M0, const AtomsView& A, int threads, double min_distance, Skip skip, Body body) {
    if (A.neighbors.centers || A.neighbors.n_centers != A.n_local)
        throw std::invalid_argument("a whole-structure call needs one centre per local atom");
    const double L = M0.conv_length(), Lx = L * A.length_factor;
    FirstOverlap overlap;
    const int nthreads = thread_count(threads);
    (void)nthreads;
#pragma omp parallel num_threads(nthreads)
    {
        ThreadScratch ts;
        Local local;
#pragma omp for schedule(dynamic, 4)
        for (int64_t i = 0; i < A.n_local; ++i) {
            if (A.species[i] < 0 || skip(i)) continue;
            const double rc = M0.elements()[A.species[i]].descriptor.cutoff();
            const Overlap ov = gather(M0, A, i, i, Lx, rc, min_distance * min_distance * L * L, ts);
            if (ov.j >= 0) {
                overlap.record(i, ov, Lx);
                continue;
            }
            body(i, ts, local);
        }
    }
    if (overlap.atom >= 0) throw InputError(overlap.message);
}
}  // namespace

void Model::descriptor_jacobian(const AtomsView& A, DescriptorJacobian& out, int threads,
                                double min_distance) const {
    const int64_t nl = A.n_local;
    const NeighborView& NB = A.neighbors;
    check_atoms(A, n_elements());
    const double Lx = conv_length_ * A.length_factor;
    // Pass 1 (parallel): per centre its G, its pairs inside r_c and their K x 3 blocks, kept
    // per centre; pass 2: concatenated in atom order (independent of the thread count).
    std::vector<std::vector<double>> G(nl), D(nl), J(nl);
    std::vector<std::vector<int32_t>> P(nl);
    struct Local { std::vector<double> unit, g3; };
    each_centre<Local>(*this, A, threads, min_distance, [](int64_t) { return false; },
                       [&](int64_t i, ThreadScratch& ts, Local& lo) {
        const ElementModel& em = elements_[A.species[i]];
        const NeighborScratch& nb = ts.nb;
        const int K = em.descriptor.size(), n = nb.n;
        G[i].assign(K, 0.0);
        em.descriptor.values(nb, ts.dws, G[i].data());
        // One gradient pass of its own group per SF (w = unit vector): exact, reuses the
        // kernels; they contract over SFs, so a dedicated Jacobian kernel would be faster.
        J[i].assign(static_cast<size_t>(n) * K * 3, 0.0);
        lo.unit.assign(K, 0.0);
        const auto groups = em.descriptor.group_members();
        for (size_t gi = 0; gi < groups.size(); ++gi)
            for (int k : groups[gi]) {
                lo.unit[k] = 1.0;
                lo.g3.assign(3 * static_cast<size_t>(n), 0.0);
                em.descriptor.gradient_group(nb, ts.dws, lo.unit.data(), lo.g3.data(), static_cast<int>(gi));
                lo.unit[k] = 0.0;
                for (int s2 = 0; s2 < n; ++s2)
                    for (int c = 0; c < 3; ++c)
                        J[i][(static_cast<size_t>(s2) * K + k) * 3 + c] = lo.g3[3 * s2 + c] * Lx;
            }
        P[i].resize(n);
        D[i].resize(3 * static_cast<size_t>(n));
        for (int s2 = 0; s2 < n; ++s2) {
            P[i][s2] = NB.neighbor(i, nb.pair[s2]);
            D[i][3 * s2] = nb.dx[s2] / Lx;
            D[i][3 * s2 + 1] = nb.dy[s2] / Lx;
            D[i][3 * s2 + 2] = nb.dz[s2] / Lx;
        }
    });
    out.g_offsets.assign(nl + 1, 0);
    out.pair_offsets.assign(nl + 1, 0);
    for (int64_t i = 0; i < nl; ++i) {
        out.g_offsets[i + 1] = out.g_offsets[i] + static_cast<int64_t>(G[i].size());
        out.pair_offsets[i + 1] = out.pair_offsets[i] + static_cast<int64_t>(P[i].size());
    }
    const int64_t np = out.pair_offsets[nl];
    out.G.clear(); out.G.reserve(out.g_offsets[nl]);
    out.pair_atom.clear(); out.pair_atom.reserve(np);
    out.pair_d.clear(); out.pair_d.reserve(3 * np);
    out.dG.clear();
    out.dg_offsets.assign(np + 1, 0);
    int64_t q = 0;
    for (int64_t i = 0; i < nl; ++i) {
        out.G.insert(out.G.end(), G[i].begin(), G[i].end());
        out.pair_atom.insert(out.pair_atom.end(), P[i].begin(), P[i].end());
        out.pair_d.insert(out.pair_d.end(), D[i].begin(), D[i].end());
        out.dG.insert(out.dG.end(), J[i].begin(), J[i].end());
        const int64_t K = static_cast<int64_t>(G[i].size());
        for (size_t s2 = 0; s2 < P[i].size(); ++s2, ++q) out.dg_offsets[q + 1] = out.dg_offsets[q] + 3 * K;
        std::vector<double>().swap(J[i]);
    }
}

void Model::descriptor_jvp(const AtomsView& A, const double* lam, const double* M, std::vector<double>& V,
                           std::vector<int64_t>& offsets, int threads, double min_distance) const {
    const int64_t nl = A.n_local;
    const NeighborView& NB = A.neighbors;
    check_atoms(A, n_elements(), lam, "direction");
    const double Lx = conv_length_ * A.length_factor;
    offsets.assign(nl + 1, 0);
    for (int64_t i = 0; i < nl; ++i)
        offsets[i + 1] = offsets[i] + (A.species[i] < 0 ? 0 : elements_[A.species[i]].descriptor.size());
    V.assign(offsets[nl], 0.0);
    auto moves = [&](int64_t a) { return lam[3 * a] != 0.0 || lam[3 * a + 1] != 0.0 || lam[3 * a + 2] != 0.0; };
    // u_p = lam_i - lam_j: without a strain a centre is skipped unless it or a neighbour moves
    auto still = [&](int64_t i) {
        if (M || moves(i)) return false;
        for (int64_t p = NB.offsets[i]; p < NB.offsets[i + 1]; ++p)
            if (moves(NB.neighbor(i, p))) return false;
        return true;
    };
    struct Local { std::vector<double> u; std::vector<unsigned char> on; };
    each_centre<Local>(*this, A, threads, min_distance, still, [&](int64_t i, ThreadScratch& ts, Local& lo) {
        const NeighborScratch& nb = ts.nb;
        const int n = nb.n;
        lo.u.assign(3 * static_cast<size_t>(n), 0.0);
        lo.on.assign(n, 0);
        for (int s = 0; s < n; ++s) {
            const int32_t j = NB.neighbor(i, nb.pair[s]);
            double* us = &lo.u[3 * s];
            for (int c = 0; c < 3; ++c) us[c] = lam[3 * i + c] - lam[3 * j + c];
            if (M) {
                const double d[3] = {nb.dx[s] / Lx, nb.dy[s] / Lx, nb.dz[s] / Lx};
                for (int b = 0; b < 3; ++b) us[b] -= d[0] * M[b] + d[1] * M[3 + b] + d[2] * M[6 + b];
            }
            // dG/d(native length) = Lx dG/d(internal length)
            for (int c = 0; c < 3; ++c) us[c] *= Lx;
            lo.on[s] = us[0] != 0.0 || us[1] != 0.0 || us[2] != 0.0;
        }
        elements_[A.species[i]].descriptor.jvp(nb, ts.dws, lo.u.data(), lo.on.data(), &V[offsets[i]]);
    });
}

Committee::Committee(std::vector<std::shared_ptr<const Model>> members) : members_(std::move(members)) {
    if (members_.empty()) throw ConfigError("a committee needs at least one potential");
    const Model& a = *members_.front();
    for (size_t k = 1; k < members_.size(); ++k) {
        const Model& b = *members_[k];
        const std::string who = "committee member '" + b.directory() + "' differs from '" + a.directory() + "': ";
        if (b.element_symbols() != a.element_symbols())
            throw ConfigError(who + "different elements");
        if (b.cutoff_type() != a.cutoff_type() || b.cutoff_alpha() != a.cutoff_alpha())
            throw ConfigError(who + "different cutoff_type");
        if (b.conv_length() != a.conv_length())
            throw ConfigError(who + "different conv_length (descriptors would differ)");
        for (int e = 0; e < a.n_elements(); ++e) {
            const auto& da = a.elements()[e].descriptor.definitions();
            const auto& db = b.elements()[e].descriptor.definitions();
            if (da.size() != db.size())
                throw ConfigError(who + "element " + a.elements()[e].symbol + " has " + std::to_string(db.size()) +
                                  " symmetry functions instead of " + std::to_string(da.size()));
            for (size_t s = 0; s < da.size(); ++s)
                if (!same_definition(da[s], db[s]))
                    throw ConfigError(who + "symmetry function " + std::to_string(s + 1) + " of element " +
                                      a.elements()[e].symbol + ": '" + db[s].text + "' (line " +
                                      std::to_string(db[s].line) + ") vs '" + da[s].text + "' (line " +
                                      std::to_string(da[s].line) + ")");
        }
        if (!b.has_weights()) throw ConfigError("committee member '" + b.directory() + "' has no weights");
        if (static_cast<bool>(a.baseline()) != static_cast<bool>(b.baseline()) ||
            (a.baseline() && !a.baseline()->same_as(*b.baseline())))
            throw ConfigError(who + "different hdnnp_zbl pair baselines (members must share one baseline)");
    }
    for (const auto& m : members_) raw_.push_back(m.get());
}

std::shared_ptr<const Committee> Committee::load(const std::vector<std::string>& directories) {
    std::vector<std::shared_ptr<const Model>> ms;
    for (const auto& d : directories) ms.push_back(Model::load(d));
    return std::make_shared<Committee>(std::move(ms));
}

void Committee::compute(const AtomsView& atoms, const ComputeOptions& opt, ComputeResult& out) const {
    Model::compute_members(raw_.data(), size(), atoms, opt, out);
}

}  // namespace hdnnp
