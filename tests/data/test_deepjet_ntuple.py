"""DeepJet ntuple reader: a tiny hand-made ntuple (values, ordering, padding, labels, sentinel),
one-line errors for bad files, and the real CMS ttbar ntuple (skipped where ../shared is absent)."""
import numpy as np
import pytest

uproot = pytest.importorskip("uproot")
ak = pytest.importorskip("awkward")

from hepjax.data import deepjet_ntuple as dn  # noqa: E402
from hepjax.data import formats  # noqa: E402

# three jets: jet 0 has 3 charged / 2 neutral / 1 SV, jet 1 has 1 / 0 / 0, jet 2 has 2 / 1 / 2
CPF_PT = [[1.0, 5.0, 2.0], [3.0], [4.0, 0.5]]
CPF_DXY = [[0.5, -0.01, -2.0], [0.1], [0.0, 0.3]]
NPF_PT = [[0.7, 2.5], [], [1.5]]
SV_DXY = [[0.2], [], [0.1, 0.9]]
SV_DXYERR = [[0.1], [], [0.1, 0.1]]


def _branches(n_flags=None, drop=(), qgl=(0.3, -1.0, 0.8)):
    def jag(x, like=None):
        if like is not None:  # same structure as `like`, values x(i, j)
            return [[float(x(i, j)) for j in range(len(r))] for i, r in enumerate(like)]
        return x

    cpf = {b: ak.Array(jag(lambda i, j, b=b: 0.1 * (j + 1) + i, CPF_PT))
           for b in dn.CPF_BRANCHES}
    cpf["pt"], cpf["dxy"] = ak.Array(CPF_PT), ak.Array(CPF_DXY)
    npf = {b: ak.Array(jag(lambda i, j: 0.05 * (j + 1), NPF_PT)) for b in dn.NPF_BRANCHES}
    npf["pt"] = ak.Array(NPF_PT)
    sv = {b: ak.Array(jag(lambda i, j: 1.0 + j, SV_DXY)) for b in dn.SV_BRANCHES}
    sv["dxy"], sv["dxyerr"] = ak.Array(SV_DXY), ak.Array(SV_DXYERR)
    flags = n_flags if n_flags is not None else {"isB": [1, 0, 0], "isC": [0, 0, 0],
                                                   "isUDS": [0, 0, 1], "isG": [0, 0, 0]}
    out = {"Cpfcan": ak.zip(cpf), "Npfcan": ak.zip(npf), "sv": ak.zip(sv),
           "jet_pt": np.array([40.0, 25.0, 60.0], np.float32),
           "jet_eta": np.array([0.5, 1.2, 2.0], np.float32),
           "npv": np.array([20, 30, 25], np.uint32),
           "QG_axis2": np.array([0.05, 0.02, 0.03], np.float32),
           "QG_mult": np.array([3, 1, 2], np.int32),
           "jet_qgl": np.array(qgl, np.float32),
           "gen_pt": np.array([42.0, 20.0, 55.0], np.float32),
           "event_no": np.array([1, 1, 2], np.uint32), "jet_no": np.array([0, 1, 0], np.uint32),
           **{k: np.array(v, np.uint32) for k, v in flags.items()}}
    return {k: v for k, v in out.items() if k not in drop}


def _write(path, branches, tree="deepntuplizer/tree"):
    """Records (Cpfcan, Npfcan, sv) become one jagged branch per field, ``Cpfcan_pt`` etc."""
    flat = {}
    for k, v in branches.items():
        if isinstance(v, ak.Array) and v.fields:
            flat.update({f"{k}_{f}": v[f] for f in v.fields})
        else:
            flat[k] = v
    with uproot.recreate(path) as f:
        f[tree] = flat
    return path


