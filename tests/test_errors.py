"""Bad input gets a clear error naming the file, line or atom."""
import shutil

import numpy as np
import pytest
from ase import Atoms

import hdnnp
from hdnnp import _core
from synth import random_cluster, write_potential


@pytest.fixture
def pot_dir(tmp_path):
    return write_potential(tmp_path / "pot", types=[2, 3])


def test_carbon_chain_mismatched_layers(fixtures, tmp_path):
    """n2p2's shipped carbon-chain input.nn declares 15-15 networks, its weights hold 10-10."""
    src = fixtures / "n2p2_Carbon_chain_4G" / "potential"
    d = tmp_path / "cc"
    d.mkdir()
    for f in ("scaling.data", "weights.001.data", "weights.006.data"):
        shutil.copy(src / f, d / f)
    # Keep the 2G part only (this version loads 2G potentials).
    text = (src / "input.nn.n2p2-master-ORIGINAL-mismatched-nodes").read_text()
    text = "\n".join(l for l in text.splitlines() if not l.strip().startswith(("nnp_type", "nnp_generation")))
    (d / "input.nn").write_text(text)
    with pytest.raises(hdnnp.ModelFileError, match=r"weights\.001\.data: expected \d+ weights .* found \d+"):
        hdnnp.Potential(d, warn=False)


def test_4g_refused_with_reason(fixtures):
    with pytest.raises(hdnnp.ConfigError, match="nnp_type 4 is not a 2G potential: load it with hdnnp.load"):
        hdnnp.Potential(fixtures / "n2p2_Carbon_chain_4G" / "potential", warn=False)


def test_truncated_weight_file(pot_dir):
    w = pot_dir / "weights.008.data"
    lines = w.read_text().splitlines()
    w.write_text("\n".join(lines[:-7]) + "\n")
    with pytest.raises(hdnnp.ModelFileError, match=r"weights\.008\.data: expected (\d+) weights .* found"):
        hdnnp.Potential(pot_dir, warn=False)


def test_non_numeric_weight(pot_dir):
    w = pot_dir / "weights.001.data"
    lines = w.read_text().splitlines()
    lines[3] = "1.0x a"
    w.write_text("\n".join(lines) + "\n")
    with pytest.raises(hdnnp.ModelFileError, match=r"weights\.001\.data:4: expected a number"):
        hdnnp.Potential(pot_dir, warn=False)


def test_wrong_scaling_line_count(pot_dir):
    s = pot_dir / "scaling.data"
    s.write_text("\n".join(s.read_text().splitlines()[:-1]) + "\n")
    with pytest.raises(hdnnp.ModelFileError, match=r"scaling\.data: expected \d+ lines \(H \d+, O \d+ symmetry"):
        hdnnp.Potential(pot_dir, warn=False)


def test_missing_keyword(pot_dir):
    nn = pot_dir / "input.nn"
    nn.write_text("\n".join(l for l in nn.read_text().splitlines() if not l.startswith("global_nodes_short")))
    with pytest.raises(hdnnp.ConfigError, match=r"input\.nn: required keyword 'global_nodes_short' is missing"):
        hdnnp.Potential(pot_dir, warn=False)


def test_duplicate_keyword_and_alias(pot_dir):
    nn = pot_dir / "input.nn"
    base = nn.read_text()
    nn.write_text(base + "cutoff_type 2\n")
    with pytest.raises(hdnnp.ConfigError, match=r"input\.nn:\d+: duplicate keyword 'cutoff_type'"):
        hdnnp.Potential(pot_dir, warn=False)
    nn.write_text(base + "nnp_type 2\nnnp_generation 2\n")
    with pytest.raises(hdnnp.ConfigError, match="alternative spelling"):
        hdnnp.Potential(pot_dir, warn=False)


