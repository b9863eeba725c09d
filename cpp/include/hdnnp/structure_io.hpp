// n2p2 / RuNNer `input.data` files (many structures, periodic or not).
#pragma once
#include <string>
#include <vector>

namespace hdnnp {

struct Structure {
    std::string comment;
    std::string set;                 ///< "", "train" or "test" (begin set=...)
    bool periodic = false;
    double lattice[9] = {0};         ///< lattice vectors as rows
    std::vector<double> positions;   ///< N x 3
    std::vector<std::string> symbols;
    std::vector<double> charges;     ///< N (column q)
    std::vector<double> extra;       ///< N (unused column n)
    std::vector<double> forces;      ///< N x 3
    double energy = 0.0;
    double charge = 0.0;
    bool has_energy = false, has_charge = false;
    int line = 0;                    ///< line of 'begin'
    size_t n_atoms() const { return symbols.size(); }
};

/// Read all structures; errors name the file and line.
std::vector<Structure> read_input_data(const std::string& path);
std::vector<Structure> parse_input_data(const std::string& text, const std::string& source);
/// Text in n2p2's layout (%24.16E columns, like n2p2's output.data).
std::string format_input_data(const std::vector<Structure>& structures);
/// Write atomically: a temporary file in the same folder, renamed into place.
void write_input_data(const std::string& path, const std::vector<Structure>& structures);
void write_file_atomic(const std::string& path, const std::string& content);

}  // namespace hdnnp