def test_tiny_ntuple_values_order_padding_labels(tmp_path):
    flags = {"isB": [1, 0, 0], "isC": [0, 0, 0], "isUDS": [0, 0, 1], "isG": [0, 0, 0]}
    path = _write(tmp_path / "tiny.root", _branches(flags))
    assert "Cpfcan_pt" in uproot.open(path)["deepntuplizer/tree"].keys()
    d = dn.read_deepjet_ntuple(path, n_cpf=2, n_npf=3, n_sv=2)
    info = d["info"]
    # jet 1 has no flag: excluded, counted, its row reported
    assert info["n_read"] == 3 and info["n_unlabelled"] == 1 and info["unlabelled_rows"] == [1]
    np.testing.assert_array_equal(d["row"], [0, 2])
    np.testing.assert_array_equal(d["label"], [0, 2])      # b, uds
    assert d["cpf"].shape == (2, 2, 16) and d["npf"].shape == (2, 3, 6)
    assert d["sv"].shape == (2, 2, 12) and d["globals"].shape == (2, 12)
    # stored order, truncated at 2 (jet 0 loses its third charged candidate), zero padded
    c = dict(zip(dn.CPF_FEATURES, np.moveaxis(d["cpf"], -1, 0)))
    np.testing.assert_allclose(c["log_pt"][0], np.log([1.0, 5.0]), rtol=1e-6)
    np.testing.assert_allclose(c["pt_over_jet"][1], [4.0 / 60, 0.5 / 60], rtol=1e-6)
    np.testing.assert_array_equal(d["cpf_mask"], [[True, True], [True, True]])
    np.testing.assert_array_equal(d["npf_mask"], [[True, True, False], [True, False, False]])
    np.testing.assert_array_equal(d["sv_mask"], [[True, False], [True, True]])
    assert np.all(d["npf"][~d["npf_mask"]] == 0) and np.all(d["sv"][~d["sv_mask"]] == 0)
    assert info["dropped"] == {"cpf": 1, "npf": 0, "sv": 0}
    s = dict(zip(dn.SV_FEATURES, np.moveaxis(d["sv"], -1, 0)))
    np.testing.assert_allclose(s["dxysig"][1], [1.0, 9.0], rtol=1e-5)
    # globals count every candidate (not truncated) and never include jet_qgl / gen_pt
    g = dict(zip(dn.GLOBAL_FEATURES, d["globals"].T))
    np.testing.assert_array_equal(g["n_cpf"], [3, 2])
    np.testing.assert_allclose(g["cpf_pt_frac"], [8.0 / 40, 4.5 / 60], rtol=1e-6)
    pts = np.array([1.0, 5.0, 2.0, 0.7, 2.5])
    np.testing.assert_allclose(g["ptD_cands"][0], np.sqrt((pts ** 2).sum()) / pts.sum(), rtol=1e-6)
    assert "jet_qgl" not in dn.GLOBAL_FEATURES and not any("gen" in n for n in dn.GLOBAL_FEATURES)
    np.testing.assert_allclose(d["gen_pt"], [42.0, 55.0])
    # physics order: charged by |dxy| (the 5 GeV candidate with dxy -0.01 is dropped now),
    # neutral by pT, SVs by dxy / dxyerr
    p = dn.read_deepjet_ntuple(path, n_cpf=2, n_npf=3, n_sv=2, order="physics")
    np.testing.assert_allclose(np.exp(p["cpf"][0, :, 0]), [2.0, 1.0], rtol=1e-6)
    np.testing.assert_allclose(p["npf"][0, :2, 0] * 40, [2.5, 0.7], rtol=1e-6)
    np.testing.assert_allclose(dict(zip(dn.SV_FEATURES, np.moveaxis(p["sv"], -1, 0)))["dxysig"][1],
                               [9.0, 1.0], rtol=1e-5)


def test_qgl_sentinel_is_a_mask(tmp_path):
    flags = {"isB": [0, 0, 0], "isC": [0, 1, 0], "isUDS": [1, 0, 0], "isG": [0, 0, 1]}
    path = _write(tmp_path / "q.root", _branches(flags, qgl=(0.3, -1.0, 0.8)))
    d = dn.read_deepjet_ntuple(path)
    np.testing.assert_array_equal(d["qgl_valid"], [True, False, True])
    assert np.isnan(d["jet_qgl"][1]) and d["jet_qgl"][0] == pytest.approx(0.3)
    assert d["info"]["n_qgl_missing"] == 1 and d["info"]["n_unlabelled"] == 0
    np.testing.assert_array_equal(d["label"], [2, 1, 3])


