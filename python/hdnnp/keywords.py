"""input.nn as the core reads it (one reader, `hdnnp/settings.hpp`): every keyword (canonical
spelling: nnp_generation is nnp_type, symfunction is symfunction_short) with its lines and
arguments, the units a potential declares, and its generation."""
from __future__ import annotations

import os
from typing import Dict, List, Tuple

from . import _core


def read_settings(path: str):
    """(keyword -> [(line, arguments)], declared {'length_unit': ..., 'energy_unit': ...},
    the reader's warnings). Errors (duplicate keywords, two spellings of one) name the line."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: no such file")
    kw, declared, warnings = _core.read_settings(path)
    return {k: [(no, list(args)) for no, args in v] for k, v in kw.items()}, dict(declared), list(warnings)


def read_keyword_lines(path: str) -> Dict[str, List[Tuple[int, List[str]]]]:
    """keyword -> every (line, arguments) of an input.nn."""
    return read_settings(path)[0]


def read_keywords(path: str) -> Dict[str, Tuple[int, List[str]]]:
    """keyword -> (line, arguments) of its first occurrence."""
    return {k: v[0] for k, v in read_keyword_lines(path).items()}


def declared_units(directory) -> tuple:
    """Units declared in input.nn by a comment line ``# hdnnp: length_unit=Bohr energy_unit=Ha``
    ((None, None) without the file or the line)."""
    path = os.path.join(os.fspath(directory), "input.nn")
    if not os.path.exists(path):
        return None, None
    decl = read_settings(path)[1]
    return decl.get("length_unit"), decl.get("energy_unit")


def generation(directory):
    """The HDNNP generation input.nn declares (nnp_generation / nnp_type; 2 when absent): 1-4,
    or "cent" for the CENT mode."""
    path = os.path.join(os.fspath(directory), "input.nn")
    if not os.path.exists(path):
        return 2  # (Potential names the missing file)
    kw = read_keywords(path)
    if "nnp_type" in kw and kw["nnp_type"][1]:
        value = kw["nnp_type"][1][0]
        if value.lower() == "cent":
            return "cent"
        return int(value[0]) if value[:1].isdigit() else 2
    return 2
