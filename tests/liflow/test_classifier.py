"""Tests of the LiFlow prior selector: CHGNet features, MSD labels, MLP, checkpoints."""

from __future__ import annotations

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk
from pymatgen.io.ase import AseAtomsAdaptor

from explorer.errors import PriorError
from explorer.h5md import write_h5md
from explorer.liflow.classifier import (
    DEFAULT_THRESHOLDS_A2_PS,
    FAMILY,
    FEATURE_DIM,
    FEATURE_SOURCE,
    Example,
    PriorClassifier,
    PriorSelector,
    build_examples,
    load_chgnet,
    msd_rate_labels,
    species_features,
)
from explorer.testing import brownian_trajectory


@pytest.fixture(scope="module")
def chgnet():
    return load_chgnet()


def test_loading_chgnet_keeps_stdout_clean(monkeypatch, capsys):
    """CHGNet's banner goes to stderr: ``accelmd eval liflow --json`` owns stdout."""
    import explorer.liflow.classifier as classifier

    monkeypatch.setattr(classifier, "_CHGNET", None)
    assert load_chgnet() is not None
    out, err = capsys.readouterr()
    assert out == "" and "CHGNet" in err


@pytest.fixture(scope="module")
def licl() -> Atoms:
    atoms = bulk("LiCl", "rocksalt", a=5.13, cubic=True)
    atoms.rattle(0.05, seed=1)  # inequivalent Li sites, so the averaging is exercised
    return atoms


# --- features ---------------------------------------------------------------------------------


def test_features_shape_and_grouping(chgnet, licl):
    feats = species_features(licl, chgnet)
    assert set(feats) == {"li", "frame"}
    assert all(f.shape == (FEATURE_DIM,) for f in feats.values())
    out = chgnet.predict_structure(
        AseAtomsAdaptor.get_structure(licl), task="e", return_atom_feas=True
    )
    per_atom = np.asarray(out["atom_fea"])
    li = licl.numbers == 3
    np.testing.assert_allclose(feats["li"], per_atom[li].mean(0), atol=1e-6)
    np.testing.assert_allclose(feats["frame"], per_atom[~li].mean(0), atol=1e-6)
    assert not np.allclose(feats["li"], feats["frame"], atol=1e-3)


def test_features_invariant_under_rotation_and_permutation(chgnet, licl):
    ref = species_features(licl, chgnet)
    rotated = licl.copy()
    rotated.rotate(37.0, (1.0, 2.0, 0.5), rotate_cell=True)
    permuted = licl[np.random.default_rng(0).permutation(len(licl))]
    for other in (rotated, permuted):
        got = species_features(other, chgnet)
        for group in ref:
            np.testing.assert_allclose(got[group], ref[group], atol=1e-5)


def test_structure_without_li_has_no_li_entry(chgnet):
    feats = species_features(bulk("NaCl", "rocksalt", a=5.64, cubic=True), chgnet)
    assert set(feats) == {"frame"}


# --- labels -----------------------------------------------------------------------------------


@pytest.mark.parametrize("D, large", [(1.0, True), (0.01, False)])
def test_brownian_labels(D, large):
    # MSD / t = 6 D: 6 Å²/ps ≫ 1.0 (large), 0.06 Å²/ps ≪ 1.0 (small); the frame stays put.
    traj = brownian_trajectory(D, n_atoms=64, n_frames=200, frame_atoms=8, seed=3)
    assert msd_rate_labels(traj) == {"li": large, "frame": False}


def test_label_thresholds_scalar_and_per_group():
    traj = brownian_trajectory(0.05, n_atoms=64, n_frames=200, seed=4)  # MSD/t ≈ 0.3
    assert msd_rate_labels(traj) == {"li": False}
    assert msd_rate_labels(traj, 0.1) == {"li": True}
    assert msd_rate_labels(traj, {"li": 0.1}) == {"li": True}
    assert DEFAULT_THRESHOLDS_A2_PS["li"] > DEFAULT_THRESHOLDS_A2_PS["frame"]


