#include "hdnnp/structure_io.hpp"

#include <cmath>
#include <cstdio>
#include <fstream>
#include <sstream>

#include "hdnnp/errors.hpp"
#include "hdnnp/settings.hpp"

namespace hdnnp {

std::vector<Structure> parse_input_data(const std::string& text, const std::string& source) {
    std::vector<Structure> out;
    std::istringstream is(text);
    std::string raw;
    int no = 0;
    bool inside = false;
    int n_lattice = 0;
    Structure cur;
    auto fail = [&](const std::string& msg) { throw InputError(source + ":" + std::to_string(no) + ": " + msg); };
    auto num = [&](const std::string& t) {
        try {
            return parse_double(t, source + ":" + std::to_string(no));
        } catch (const ConfigError& e) {
            throw InputError(e.what());
        }
    };
    while (std::getline(is, raw)) {
        ++no;
        auto tok = split_ws(raw);
        if (tok.empty()) continue;
        const std::string& key = tok[0];
        if (key == "begin") {
            if (inside) fail("'begin' inside a structure (missing 'end' for the structure at line " +
                             std::to_string(cur.line) + ")");
            cur = Structure();
            cur.line = no;
            n_lattice = 0;
            inside = true;
            if (tok.size() > 2) fail("unexpected words after 'begin'");
            if (tok.size() == 2) {
                if (tok[1] == "set=train") cur.set = "train";
                else if (tok[1] == "set=validation") cur.set = "validation";
                else if (tok[1] == "set=test") cur.set = "test";
                else fail("unknown tag '" + tok[1] + "' after 'begin' (expected set=train, set=validation or set=test)");
            }
            continue;
        }
        if (!inside) fail("'" + key + "' outside a begin/end block");
        if (key == "comment") {
            const auto pos = raw.find("comment");
            std::string c = raw.substr(pos + 7);
            const auto b = c.find_first_not_of(" \t");
            cur.comment = b == std::string::npos ? "" : c.substr(b);
            while (!cur.comment.empty() && (cur.comment.back() == '\r' || cur.comment.back() == '\n'))
                cur.comment.pop_back();
        } else if (key == "lattice") {
            if (tok.size() != 4) fail("'lattice' needs 3 numbers");
            if (n_lattice >= 3) fail("more than 3 lattice lines");
            if (!cur.symbols.empty()) fail("lattice lines must come before the atoms");
            for (int c = 0; c < 3; ++c) {
                const double v = num(tok[1 + c]);
                if (!std::isfinite(v)) fail("lattice vector is not finite");
                cur.lattice[3 * n_lattice + c] = v;
            }
            ++n_lattice;
        } else if (key == "atom") {
            if (tok.size() != 10 && tok.size() != 5 && tok.size() != 7)
                fail("'atom' needs x y z element [q n [fx fy fz]], found " + std::to_string(tok.size() - 1) + " fields");
            for (int c = 0; c < 3; ++c) {
                const double v = num(tok[1 + c]);
                if (!std::isfinite(v)) fail("atom coordinate is not finite (" + tok[1 + c] + ")");
                cur.positions.push_back(v);
            }
            cur.symbols.push_back(tok[4]);
            cur.charges.push_back(tok.size() >= 7 ? num(tok[5]) : 0.0);
            cur.extra.push_back(tok.size() >= 7 ? num(tok[6]) : 0.0);
            for (int c = 0; c < 3; ++c) cur.forces.push_back(tok.size() == 10 ? num(tok[7 + c]) : 0.0);
        } else if (key == "energy") {
            if (tok.size() != 2) fail("'energy' needs one number");
            cur.energy = num(tok[1]);
            cur.has_energy = true;
        } else if (key == "charge") {
            if (tok.size() != 2) fail("'charge' needs one number");
            cur.charge = num(tok[1]);
            cur.has_charge = true;
        } else if (key == "end") {
            if (n_lattice != 0 && n_lattice != 3)
                fail("structure starting at line " + std::to_string(cur.line) + " has " +
                     std::to_string(n_lattice) + " lattice lines (need 0 or 3)");
            cur.periodic = n_lattice == 3;
            out.push_back(std::move(cur));
            cur = Structure();
            inside = false;
        } else {
            fail("unknown keyword '" + key + "'");
        }
    }
    if (inside)
        throw InputError(source + ": structure starting at line " + std::to_string(cur.line) +
                         " has no 'end' (file truncated?)");
    return out;
}

std::vector<Structure> read_input_data(const std::string& path) {
    std::ifstream f(path);
    if (!f) throw InputError("cannot open '" + path + "'");
    std::stringstream ss;
    ss << f.rdbuf();
    return parse_input_data(ss.str(), path);
}

std::string format_input_data(const std::vector<Structure>& structures) {
    std::string s;
    char buf[512];
    for (const auto& st : structures) {
        s += st.set.empty() ? "begin\n" : "begin set=" + st.set + "\n";
        if (!st.comment.empty()) s += "comment " + st.comment + "\n";
        if (st.periodic)
            for (int r = 0; r < 3; ++r) {
                std::snprintf(buf, sizeof(buf), "lattice %24.16E %24.16E %24.16E\n", st.lattice[3 * r],
                              st.lattice[3 * r + 1], st.lattice[3 * r + 2]);
                s += buf;
            }
        for (size_t a = 0; a < st.n_atoms(); ++a) {
            std::snprintf(buf, sizeof(buf), "atom %24.16E %24.16E %24.16E %2s %24.16E %24.16E %24.16E %24.16E %24.16E\n",
                          st.positions[3 * a], st.positions[3 * a + 1], st.positions[3 * a + 2],
                          st.symbols[a].c_str(), a < st.charges.size() ? st.charges[a] : 0.0,
                          a < st.extra.size() ? st.extra[a] : 0.0,
                          3 * a + 2 < st.forces.size() ? st.forces[3 * a] : 0.0,
                          3 * a + 2 < st.forces.size() ? st.forces[3 * a + 1] : 0.0,
                          3 * a + 2 < st.forces.size() ? st.forces[3 * a + 2] : 0.0);
            s += buf;
        }
        std::snprintf(buf, sizeof(buf), "energy %24.16E\ncharge %24.16E\nend\n", st.energy, st.charge);
        s += buf;
    }
    return s;
}

void write_file_atomic(const std::string& path, const std::string& content) {
    const std::string tmp = path + ".tmp-hdnnp";
    {
        std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
        if (!f) throw InputError("cannot write '" + tmp + "'");
        f << content;
        f.flush();
        if (!f) {
            std::remove(tmp.c_str());
            throw InputError("writing '" + tmp + "' failed");
        }
    }
    if (std::rename(tmp.c_str(), path.c_str()) != 0) {
        std::remove(tmp.c_str());
        throw InputError("cannot move '" + tmp + "' to '" + path + "'");
    }
}

void write_input_data(const std::string& path, const std::vector<Structure>& structures) {
    write_file_atomic(path, format_input_data(structures));
}

}  // namespace hdnnp