def test_bad_inputs_give_one_line_errors(tmp_path):
    # a file without the tree
    other = _write(tmp_path / "other.root", _branches(), tree="Events")
    with pytest.raises(formats.FormatError, match=r"other.root: no tree 'deepntuplizer/tree'") as e:
        dn.read_deepjet_ntuple(other)
    assert "\n" not in str(e.value)
    # a missing branch, named
    nodz = _branches()
    nodz["Cpfcan"] = ak.zip({k: nodz["Cpfcan"][k] for k in dn.CPF_BRANCHES if k != "dz"})
    path = _write(tmp_path / "nodz.root", nodz)
    with pytest.raises(formats.FormatError, match=r"nodz.root: tree 'deepntuplizer/tree' lacks "
                                                  r"branch \['Cpfcan_dz'\]") as e:
        dn.read_deepjet_ntuple(path)
    assert "\n" not in str(e.value)
    path = _write(tmp_path / "nogen.root", _branches(drop=("gen_pt",)))
    with pytest.raises(formats.FormatError, match=r"lacks branch \['gen_pt'\]"):
        dn.read_deepjet_ntuple(path)
    # an empty tree
    empty = {k: (v[:0] if not isinstance(v, ak.Array) else v[:0]) for k, v in _branches().items()}
    path = _write(tmp_path / "empty.root", empty)
    with pytest.raises(formats.FormatError, match=r"empty.root: no jets \(0 rows\)") as e:
        dn.read_deepjet_ntuple(path)
    assert "\n" not in str(e.value)
    # two classes flagged on one jet; NaN in a candidate branch; not a ROOT file; no file
    path = _write(tmp_path / "two.root", _branches({"isB": [1, 0, 0], "isC": [1, 0, 0],
                                                    "isUDS": [0, 1, 1], "isG": [0, 0, 0]}))
    with pytest.raises(formats.FormatError,
                       match=r"flavour flags of two classes set in 1 of 3 rows"):
        dn.read_deepjet_ntuple(path)
    nan = _branches()
    nan["Npfcan"] = ak.zip({k: nan["Npfcan"][k] for k in dn.NPF_BRANCHES} | {
        "HadFrac": ak.Array([[0.0, np.nan], [], [0.1]])})
    path = _write(tmp_path / "nan.root", nan)
    with pytest.raises(formats.FormatError,
                       match=r"branch 'Npfcan_HadFrac' has NaN/Inf values in 1 of 3 rows"):
        dn.read_deepjet_ntuple(path)
    (tmp_path / "text.root").write_text("not root")
    with pytest.raises(formats.FormatError, match="not a readable ROOT file"):
        dn.read_deepjet_ntuple(tmp_path / "text.root")
    with pytest.raises(FileNotFoundError, match="absent.root"):
        dn.read_deepjet_ntuple(tmp_path / "absent.root")


def test_exposed_through_formats(tmp_path):
    path = _write(tmp_path / "tiny.root", _branches())
    d = formats.read_deepjet_ntuple(path)
    assert d["info"]["n_jets"] == 2


def test_real_cms_ttbar_ntuple(shared_data):
    path = shared_data / "cms_deepjet_ttbar_ntuple" / "ntuple_ttbar.root"
    if not path.is_file():
        pytest.skip(f"{path} is absent")
    d = dn.read_deepjet_ntuple(path)
    info = d["info"]
    assert info["n_read"] == 7199 and info["n_unlabelled"] == 0 and info["n_jets"] == 7199
    assert info["class_counts"] == [2232, 899, 2276, 1792]          # the data README's counts
    assert info["n_qgl_missing"] == 27 and np.isnan(d["jet_qgl"]).sum() == 27
    assert d["cpf"].shape == (7199, 25, 16) and d["npf"].shape == (7199, 25, 6)
    assert d["sv"].shape == (7199, 4, 12) and d["globals"].shape == (7199, 12)
    assert info["max_counts"] == {"cpf": 30, "npf": 39, "sv": 4}
    for key in ("cpf", "npf", "sv", "globals"):
        assert np.isfinite(d[key]).all(), key
    assert d["gen_valid"].all() and (d["jet_pt"] >= 20).all()
    std, stats = dn.standardise(d)
    real = std["cpf"][std["cpf_mask"]]
    np.testing.assert_allclose(real.mean(0), 0, atol=1e-3)
    assert np.all(std["cpf"][~std["cpf_mask"]] == 0)