# --- classifier -------------------------------------------------------------------------------


def _linear_problem(n: int, seed: int, dim: int = 8) -> list[Example]:
    rng = np.random.default_rng(seed)
    w = np.linspace(-1.0, 1.0, dim)
    feats = rng.normal(size=(n, dim))
    temps = rng.uniform(600.0, 1200.0, size=n)
    score = feats @ w + 1.5 * (temps - 900.0) / 300.0
    return [
        Example({"li": f, "frame": -f}, t, {"li": bool(s > 0), "frame": bool(s < 0)})
        for f, t, s in zip(feats, temps, score, strict=True)
    ]


def test_classifier_learns_linear_rule_deterministically():
    train, test = _linear_problem(200, seed=0), _linear_problem(100, seed=1)
    a, b = PriorClassifier("li", in_dim=8), PriorClassifier("li", in_dim=8)
    history_a = a.fit(train, epochs=300, lr=1e-2, seed=7)
    history_b = b.fit(train, epochs=300, lr=1e-2, seed=7)
    assert history_a == history_b
    assert history_a[-1] < history_a[0]
    assert a.evaluate(train) >= 0.95
    assert a.evaluate(test) >= 0.85
    assert isinstance(a.predict(test[0].features["li"], test[0].temperature_K), bool)


def test_selector_save_load_round_trip(tmp_path):
    train, test = _linear_problem(120, seed=2), _linear_problem(40, seed=3)
    selector = PriorSelector(in_dim=8)
    selector.fit(train, epochs=150, seed=0)
    accuracy = selector.evaluate(test)
    selector.save("clf", tmp_path, training_files=["synthetic"], accuracy=accuracy)
    loaded = PriorSelector.load("clf", tmp_path)
    assert loaded.card["family"] == FAMILY
    assert loaded.card["feature_source"] == FEATURE_SOURCE
    assert loaded.card["accuracy"] == accuracy
    assert loaded.thresholds_A2_ps == selector.thresholds_A2_ps
    feats = np.stack([e.features["li"] for e in test])
    temps = np.array([e.temperature_K for e in test])
    for group in ("li", "frame"):
        x = feats if group == "li" else -feats
        np.testing.assert_array_equal(
            loaded.classifiers[group].probability(x, temps),
            selector.classifiers[group].probability(x, temps),
        )


def test_errors(tmp_path):
    with pytest.raises(PriorError):
        PriorClassifier("oxygen")
    with pytest.raises(PriorError):
        PriorClassifier("li", 8).fit([Example({"frame": np.zeros(8)}, 900.0, {"frame": True})])
    with pytest.raises(PriorError):
        msd_rate_labels(brownian_trajectory(1.0, n_frames=1))


def test_build_examples_and_predict_from_h5md(chgnet, tmp_path):
    paths = []
    for i, D in enumerate((2.0, 0.005)):
        traj = brownian_trajectory(D, n_atoms=4, n_frames=50, cell=6.0, frame_atoms=4, seed=i)
        traj.metadata["temperature_K"] = 900.0 + 100 * i
        paths.append(write_h5md(traj, tmp_path / f"run{i}.h5"))
    examples = build_examples(paths, model=chgnet)
    # Five frames per run (no catalogue material in the metadata: no start structure),
    # each with its run's label and temperature.
    assert [e.source for e in examples[:5]] == [f"run0.h5#frame {k}" for k in (0, 12, 24, 37, 49)]
    assert [e.labels["li"] for e in examples] == [True] * 5 + [False] * 5
    assert [e.temperature_K for e in examples] == [900.0] * 5 + [1000.0] * 5
    assert examples[0].features["li"].shape == (FEATURE_DIM,)
    assert not np.allclose(examples[0].features["li"], examples[4].features["li"])
    selector = PriorSelector()
    selector.fit(examples, epochs=100, seed=0)
    assert selector.evaluate(examples)["li"] == 1.0
    atoms = brownian_trajectory(2.0, n_atoms=4, n_frames=2, cell=6.0, frame_atoms=4).to_atoms(0)
    assert set(selector.predict(atoms, 900.0, chgnet)) == {"li", "frame"}


