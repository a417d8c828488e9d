"""The JetClass-style generator (hepjax.data.jetclass_generation): a few jets of two classes
written in the JetClass ROOT layout and read back by formats.read_jetclass unchanged."""
import numpy as np
import pytest

pytest.importorskip("pythia8mc", reason="needs Pythia 8 (pip install 'hepjax[gen]')")
pytest.importorskip("fastjet", reason="needs FastJet (pip install 'hepjax[gen]')")
uproot = pytest.importorskip("uproot", reason="needs uproot (pip install 'hepjax[io]')")

from hepjax.data import formats  # noqa: E402
from hepjax.data import jetclass_generation as jg  # noqa: E402

CLASSES = ("QCD", "Hbb")
N_PER_CLASS = 3
SEED = 5
EPC = 15


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    path = tmp_path_factory.mktemp("jetclass") / "gen.root"
    jg.generate_jetclass(N_PER_CLASS, SEED, path, classes=CLASSES, events_per_chunk=EPC,
                         resume=False)
    with uproot.open(path) as f:
        branches = f["tree"].arrays(library="np")
    return path, branches


def _wrap(a):
    return (a + np.pi) % (2 * np.pi) - np.pi


def test_read_jetclass_reads_it_and_labels_are_one_hot(sample):
    path, b = sample
    jets = formats.read_jetclass(path, max_particles=128)
    assert jets["label_names"] == tuple(sorted(jg.LABEL_BRANCHES))
    n = N_PER_CLASS * len(CLASSES)
    assert len(jets["label"]) == n
    onehot = np.stack([b[name].astype(int) for name in jg.LABEL_BRANCHES], -1)
    np.testing.assert_array_equal(onehot.sum(1), 1)
    names = [jg.LABEL_BRANCHES[k] for k in onehot.argmax(1)]
    # the reader's label indexes its sorted label_names: the same class as the file's one-hot
    assert [jets["label_names"][k] for k in jets["label"]] == names
    counts = {c: names.count(f"label_{c}") for c in jg.CLASSES}
    assert counts == {c: (N_PER_CLASS if c in CLASSES else 0) for c in jg.CLASSES}
    # constituents: the reader's p4 are the part_* branches, in the stored order
    for i in range(n):
        k = len(b["part_px"][i])
        assert jets["n_constituents"][i] == min(k, 128)
        np.testing.assert_array_equal(jets["p4"][i, :k, 1], b["part_px"][i][:128])
        np.testing.assert_array_equal(jets["p4"][i, :k, 0], b["part_energy"][i][:128])
        np.testing.assert_array_equal(jets["charge"][i, :k], b["part_charge"][i][:128])


def test_truth_containment_and_resonance_content(sample):
    _, b = sample
    expected = {"label_Hbb": (25, [5, 5])}
    for i in range(len(b["jet_pt"])):
        name = next(n for n in jg.LABEL_BRANCHES if b[n][i])
        pids = b["aux_genpart_pid"][i]
        if name == "label_QCD":
            assert len(pids) == 0
            continue
        resonance, products = expected[name]
        assert abs(pids[0]) == resonance
        assert sorted(np.abs(pids[1:]).tolist()) == products and pids[1] == -pids[2]
        dr = np.hypot(b["aux_genpart_eta"][i][1:] - b["jet_eta"][i],
                      _wrap(b["aux_genpart_phi"][i][1:] - b["jet_phi"][i]))
        assert np.all(dr < 0.8), (name, dr)
        # the resonance mass (the generated line shape) is near its pole
        assert abs(b["aux_genpart_mass"][i][0] - {25: 125.0}[resonance]) < 15


