"""input.nn read as keywords (Python side): every line's keyword and arguments, the units a
potential declares, and its generation. (The core parses input.nn itself for what it computes.)"""
from __future__ import annotations

import os
import re
from typing import Dict, List, Tuple


def read_keyword_lines(path: str) -> Dict[str, List[Tuple[int, List[str]]]]:
    """keyword -> every (line, arguments) of an input.nn (comments after # or ! removed)."""
    out: Dict[str, List[Tuple[int, List[str]]]] = {}
    with open(path) as fh:
        for no, line in enumerate(fh, 1):
            for c in "#!":
                line = line.split(c, 1)[0]
            tok = line.split()
            if tok:
                out.setdefault(tok[0], []).append((no, tok[1:]))
    return out


def read_keywords(path: str) -> Dict[str, Tuple[int, List[str]]]:
    """keyword -> (line, arguments) of its first occurrence."""
    return {k: v[0] for k, v in read_keyword_lines(path).items()}


_UNIT_DECL = re.compile(r"^\s*#\s*hdnnp:\s*(.*)$")


def declared_units(directory) -> tuple:
    """Units declared in input.nn by a comment line ``# hdnnp: length_unit=Bohr energy_unit=Ha``."""
    path = os.path.join(directory, "input.nn")
    found = {}
    try:
        with open(path) as fh:
            for line in fh:
                m = _UNIT_DECL.match(line)
                if m:
                    for kv in m.group(1).split():
                        if "=" in kv:
                            k, v = kv.split("=", 1)
                            found[k.strip()] = v.strip()
    except OSError:
        pass
    return found.get("length_unit"), found.get("energy_unit")


def generation(directory):
    """The HDNNP generation input.nn declares (nnp_generation / nnp_type; 2 when absent): 1-4,
    or "cent" for the CENT mode."""
    path = os.path.join(os.fspath(directory), "input.nn")
    if not os.path.exists(path):
        return 2  # (Potential names the missing file)
    kw = read_keywords(path)
    for key in ("nnp_generation", "nnp_type"):
        if key in kw and kw[key][1]:
            value = kw[key][1][0]
            if value.lower() == "cent":
                return "cent"
            return int(value[0]) if value[:1].isdigit() else 2
    return 2
