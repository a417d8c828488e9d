"""Pythia 8 + FastJet generation: physics of the selected jets, determinism, CLI output."""
import dataclasses
import json

import numpy as np
import pytest

pytest.importorskip("pythia8mc")
pytest.importorskip("fastjet")

from hepjax.data import formats, generation  # noqa: E402


@pytest.fixture(scope="session")
def tiny():
    """24 top and 24 QCD jets (one worker), generated once per session."""
    return generation.generate("top-tagging", 48, seed=7, events_per_chunk=50)


def _mass(p4):
    s = p4.astype(np.float64).sum(1)
    return np.sqrt(np.maximum(s[:, 0] ** 2 - (s[:, 1:] ** 2).sum(1), 0))


def _gaussian_peak(masses, bins=np.arange(0, 400, 15.0)):
    """Mean of a Gaussian fitted (by moments) within +-35 GeV of the histogram maximum."""
    hist, edges = np.histogram(masses, bins)
    mode = 0.5 * (edges[hist.argmax()] + edges[hist.argmax() + 1])
    near = masses[np.abs(masses - mode) < 35]
    return near.mean(), near.std()


def test_selection_and_layout(tiny):
    n = len(tiny["label"])
    assert n == 48 and tiny["label"].sum() == 24
    assert tiny["p4"].shape == (48, 200, 4) and tiny["p4"].dtype == np.float32
    jet = tiny["jet_p4"].astype(np.float64)
    pt = np.hypot(jet[:, 1], jet[:, 2])
    assert np.all((pt > 550) & (pt < 650))
    assert np.all(np.abs(np.arcsinh(jet[:, 3] / pt)) < 2.0)
    # constituents: sorted by pT, padded with zeros, summing to the jet when all are kept
    cpt = np.hypot(tiny["p4"][..., 1], tiny["p4"][..., 2])
    assert np.all(np.diff(cpt, axis=1) <= 1e-4)
    mask = np.arange(200)[None] < tiny["n_constituents"][:, None]
    assert np.all(tiny["p4"][~mask] == 0) and np.all(tiny["p4"][mask][:, 0] > 0)
    np.testing.assert_allclose(tiny["p4"].astype(np.float64).sum(1), jet, rtol=1e-4, atol=0.05)
    assert set(np.unique(tiny["ttv"])) <= {0, 1, 2}


def test_top_truth_inside_jet_and_qcd_has_none(tiny):
    sig = tiny["label"] == 1
    assert np.all(tiny["truth"][~sig] == 0)
    t, j = tiny["truth"][sig].astype(np.float64), tiny["jet_p4"][sig].astype(np.float64)
    t_mass = np.sqrt(t[:, 0] ** 2 - (t[:, 1:] ** 2).sum(1))
    np.testing.assert_allclose(np.median(t_mass), 172.5, atol=3.0)   # Pythia's top mass
    deta = np.arcsinh(t[:, 3] / np.hypot(t[:, 1], t[:, 2])) - np.arcsinh(j[:, 3] / np.hypot(j[:, 1], j[:, 2]))
    dphi = np.mod(np.arctan2(t[:, 2], t[:, 1]) - np.arctan2(j[:, 2], j[:, 1]) + np.pi, 2 * np.pi) - np.pi
    assert np.all(np.hypot(deta, dphi) < 0.8)


def test_top_mass_peak_and_qcd_low(tiny):
    sig = tiny["label"] == 1
    top_mass, qcd_mass = _mass(tiny["p4"][sig]), _mass(tiny["p4"][~sig])
    mean, _ = _gaussian_peak(top_mass)
    assert 150 < mean < 200, mean
    assert np.median(qcd_mass) < 120
    assert np.mean((qcd_mass > 150) & (qcd_mass < 200)) < np.mean((top_mass > 150) & (top_mass < 200)) - 0.3


def test_top_tagging_has_no_mpi_and_quark_gluon_has_it(monkeypatch):
    assert "PartonLevel:MPI = off" in generation.pythia_settings("top-tagging", 0)
    assert "PartonLevel:MPI = off" in generation.pythia_settings("top-tagging", 1)
    assert "PartonLevel:MPI = on" in generation.pythia_settings("quark-gluon", 0)
    on = generation._task("top-tagging", mpi=True)
    assert "PartonLevel:MPI = on" in generation.pythia_settings(on, 1)
    # the Pythia that makes the events has it off (and on when asked), for every process
    seen = []
    real = generation._pythia

    def spy(settings, seed):
        pythia = real(settings, seed)
        seen.append(pythia.settings.flag("PartonLevel:MPI"))
        return pythia

    monkeypatch.setattr(generation, "_pythia", spy)
    generation.generate("top-tagging", 2, seed=3, events_per_chunk=5, detector="none")
    assert seen and not any(seen)
    seen.clear()
    generation.simulate_chunk("top-tagging", 1, 3, 0, events_per_chunk=2, mpi=True)
    assert seen == [True]