def test_kinematic_window_and_jet_columns_agree_with_constituents(sample):
    _, b = sample
    pt, eta = b["jet_pt"], b["jet_eta"]
    assert np.all((pt > 500) & (pt < 1000)) and np.all(np.abs(eta) < 2)
    for i in range(len(pt)):
        px, py, pz, e = (b[f"part_{c}"][i].astype(np.float64)
                         for c in ("px", "py", "pz", "energy"))
        assert b["jet_nparticles"][i] == len(px)
        np.testing.assert_allclose(np.hypot(px.sum(), py.sum()), pt[i], rtol=1e-4)
        np.testing.assert_allclose(e.sum(), b["jet_energy"][i], rtol=1e-4)
        p_pt = np.hypot(px, py)
        assert np.all(np.diff(p_pt) <= 1e-3)   # sorted by decreasing pT
        np.testing.assert_allclose(b["part_deta"][i], np.arcsinh(pz / p_pt) - eta[i], atol=1e-4)
        np.testing.assert_allclose(b["part_dphi"][i],
                                   _wrap(np.arctan2(py, px) - b["jet_phi"][i]), atol=1e-4)
        assert np.all(np.hypot(b["part_deta"][i], b["part_dphi"][i]) < 0.8 + 1e-3)
        # soft drop never adds mass
        mass = np.sqrt(max(e.sum() ** 2 - px.sum() ** 2 - py.sum() ** 2 - pz.sum() ** 2, 0))
        assert 0 <= b["jet_sdmass"][i] <= mass * (1 + 1e-4) + 1e-3
        # tau_1 in closed form: one axis = the jet (E-scheme sum), distances in (y, phi)
        y_jet = 0.5 * np.log((e.sum() + pz.sum()) / (e.sum() - pz.sum()))
        y = 0.5 * np.log((e + pz) / (e - pz))
        dr = np.hypot(y - y_jet, _wrap(np.arctan2(py, px) - np.arctan2(py.sum(), px.sum())))
        np.testing.assert_allclose(b["jet_tau1"][i], (p_pt * dr).sum() / (0.8 * p_pt.sum()),
                                   rtol=1e-3)
        assert all(b[f"jet_tau{n}"][i] >= 0 for n in range(2, 5))
    # particle ID: exactly one flag per particle, charged <=> charged hadron / e / mu; IPs
    flags = np.stack([np.concatenate(b[f"part_is{f}"]) for f in
                      ("ChargedHadron", "NeutralHadron", "Photon", "Electron", "Muon")], -1)
    np.testing.assert_array_equal(flags.sum(1), 1)
    charged = np.concatenate(b["part_charge"]) != 0
    np.testing.assert_array_equal(charged, flags[:, [0, 3, 4]].any(1))
    d0err, dzval = np.concatenate(b["part_d0err"]), np.concatenate(b["part_dzval"])
    assert np.all(d0err[charged] > 0) and np.all(d0err[~charged] == 0)
    assert np.all(dzval[~charged] == 0) and np.any(dzval[charged] != 0)
    # prompt-track resolution: median |d0| of the tracks is of order of the smearing (mm)
    assert np.median(np.abs(np.concatenate(b["part_d0val"])[charged])) < 0.1


def test_same_seed_is_bit_identical_and_a_bad_class_is_refused(sample):
    _, b = sample
    # the file's QCD jets are the first jets of QCD chunk 0: regenerate that chunk
    chunk = jg.simulate_chunk("QCD", SEED, 0, EPC)
    rows = np.flatnonzero(b["label_QCD"])
    assert len(chunk["jet_pt"]) >= len(rows) == N_PER_CLASS
    offsets = np.concatenate([[0], np.cumsum(chunk["part__counts"])])
    for row in rows:
        j = int(np.flatnonzero(chunk["jet_pt"] == b["jet_pt"][row])[0])
        for key in ("jet_eta", "jet_phi", "jet_sdmass", "jet_tau2", "jet_nparticles"):
            assert chunk[key][j] == b[key][row], key
        for key in ("part_px", "part_energy", "part_d0val", "part_dzerr", "part_isPhoton"):
            np.testing.assert_array_equal(chunk[key][offsets[j]:offsets[j + 1]], b[key][row],
                                          err_msg=key)
    with pytest.raises(ValueError, match="'Hxx'"):
        jg.generate(1, 0, classes=("Hxx",))


def test_load_splits_gives_parts_17_inputs(sample):
    import ml_collections

    path, b = sample
    cfg = ml_collections.ConfigDict({"name": "jetclass", "path": str(path), "max_particles": 64,
                                     "ttv_fractions": (0.5, 0.25, 0.25), "seed": 3})
    out = jg.load_splits(cfg)
    names = out["feature_names"]
    assert len(names) == 17 and names[-4:] == ("tanh_d0val", "d0err", "tanh_dzval", "dzerr")
    n = sum(len(out[s]["label"]) for s in ("train", "val", "test"))
    assert n == N_PER_CLASS * len(CLASSES)
    for split in ("train", "val", "test"):
        x, mask = out[split]["features"], out[split]["mask"]
        assert x.shape[1:] == (64, 17) and x.dtype == np.float32
        assert np.all(x[~mask] == 0)
        charged = x[..., names.index("charge")] != 0
        # impact parameters only on tracks: d0err > 0 exactly for the charged particles
        np.testing.assert_array_equal(x[..., names.index("d0err")] > 0, charged & mask)
        flags = x[..., names.index("is_charged_hadron"):names.index("is_muon") + 1]
        np.testing.assert_array_equal(flags.sum(-1), mask.astype(np.float32))
    plain = jg.load_splits(ml_collections.ConfigDict(
        {"name": "jetclass", "path": str(path), "particle_id": False,
         "impact_parameters": False, "ttv_fractions": (0.5, 0.25, 0.25)}), splits=("test",))
    assert len(plain["feature_names"]) == 7
    with pytest.raises(ValueError, match="config.data.bogus"):
        jg.load_splits(ml_collections.ConfigDict({"name": "jetclass", "path": str(path),
                                                  "bogus": 1}))
