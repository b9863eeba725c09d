// Periodic table lookup: element symbol <-> atomic number.
#pragma once
#include <string>

namespace hdnnp {

/// Atomic number of an element symbol ("H" -> 1); 0 if the symbol is unknown.
int atomic_number(const std::string& symbol);
/// Element symbol of an atomic number (1 -> "H"); throws for Z outside 1..118.
std::string element_symbol(int z);

}  // namespace hdnnp