def test_leading_jet_only():
    """At most one jet per event, and it is the event's hardest: with the pT window opened to
    everything above 100 GeV every event's hardest jet is taken and none other."""
    assert generation.TASKS["top-tagging"].cuts.jets_per_event == 1
    for k in (0, 1):
        chunk = generation.simulate_chunk("top-tagging", k, 21, 0, events_per_chunk=40)
        assert len(chunk["event"]) > 0
        assert len(np.unique(chunk["event"])) == len(chunk["event"])
    wide = dataclasses.replace(
        generation.TASKS["top-tagging"],
        cuts=dataclasses.replace(generation.TASKS["top-tagging"].cuts, pt_min=100.0,
                                 pt_max=1e4, eta_max=10.0))
    one = generation.simulate_chunk(wide, 1, 21, 0, events_per_chunk=30)
    two = generation.simulate_chunk(dataclasses.replace(
        wide, cuts=dataclasses.replace(wide.cuts, jets_per_event=2)), 1, 21, 0,
        events_per_chunk=30)
    assert np.array_equal(np.unique(one["event"]), np.unique(two["event"]))
    assert len(two["event"]) > len(one["event"])
    for ev, jet in zip(one["event"], one["jet_p4"]):
        others = two["jet_p4"][two["event"] == ev]
        assert np.hypot(jet[1], jet[2]) == np.hypot(others[:, 1], others[:, 2]).max()


def test_same_seed_identical_different_seed_differs():
    a = generation.simulate_chunk("top-tagging", 1, 11, 0, events_per_chunk=25)
    b = generation.simulate_chunk("top-tagging", 1, 11, 0, events_per_chunk=25)
    c = generation.simulate_chunk("top-tagging", 1, 12, 0, events_per_chunk=25)
    assert len(a["p4"]) > 0
    for key in a:
        assert a[key].tobytes() == b[key].tobytes(), key
    assert a["p4"].shape != c["p4"].shape or a["p4"].tobytes() != c["p4"].tobytes()
    assert generation.chunk_seed(11, 1, 0) != generation.chunk_seed(11, 1, 1)
    assert 1 <= generation.chunk_seed(2**40, 7, 3) <= 900_000_000


def test_output_independent_of_worker_count():
    one = generation.generate("top-tagging", 6, seed=5, events_per_chunk=20, workers=1)
    two = generation.generate("top-tagging", 6, seed=5, events_per_chunk=20, workers=2)
    for key in one:
        assert one[key].tobytes() == two[key].tobytes(), key


def test_killed_generation_resumes_from_its_chunks(tmp_path, monkeypatch):
    fresh = generation.generate("top-tagging", 10, seed=9, events_per_chunk=20)
    chunks = tmp_path / "chunks"
    first = generation.generate("top-tagging", 10, seed=9, events_per_chunk=20, chunk_dir=chunks)
    saved = sorted(chunks.glob("process*_chunk*.npz"))
    assert len(saved) >= 2 and not list(chunks.glob("*partial*"))
    # a rerun after a kill: the finished chunks are read back, only the missing ones simulated
    saved[-1].unlink()
    simulated = []
    real = generation.simulate_chunk
    monkeypatch.setattr(generation, "simulate_chunk",
                        lambda *a, **k: simulated.append(a[1:4]) or real(*a, **k))
    resumed = generation.generate("top-tagging", 10, seed=9, events_per_chunk=20, chunk_dir=chunks)
    assert len(simulated) == 1
    for key in fresh:
        assert fresh[key].tobytes() == first[key].tobytes() == resumed[key].tobytes(), key


def test_cli_generate_reference_file_reads_back(tmp_path, capsys):
    pd = pytest.importorskip("pandas")
    from hepjax import cli

    out = tmp_path / "jets.h5"
    assert cli.main(["generate", "top-tagging", "--n-jets", "4", "--seed", "3", "--out", str(out),
                     "--events-per-chunk", "20", "--detector", "none"]) == 0
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert line["n_jets"] == 4 and line["format"] == "reference"
    frame = pd.read_hdf(out, "table")
    assert list(frame.columns) == formats.reference_columns()
    assert frame["E_0"].dtype == np.float32 and frame["ttv"].dtype == np.int64
    assert frame["is_signal_new"].dtype == np.int64 and frame["is_signal_new"].sum() == 2
    jets = formats.read_top_tagging(out)
    np.testing.assert_array_equal(jets["p4"].reshape(4, -1), frame.iloc[:, :800].to_numpy())
    np.testing.assert_array_equal(jets["label"], frame["is_signal_new"].to_numpy())
