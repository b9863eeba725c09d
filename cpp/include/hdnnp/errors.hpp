// Typed errors of libhdnnp. The core never prints or exits: every problem is
// reported by throwing one of these, and the bindings map them to Python
// exceptions (and the LAMMPS plugin to error->one/all).
#pragma once
#include <stdexcept>
#include <string>

namespace hdnnp {

/// Base class of every error thrown by libhdnnp.
struct Error : std::runtime_error {
    using std::runtime_error::runtime_error;
};

/// A settings file (input.nn) is malformed, inconsistent or incomplete.
struct ConfigError : Error {
    using Error::Error;
};

/// A model file (scaling.data, weights.*.data) is missing or malformed.
struct ModelFileError : Error {
    using Error::Error;
};

/// A structure handed to the core is invalid (NaN coordinates, overlapping
/// atoms, unknown element, malformed input.data, ...).
struct InputError : Error {
    using Error::Error;
};

/// Raised when extrapolation is configured to be fatal.
struct ExtrapolationError : Error {
    using Error::Error;
};

}  // namespace hdnnp
