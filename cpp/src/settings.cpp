#include "hdnnp/settings.hpp"

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <fstream>
#include <set>
#include <sstream>

#include "hdnnp/errors.hpp"

namespace hdnnp {
namespace {

// Canonical keyword for every accepted spelling (n2p2 createKnownKeywordsMap).
const std::map<std::string, std::string>& alias_map() {
    static const std::map<std::string, std::string> m = {
        {"nnp_generation", "nnp_type"},
        {"nnp_type_gen", "nnp_type"},
        {"nnp_gen", "nnp_type"},
        {"symfunction", "symfunction_short"},
        {"short_energy_error_threshold", "rmse_threshold_energy"},
        {"short_force_error_threshold", "rmse_threshold_force"},
        {"short_energy_fraction", "energy_fraction"},
        {"short_force_fraction", "force_fraction"},
    };
    return m;
}

const std::set<std::string>& known_keywords() {
    static const std::set<std::string> s = {
        // general / prediction
        "number_of_elements", "elements", "atom_energy", "cutoff_type", "symfunction_short",
        "scale_symmetry_functions", "center_symmetry_functions",
        "scale_symmetry_functions_sigma", "scale_min_short", "scale_max_short",
        "global_hidden_layers_short", "global_nodes_short", "global_activation_short",
        "element_hidden_layers_short", "element_nodes_short", "element_activation_short",
        "normalize_nodes", "mean_energy", "conv_energy", "conv_length", "conv_charge",
        // 4G / electrostatics
        "nnp_type", "global_hidden_layers_electrostatic", "global_nodes_electrostatic",
        "global_activation_electrostatic", "element_hidden_layers_electrostatic",
        "element_nodes_electrostatic", "element_activation_electrostatic",
        "fixed_gausswidth", "initial_hardness", "ewald_truncation_error_method", "ewald_prec",
        "screen_electrostatics", "four_pi_epsilon",
        // 3G (RuNNer): charge networks on their own symmetry functions
        "symfunction_electrostatic", "scale_min_elec", "scale_max_elec", "enforce_totcharge",
        "use_electrostatics", "use_short_nn", "electrostatic_type", "ewald_alpha", "ewald_cutoff", "ewald_kmax",
        // training
        "random_seed", "test_fraction", "epochs", "normalize_data_set", "use_short_forces",
        "force_weight", "force_energy_ratio", "energy_fraction", "force_fraction",
        "charge_fraction", "rmse_threshold", "rmse_threshold_energy", "rmse_threshold_force",
        "rmse_threshold_charge", "rmse_threshold_trials", "rmse_threshold_trials_energy",
        "rmse_threshold_trials_force", "rmse_threshold_trials_charge", "use_old_weights_short",
        "use_old_weights_charge", "weights_min", "weights_max", "nguyen_widrow_weights_short",
        "nguyen_widrow_weights_charge", "precondition_weights", "main_error_metric",
        "write_trainpoints", "write_trainforces", "write_traincharges", "write_weights_epoch",
        "write_neuronstats", "write_trainlog", "repeated_energy_update", "updater_type",
        "parallel_mode", "jacobian_mode", "update_strategy", "selection_mode",
        "selection_mode_energy", "selection_mode_force", "selection_mode_charge",
        "task_batch_size_energy", "task_batch_size_force", "task_batch_size_charge",
        "gradient_type", "gradient_eta", "gradient_adam_eta", "gradient_adam_beta1",
        "gradient_adam_beta2", "gradient_adam_epsilon", "kalman_type", "kalman_epsilon",
        "kalman_eta", "kalman_etatau", "kalman_etamax", "kalman_q0", "kalman_qtau",
        "kalman_qmin", "kalman_lambda_short", "kalman_nue_short", "memorize_symfunc_results",
        // this project's own keywords (n2p2 warns about them and goes on)
        "hdnnp_zbl", "validation_fraction", "selection_energy_weight", "selection_force_weight",
        "learning_rate_decay", "energy_weight", "stress_weight", "early_stopping_patience", "memory_budget_mb",
        "fit_offsets", "weights_init", "time_limit", "kalman_decoupling", "descriptor_precision",
    };
    return s;
}

const std::set<std::string>& repeatable() {
    static const std::set<std::string> s = {
        "symfunction_short",  "symfunction_electrostatic", "atom_energy",          "element_nodes_short",
        "fixed_gausswidth",   "initial_hardness",     "element_hidden_layers_short", "hdnnp_zbl",
        "element_activation_short", "element_nodes_electrostatic",
        "element_hidden_layers_electrostatic", "element_activation_electrostatic"};
    return s;
}

std::string trim(const std::string& s) {
    const auto b = s.find_first_not_of(" \t\r\n");
    if (b == std::string::npos) return "";
    const auto e = s.find_last_not_of(" \t\r\n");
    return s.substr(b, e - b + 1);
}

}  // namespace

std::vector<std::string> split_ws(const std::string& s) {
    std::vector<std::string> out;
    std::istringstream is(s);
    std::string tok;
    while (is >> tok) out.push_back(tok);
    return out;
}

double parse_double(const std::string& token, const std::string& where) {
    std::string t = token;
    for (char& c : t)
        if (c == 'D' || c == 'd') c = 'E';
    errno = 0;
    char* end = nullptr;
    const double v = std::strtod(t.c_str(), &end);
    if (t.empty() || end != t.c_str() + t.size() || errno == ERANGE)
        throw ConfigError(where + ": expected a number, found '" + token + "'");
    return v;
}

long parse_int(const std::string& token, const std::string& where) {
    errno = 0;
    char* end = nullptr;
    const long v = std::strtol(token.c_str(), &end, 10);
    if (token.empty() || end != token.c_str() + token.size() || errno == ERANGE)
        throw ConfigError(where + ": expected an integer, found '" + token + "'");
    return v;
}

Settings Settings::parse(const std::string& text, const std::string& source) {
    Settings s;
    s.source_ = source;
    std::map<std::string, std::string> spelling_used;  // canonical -> spelling
    std::istringstream is(text);
    std::string raw;
    int lineno = 0;
    while (std::getline(is, raw)) {
        ++lineno;
        {
            // The declaration hdnnp writes into a comment: "# hdnnp: length_unit=Bohr energy_unit=Ha".
            const std::string t = trim(raw);
            if (t.rfind("#", 0) == 0) {
                const std::string body = trim(t.substr(1));
                if (body.rfind("hdnnp:", 0) == 0)
                    for (const auto& kv : split_ws(body.substr(6))) {
                        const auto eq = kv.find('=');
                        if (eq != std::string::npos && eq > 0)
                            s.declarations_[kv.substr(0, eq)] = {kv.substr(eq + 1), lineno};
                    }
            }
        }
        const auto cut = raw.find_first_of("#!");
        std::string line = trim(cut == std::string::npos ? raw : raw.substr(0, cut));
        if (line.empty()) continue;
        const auto sp = line.find_first_of(" \t");
        std::string key = line.substr(0, sp);
        std::string rest = sp == std::string::npos ? "" : trim(line.substr(sp));
        std::string canon = key;
        if (auto it = alias_map().find(key); it != alias_map().end()) canon = it->second;
        const std::string where = source + ":" + std::to_string(lineno);
        if (!known_keywords().count(canon)) {
            s.warnings_.push_back(where + ": unknown keyword '" + key + "' ignored");
        }
        if (auto it = spelling_used.find(canon); it != spelling_used.end() && it->second != key)
            throw ConfigError(where + ": keyword '" + key + "' is an alternative spelling of '" +
                              it->second + "', which is already used; use one spelling only");
        spelling_used[canon] = key;
        auto& list = s.entries_[canon];
        if (!list.empty() && !repeatable().count(canon) && known_keywords().count(canon))
            throw ConfigError(where + ": duplicate keyword '" + key + "' (first given on line " +
                              std::to_string(list.front().line) + ")");
        if (list.empty()) s.order_.push_back(canon);
        list.push_back({rest, lineno});
    }
    return s;
}

Settings Settings::read_file(const std::string& path) {
    std::ifstream f(path);
    if (!f) throw ConfigError("cannot open settings file '" + path + "'");
    std::stringstream ss;
    ss << f.rdbuf();
    return parse(ss.str(), path);
}

bool Settings::has(const std::string& key) const { return entries_.count(key) > 0; }

const std::vector<SettingsEntry>& Settings::all(const std::string& key) const {
    static const std::vector<SettingsEntry> empty;
    auto it = entries_.find(key);
    return it == entries_.end() ? empty : it->second;
}

const SettingsEntry& Settings::get(const std::string& key) const {
    auto it = entries_.find(key);
    if (it == entries_.end() || it->second.empty())
        throw ConfigError(source_ + ": required keyword '" + key + "' is missing");
    return it->second.front();
}

std::vector<std::string> Settings::args(const std::string& key) const {
    return split_ws(get(key).args);
}

}  // namespace hdnnp
