"""Symmetry-function generation and pruning."""
import numpy as np
import pytest

import hdnnp
from hdnnp.training.sfgen import generate, input_nn, prune_input_nn, radial_parameters
from synth import random_cluster


def test_radial_grids():
    sh = radial_parameters(6.0, 4, "shift")
    assert [rs for _, rs in sh] == pytest.approx([0.0, 1.5, 3.0, 4.5])
    assert all(eta == pytest.approx(1 / (2 * 1.5 ** 2)) for eta, _ in sh)
    ce = radial_parameters(6.0, 3, "center", r_lower=1.0)
    assert [eta for eta, _ in ce] == pytest.approx([0.5, 1 / (2 * 3.5 ** 2), 1 / 72])
    with pytest.raises(ValueError):
        radial_parameters(6.0, 3, "center", r_lower=0.0)


@pytest.mark.parametrize("kinds,expected", [
    (("radial",), 2 * 2 * 5),                 # centre x neighbour x grid
    (("narrow",), 2 * 3 * 2 * 2 * 2),         # centre x pairs x angular x zeta x lambda
    (("wide",), 2 * 3 * 2 * 2 * 2),
    (("weighted",), 2 * (5 + 2 * 2 * 2)),
    (("polynomial",), 2 * (2 * 5 + 3 * 4)),
    (("ani",), 2 * 3 * 2 * 4),
])
def test_generated_sets_load_and_fire(tmp_path, kinds, expected):
    lines = generate(["H", "O"], 4.2, kinds, radial_points=5, angular_points=2, zetas=(1, 4))
    assert len(lines) == expected
    (tmp_path / "input.nn").write_text(input_nn(["H", "O"], lines, hidden=(4,)))
    pot = hdnnp.Potential(tmp_path, warn=False, weights=False)
    G = pot.descriptors(random_cluster(seed=1))
    assert sum(len(g) for g in G[:1]) > 0
    assert np.isfinite(np.concatenate(G)).all() and np.abs(np.concatenate(G)).max() > 0


def test_prune_drops_functions_that_never_fire(tmp_path):
    lines = generate(["H", "O"], 4.2, ("radial",), radial_points=4)
    lines.append("H 2 H 0.5 40.0 4.2")  # centred far outside the cutoff: identically zero
    (tmp_path / "input.nn").write_text(input_nn(["H", "O"], lines, hidden=(4,)))
    structs = [random_cluster(seed=s) for s in range(3)]
    dropped = prune_input_nn(tmp_path, structs)
    assert dropped == ["H 2 H 0.5 40.0 4.2"]
    assert "40.0" not in (tmp_path / "input.nn").read_text()
    assert len(hdnnp.Potential(tmp_path, warn=False, weights=False).model.symmetry_functions(0)) == 8


def test_sfgen_cli(tmp_path):
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-m", "hdnnp.cli", "sfgen", "--elements", "H", "O", "--cutoff", "4.2",
                        "--kinds", "radial", "wide", "--radial-points", "5"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    lines = [l for l in r.stdout.splitlines() if l.startswith("symfunction_short")]
    assert len(lines) == 2 * 2 * 5 + 2 * 3 * 3 * 2 * 2
    (tmp_path / "input.nn").write_text(input_nn(["H", "O"], [l.split(None, 1)[1] for l in lines], hidden=(3,)))
    assert hdnnp.Potential(tmp_path, warn=False, weights=False).model.elements == ["H", "O"]
