"""Generated jets in the CMS DeepJet schema (hepjax.data.deepjet_generation): impact-parameter
geometry against a brute-force closest approach, hadron flavour codes, one generated chunk read
back by the DeepJet reader with the physics a b-tagger relies on, determinism."""
import argparse

import numpy as np
import pytest

pytest.importorskip("pythia8mc")
pytest.importorskip("fastjet")
pytest.importorskip("uproot")

from hepjax.data import deepjet_generation as dg  # noqa: E402
from hepjax.data import deepjet_ntuple as dn  # noqa: E402


def test_impact_parameters_match_brute_force_closest_approach():
    rng = np.random.default_rng(0)
    v = rng.normal(0, 0.1, (50, 3))
    p = rng.normal(0, 5, (50, 3))
    pv_z = rng.normal(0, 3, 50)
    dxy, dz = dg.impact_parameters(v[:, 0], v[:, 1], v[:, 2], p[:, 0], p[:, 1], p[:, 2], pv_z)
    for i in range(50):
        # transverse point of closest approach of the line v + t p to the beam line (0, 0)
        reach = 2 * np.hypot(v[i, 0], v[i, 1]) / np.hypot(p[i, 0], p[i, 1])
        t = np.linspace(-1, 1, 400001) * reach
        x, y = v[i, 0] + t * p[i, 0], v[i, 1] + t * p[i, 1]
        k = np.argmin(x ** 2 + y ** 2)
        assert abs(abs(dxy[i]) - np.hypot(x[k], y[k])) < 1e-6
        # CMS sign: dxy = (-x py + y px) / pT at the closest approach
        assert np.sign(dxy[i]) == np.sign(-x[k] * p[i, 1] + y[k] * p[i, 0])
        assert abs(dz[i] - (v[i, 2] + t[k] * p[i, 2] - pv_z[i])) < 1e-4
    # a track from the vertex itself has zero IPs; displaced along its own direction too
    d0, z0 = dg.impact_parameters(0.3 * 1.0, 0.3 * 2.0, 0.3 * 0.5 + 1.0, 1.0, 2.0, 0.5, 1.0)
    assert abs(d0) < 1e-12 and abs(z0) < 1e-12


def test_ip_resolution_and_hadron_flavour():
    pt = np.array([0.5, 1.0, 10.0, 1000.0])
    s = dg.ip_resolution(pt, 15e-4, 90e-4)
    np.testing.assert_allclose(s, np.sqrt(15e-4 ** 2 + (90e-4 / pt) ** 2))
    assert np.all(np.diff(s) < 0) and s[-1] == pytest.approx(15e-4, rel=1e-3)
    ids = [511, -521, 531, 5122, 421, -411, 4122, 431, 211, 21, 2212, 130, 3122, 5]
    assert dg._hadron_flavour(ids).tolist() == [5, 5, 5, 5, 4, 4, 4, 4, 0, 0, 0, 0, 0, 0]


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    cfg = dg.GenConfig(events_per_chunk=40, pileup_mu=3.0)
    chunk = dg.simulate_chunk(cfg, seed=3, chunk=0)
    path = tmp_path_factory.mktemp("gen") / "gen.root"
    assert dg.write_root([chunk], path) == len(chunk["jet_pt"])
    return chunk, path