def test_unknown_keyword_warns_and_comments(pot_dir):
    nn = pot_dir / "input.nn"
    nn.write_text(nn.read_text() + "analyze_error   ! RuNNer keyword, RuNNer comment\nnnp_gen 2 # n2p2 comment\n")
    with pytest.warns(UserWarning, match="unknown keyword 'analyze_error'"):
        hdnnp.Potential(pot_dir)


def test_bad_symfunction_line(pot_dir):
    nn = pot_dir / "input.nn"
    nn.write_text(nn.read_text() + "symfunction_short H 2 Xe 0.1 0.0 4.0\n")
    with pytest.raises(hdnnp.ConfigError, match=r"input\.nn:\d+: symmetry function uses element 'Xe'"):
        hdnnp.Potential(pot_dir, warn=False)
    nn.write_text(nn.read_text().replace("symfunction_short H 2 Xe 0.1 0.0 4.0\n", "symfunction_short H 7 H 1 1 1\n"))
    with pytest.raises(hdnnp.ConfigError, match="unknown symmetry function type 7"):
        hdnnp.Potential(pot_dir, warn=False)


def test_unknown_element_in_structure(pot_dir):
    pot = hdnnp.Potential(pot_dir, warn=False)
    atoms = random_cluster(seed=1)
    atoms[3].symbol = "Cu"
    with pytest.raises(hdnnp.InputError, match="atom 3 is Cu, an element this potential does not describe"):
        pot.evaluate(atoms, native=True)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nonfinite_coordinates(pot_dir, bad):
    pot = hdnnp.Potential(pot_dir, warn=False)
    atoms = random_cluster(seed=1)
    atoms.positions[5, 1] = bad
    with pytest.raises(hdnnp.InputError, match="atom 5 .* non-finite position"):
        pot.evaluate(atoms, native=True)


def test_overlapping_atoms(pot_dir):
    pot = hdnnp.Potential(pot_dir, warn=False)
    atoms = random_cluster(seed=1)
    atoms.positions[7] = atoms.positions[2]
    with pytest.raises(hdnnp.InputError, match="atoms 2 and 7 overlap"):
        pot.evaluate(atoms, native=True)


def test_empty_structure(pot_dir):
    pot = hdnnp.Potential(pot_dir, warn=False)
    with pytest.raises(hdnnp.InputError, match="no atoms"):
        pot.evaluate(Atoms(), native=True)


@pytest.mark.parametrize("text,msg", [
    ("begin\natom 0 0 0 H 0 0 0 0 0\nenergy 1\ncharge 0\n", "no 'end'"),
    ("begin\natom 0 0 nan H 0 0 0 0 0\nend\n", ":2: atom coordinate is not finite"),
    ("begin\nlattice 1 0 0\nlattice 0 1 0\natom 0 0 0 H 0 0 0 0 0\nend\n", "2 lattice lines"),
    ("begin set=valid\nend\n", ":1: unknown tag 'set=valid'"),
    ("atom 0 0 0 H 0 0 0 0 0\n", ":1: 'atom' outside a begin/end block"),
    ("begin\natom 0 0 0 H 0 0 0\nend\n", ":2: 'atom' needs"),
])
def test_malformed_input_data(tmp_path, text, msg):
    p = tmp_path / "input.data"
    p.write_text(text)
    with pytest.raises(hdnnp.InputError, match=msg.replace("(", r"\(").replace(")", r"\)")):
        hdnnp.read_input_data(p)


def test_units_required_for_ase(pot_dir):
    pot = hdnnp.Potential(pot_dir, warn=False)
    with pytest.raises(ValueError, match="units of this potential are not known"):
        pot.evaluate(random_cluster())


def test_no_copy_on_wrong_dtype(pot_dir):
    model = _core.Model.load(str(pot_dir))
    pos = np.zeros((2, 3), dtype=np.float32)
    with pytest.raises(TypeError):
        model.compute(pos, np.zeros(2, np.int32), 2, np.zeros(3, np.int64), np.zeros(0, np.int32))
