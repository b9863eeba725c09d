// Unit names of the `# hdnnp: length_unit=... energy_unit=...` declaration and their value
// in Angstrom and eV: the one unit table of the package (hdnnp.units reads it through the
// Python module; the LAMMPS plugin includes it). The numbers are ASE's (CODATA 2014).
#pragma once
#include <cctype>
#include <string>

namespace hdnnp {

namespace detail {
inline std::string lower(std::string u) {
    for (auto& c : u) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    const auto b = u.find_first_not_of(" \t"), e = u.find_last_not_of(" \t");
    return b == std::string::npos ? std::string() : u.substr(b, e - b + 1);
}

/// The names each table knows (for error messages).
inline const char* length_unit_names() { return "a, a0, angstrom, ang, au, bohr, nm"; }
inline const char* energy_unit_names() { return "au, ev, ha, hartree, kcal/mol, kj/mol, mev, ry, rydberg"; }
}  // namespace detail

/// Angstrom per `unit` (angstrom, bohr, nm and their aliases); 0 when unknown.
inline double angstrom_per_length_unit(const std::string& unit) {
    const std::string u = detail::lower(unit);
    if (u == "angstrom" || u == "a" || u == "ang" || u == "\xc3\xa5") return 1.0;   // (also "Å")
    if (u == "bohr" || u == "au" || u == "a0") return 0.5291772105638411;
    if (u == "nm") return 10.0;
    return 0.0;
}

/// eV per `unit` (ev, ha, ry, kcal/mol, kj/mol, mev and aliases); 0 when unknown.
inline double ev_per_energy_unit(const std::string& unit) {
    const std::string u = detail::lower(unit);
    if (u == "ev") return 1.0;
    if (u == "ha" || u == "hartree" || u == "au") return 27.211386024367243;
    if (u == "ry" || u == "rydberg") return 13.605693012183622;
    if (u == "kcal/mol") return 0.04336410390059322;
    if (u == "kj/mol") return 0.010364269574711572;
    if (u == "mev") return 1e-3;
    return 0.0;
}

/// e^2 / (4 pi eps0) in eV Angstrom (Hartree x Bohr in the units above).
constexpr double COULOMB_EV_ANGSTROM = 27.211386024367243 * 0.5291772105638411;

}  // namespace hdnnp