def test_generated_chunk_reads_as_cms_schema_with_b_tagging_physics(sample, shared_data):
    import uproot
    chunk, path = sample
    with uproot.open(path) as f:
        names = set(f[dg.TREE].keys())
    with uproot.open(shared_data / "cms_deepjet_ttbar_ntuple" / "ntuple_ttbar.root") as f:
        cms = set(f[dn.TREE].keys())
    # every branch the reader needs, and every CMS branch but truth/counter extras
    assert set(dn.required_branches()) <= names
    assert cms - names <= {"Delta_gen_pt", "Delta_gen_pt_Recluster", "Delta_gen_pt_WithNu",
                           "gen_pt_Recluster"}
    d = dn.read_deepjet_ntuple(path, order="physics")
    info = d["info"]
    assert info["n_read"] == len(chunk["jet_pt"]) and info["n_jets"] > 100
    counts = np.bincount(d["label"], minlength=4)
    assert counts[0] >= 20 and counts[2] >= 10 and counts[3] >= 10   # b, uds, g present
    assert np.all((d["jet_pt"] > 20) & (d["jet_pt"] < 100) & (d["jet_eta"] < 2.4))
    assert np.all(np.isnan(d["jet_qgl"])) and not d["qgl_valid"].any()  # -1 sentinel
    assert np.all(d["globals"][:, dn.GLOBAL_FEATURES.index("npv")] >= 1)
    ci = dn.CPF_FEATURES.index
    m = d["cpf_mask"]
    # b jets: displaced tracks (|dxy| > 300 um) and secondary vertices far more often
    disp = (np.abs(d["cpf"][..., ci("dxy")]) > 0.03) & m & (d["cpf"][..., ci("VTX_ass")] != 5)
    frac = disp.sum(1) / np.maximum(m.sum(1), 1)
    b, light = d["label"] == 0, np.isin(d["label"], (2, 3))
    assert frac[b].mean() > 2.5 * frac[light].mean()
    n_sv = d["sv_mask"].sum(1)
    assert n_sv[b].mean() > 0.4 and n_sv[b].mean() > 4 * n_sv[light].mean()
    sv = d["sv"][d["sv_mask"] & b[:, None]]
    si = dn.SV_FEATURES.index
    assert np.all(sv[:, si("ntracks")] >= 2) and np.all(sv[:, si("dxysig")] > 3)
    # the jet-signed IP significance: positive tail of b jets (lifetime), symmetric for light
    sig = chunk["Cpfcan_BtagPf_trackSip2dSig"]
    owner = np.repeat(np.arange(len(chunk["jet_pt"])), chunk["Cpfcan__counts"])
    is_b = chunk["isB"][owner] == 1
    assert np.mean(sig[is_b] > 3) > 3 * np.mean(sig[is_b] < -3)
    # gen-jet matching: response of matched labelled jets near 1 (pile-up pushes it above)
    ok = d["gen_valid"]
    assert ok.mean() > 0.6
    assert 0.9 < np.median(d["jet_pt"][ok] / d["gen_pt"][ok]) < 1.5


def test_same_seed_bit_identical_and_cli(tmp_path):
    parser = argparse.ArgumentParser()
    dg.add_arguments(parser)
    out = tmp_path / "x.root"
    args = parser.parse_args(["--n-events", "6", "--events-per-chunk", "6", "--pileup-mu", "0",
                              "--seed", "5", "--out", str(out)])
    assert dg.main(args) == 0
    assert out.is_file()
    with np.load(tmp_path / "x.root.chunks" / "chunk000000.npz") as saved:
        a = {k: saved[k] for k in saved.files}
    b = dg.simulate_chunk(dg.GenConfig(events_per_chunk=6, pileup_mu=0.0), 5, 0)
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    assert len(b["jet_pt"]) > 0
    with pytest.raises(ValueError, match="process='nope'"):
        dg.simulate_chunk(dg.GenConfig(process="nope"), 0, 0)


def test_qcd_and_zjet_processes_give_light_quark_and_gluon_jets():
    """QCD dijets and Z(->nu nu) + jet: no top decays, so b and c hadrons only from g -> bb/cc
    and the sea; the jets are uds or g by their hardest end-of-shower parton. In Z+jet the
    neutrinos of the Z are not inside the jets: gen_pt_WithNu = gen_pt for nearly every jet,
    while tt-bar's semileptonic b decays put neutrinos in some."""
    for process, n_ev in (("qcd", 12), ("zjet", 25)):
        c = dg.simulate_chunk(dg.GenConfig(process=process, events_per_chunk=n_ev,
                                           pileup_mu=0.0), seed=2, chunk=0)
        lab = np.stack([c["isB"], c["isC"], c["isUDS"], c["isG"]], 1)
        labelled = lab.sum(1) == 1
        counts = lab[labelled].sum(0)
        assert labelled.sum() >= 8, (process, labelled.sum())
        assert (counts[2] + counts[3]) / counts.sum() > 0.75, (process, counts)
        assert counts[2] > 0 and counts[3] > 0, (process, counts)
        assert np.all((c["jet_pt"] > 20) & (c["jet_pt"] < 100))
        if process == "zjet":
            m = c["gen_pt"] > 0
            assert np.mean(np.isclose(c["gen_pt_WithNu"][m], c["gen_pt"][m])) > 0.9