def test_predict_reuses_the_features_of_a_structure_it_has_seen(monkeypatch, licl):
    import explorer.liflow.classifier as classifier

    calls = []

    def features(atoms, model=None):
        calls.append(atoms.positions.copy())
        return {"li": np.zeros(FEATURE_DIM), "frame": np.ones(FEATURE_DIM)}

    monkeypatch.setattr(classifier, "species_features", features)
    monkeypatch.setattr(classifier, "FEATURE_CACHE_SIZE", 2)
    selector = PriorSelector()
    first = selector.predict(licl, 600.0)
    assert selector.predict(licl.copy(), 1200.0).keys() == first.keys()  # same structure
    assert len(calls) == 1
    moved = licl.copy()
    moved.positions[0, 0] += 0.01  # another structure: new features
    selector.predict(moved, 600.0)
    assert len(calls) == 2
    strained = licl.copy()
    strained.set_cell(licl.cell * 1.01, scale_atoms=False)  # same positions, other cell
    selector.predict(strained, 600.0)
    assert len(calls) == 3
    selector.predict(licl, 600.0)  # pushed out: only the 2 most recent are kept
    assert len(calls) == 4
    selector.predict(strained, 600.0)
    assert len(calls) == 4
    selector.predict(licl, 600.0, model=object())  # an explicit model is always asked
    assert len(calls) == 5


def test_build_examples_add_the_catalogue_cell_a_run_started_from(monkeypatch, tmp_path):
    import explorer.liflow.classifier as classifier

    seen = []

    def features(atoms, model=None):
        seen.append(atoms.get_chemical_formula())
        return {"li": np.zeros(FEATURE_DIM), "frame": np.ones(FEATURE_DIM)}

    monkeypatch.setattr(classifier, "species_features", features)
    traj = brownian_trajectory(2.0, n_atoms=4, n_frames=3, cell=6.0, frame_atoms=4, seed=0)
    traj.metadata.update(temperature_K=800.0, material="LGPS", supercell=[1, 1, 2])
    path = write_h5md(traj, tmp_path / "run.h5")
    examples = build_examples([path], frame_fractions=(0.0, 1.0))
    assert [e.source for e in examples] == ["run.h5#frame 0", "run.h5#frame 2", "run.h5#start"]
    assert seen[-1] == "Ge4Li40P8S48"  # LGPS, 2 cells
    assert examples[-1].labels == examples[0].labels
    traj.metadata["material"] = "no-such-material"
    other = write_h5md(traj, tmp_path / "other.h5")
    assert [e.source for e in build_examples([other], frame_fractions=(0.0,))] == [
        "other.h5#frame 0"
    ]
    assert len(build_examples([path], frame_fractions=(0.0,), include_start=False)) == 1


@pytest.mark.slow
def test_bundled_selector_labels_each_runs_catalogue_start_cell_like_the_run(chgnet):
    """Users start from catalogue cells: the shipped classifier must give them the prior
    the reference run's MSD calls for (the first-frame-only classifier gave Li3InCl6 at
    800-1200 K the small Li prior, and its rollouts froze the Li)."""
    from explorer.h5md import read_h5md
    from explorer.liflow.simulate import LiFlowSimulator
    from explorer.materials import load_material
    from explorer.reference.dataset import REFERENCE_DIR, REFERENCE_RUNS

    selector = LiFlowSimulator.from_checkpoint("liflow_multi").selector
    wrong = []
    for run in REFERENCE_RUNS:
        traj = read_h5md(REFERENCE_DIR / run.filename)
        start = load_material(run.material).repeat(run.repeats)
        predicted = selector.predict(start, run.temperature_K, chgnet)
        if predicted != msd_rate_labels(traj):
            wrong.append((run.filename, predicted, msd_rate_labels(traj)))
    assert not wrong
