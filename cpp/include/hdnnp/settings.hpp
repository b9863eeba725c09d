// Reader for n2p2/RuNNer settings files (input.nn).
//
// Rules (n2p2 Settings.cpp, checked against the fixtures):
//  * one keyword per line followed by its arguments; '#' and '!' start comments;
//  * alternative spellings map to one canonical keyword (nnp_type = nnp_generation
//    = nnp_type_gen = nnp_gen, symfunction = symfunction_short, ...); using two
//    spellings of one keyword is an error;
//  * duplicates are errors except for the keywords that may repeat
//    (symfunction_short, atom_energy, element_*, fixed_gausswidth, initial_hardness);
//  * unknown keywords are kept and reported as warnings (RuNNer files work).
#pragma once
#include <map>
#include <string>
#include <vector>

namespace hdnnp {

struct SettingsEntry {
    std::string args;     ///< everything after the keyword, comments removed
    int line = 0;         ///< 1-based line number in the file
};

class Settings {
public:
    /// Parse text; `source` names the file in error messages.
    static Settings parse(const std::string& text, const std::string& source);
    static Settings read_file(const std::string& path);

    bool has(const std::string& key) const;
    /// All occurrences of a (canonical) keyword, in file order.
    const std::vector<SettingsEntry>& all(const std::string& key) const;
    /// The single occurrence of a keyword; throws ConfigError naming the file if absent.
    const SettingsEntry& get(const std::string& key) const;
    /// Whitespace-split arguments of the single occurrence (throws if absent).
    std::vector<std::string> args(const std::string& key) const;
    const std::string& source() const { return source_; }
    /// Unknown keywords and other non-fatal remarks, for the caller to show.
    const std::vector<std::string>& warnings() const { return warnings_; }
    /// Canonical keywords present, in first-appearance order.
    const std::vector<std::string>& keys() const { return order_; }
    /// Values declared in comment lines '# hdnnp: key=value ...' (e.g. length_unit,
    /// energy_unit), with their lines; null when not declared.
    const SettingsEntry* declared(const std::string& key) const {
        auto it = declarations_.find(key);
        return it == declarations_.end() ? nullptr : &it->second;
    }

private:
    std::string source_;
    std::map<std::string, std::vector<SettingsEntry>> entries_;
    std::vector<std::string> order_;
    std::vector<std::string> warnings_;
    std::map<std::string, SettingsEntry> declarations_;
};

/// Split on whitespace.
std::vector<std::string> split_ws(const std::string& s);
/// Strict number parsing: the whole token must be a number (n2p2 accepts
/// Fortran-style 'D' exponents in some files, so 1.0D-3 is accepted too).
double parse_double(const std::string& token, const std::string& where);
long parse_int(const std::string& token, const std::string& where);

}  // namespace hdnnp
