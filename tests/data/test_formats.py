"""Readers and writers: round trips on synthetic jets, and clear errors on bad files."""
import numpy as np
import pytest

from hepjax.data import formats, read_top_tagging

from .jets import synthetic_jets as _jets

pd = pytest.importorskip("pandas")


def test_reference_round_trip_chunked_table_and_fixed(tmp_path):
    jets = _jets()
    path = tmp_path / "train.h5"
    formats.write_top_tagging(path, jets["p4"], jets["truth"], jets["ttv"], jets["label"], chunk_size=17)
    frame = pd.read_hdf(path, "table")
    assert list(frame.columns) == formats.reference_columns() and len(frame) == 50
    with pd.HDFStore(path, "r") as store:          # the public files are "table" format
        assert store.get_storer("table").is_table
        assert store.select("table", columns=["is_signal_new"]).shape == (50, 1)
    for p in (path, tmp_path / "fixed.h5"):
        if p.name == "fixed.h5":
            frame.to_hdf(p, key="table", format="fixed")
        full = read_top_tagging(p, chunk_size=7)
        np.testing.assert_array_equal(full["p4"][:, :30], jets["p4"])
        assert np.all(full["p4"][:, 30:] == 0)
        np.testing.assert_array_equal(full["mask"][:, :30], jets["mask"])
        np.testing.assert_array_equal(full["label"], jets["label"])
        np.testing.assert_array_equal(full["ttv"], jets["ttv"])
        np.testing.assert_array_equal(full["truth"], jets["truth"])
        part = read_top_tagging(p, max_particles=10, start=5, stop=20)
        np.testing.assert_array_equal(part["p4"], jets["p4"][5:20, :10])
        chunks = list(formats.iter_top_tagging(p, chunk_size=16))
        assert [len(c["label"]) for c in chunks] == [16, 16, 16, 2]


def test_reference_errors_name_file_column_rows(tmp_path):
    jets = _jets(10)
    path = tmp_path / "bad.h5"
    formats.write_top_tagging(path, jets["p4"], jets["truth"], jets["ttv"], jets["label"])
    frame = pd.read_hdf(path, "table")
    frame.drop(columns=["is_signal_new"]).to_hdf(tmp_path / "nolabel.h5", key="table", format="table")
    with pytest.raises(formats.FormatError, match=r"nolabel.h5.*missing columns \['is_signal_new'\]"):
        read_top_tagging(tmp_path / "nolabel.h5")
    frame.loc[[2, 5], "PX_3"] = np.nan
    frame.to_hdf(tmp_path / "nan.h5", key="table", format="table")
    with pytest.raises(formats.FormatError, match=r"nan.h5: column 'E_i/PX_i/PY_i/PZ_i' has NaN/Inf values in 2 of 10 rows"):
        read_top_tagging(tmp_path / "nan.h5")
    frame.to_hdf(tmp_path / "otherkey.h5", key="jets", format="table")
    with pytest.raises(formats.FormatError, match="no key 'table'"):
        read_top_tagging(tmp_path / "otherkey.h5")
    with pytest.raises(FileNotFoundError, match="absent.h5"):
        read_top_tagging(tmp_path / "absent.h5")
    with pytest.raises(ValueError, match="truth must have shape"):
        formats.write_top_tagging(path, jets["p4"], jets["truth"][:3], jets["ttv"], jets["label"])


def test_native_round_trip_and_truncation(tmp_path):
    jets = _jets()
    path = tmp_path / "jets.h5"
    formats.write_native(path, jets, {"seed": 3})
    back = formats.read_native(path)
    assert back["meta"] == {"seed": 3}
    for key in ("p4", "pid", "charge", "n_constituents", "label", "ttv", "truth", "mask"):
        np.testing.assert_array_equal(back[key], jets[key], err_msg=key)
    short = formats.read_native(path, max_particles=5)
    np.testing.assert_array_equal(short["p4"], jets["p4"][:, :5])
    np.testing.assert_array_equal(short["n_constituents"], np.minimum(jets["n_constituents"], 5))
    with pytest.raises(formats.FormatError, match="not a hepjax native"):
        import h5py
        with h5py.File(tmp_path / "x.h5", "w") as f:
            f["a"] = 1
        formats.read_native(tmp_path / "x.h5")


def test_energyflow_layout_round_trip(tmp_path):
    jets = _jets()
    x = formats.p4_to_ptyphi(jets["p4"], jets["pid"])
    assert np.all(x[~jets["mask"]] == 0)
    np.testing.assert_allclose(x[..., 0][jets["mask"]],
                               np.hypot(jets["p4"][..., 1], jets["p4"][..., 2])[jets["mask"]], rtol=1e-6)
    formats.write_energyflow_npz(tmp_path / "qg.npz", x, jets["label"])
    back = formats.read_energyflow_npz(tmp_path / "qg.npz")
    np.testing.assert_array_equal(back["X"], x)
    np.testing.assert_array_equal(back["mask"], jets["mask"])
    p4 = formats.ptyphi_to_p4(back["X"])            # pion mass from pid 211
    np.testing.assert_allclose(formats.p4_to_ptyphi(p4, jets["pid"]), x, rtol=1e-6, atol=1e-6)
    m2 = p4[..., 0] ** 2 - (p4[..., 1:] ** 2).sum(-1)
    np.testing.assert_allclose(np.sqrt(m2[jets["mask"]]), 0.13957, rtol=1e-3)
    np.savez(tmp_path / "bad.npz", X=x[..., :3], y=jets["label"])
    with pytest.raises(formats.FormatError, match=r"bad.npz: array 'X' must have shape"):
        formats.read_energyflow_npz(tmp_path / "bad.npz")


def test_energyflow_layout_keeps_phi_within_pi_of_the_jet():
    """A jet at phi = pi: its particles at +3.1 and -3.1 rad come out at 3.1 and 2 pi - 3.1, as
    in the energyflow files (no jet split across the wrap), pT and y unchanged."""
    phi = np.array([[3.1, -3.1, 0.0]])
    pt = np.array([[100.0, 50.0, 0.0]])
    p4 = np.stack([pt * np.cosh(0.3), pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(0.3)], -1)
    x = formats.p4_to_ptyphi(p4)
    np.testing.assert_allclose(x[0, :2, 2], [3.1, 2 * np.pi - 3.1], atol=1e-9)
    np.testing.assert_allclose(x[0, :2, :2], [[100.0, 0.3], [50.0, 0.3]], atol=1e-9)
    assert np.all(x[0, 2] == 0)
    # a jet at phi = 0 keeps (-pi, pi]
    np.testing.assert_allclose(formats.p4_to_ptyphi(p4 * [1, -1, -1, 1])[0, :2, 2],
                               [3.1 - np.pi, np.pi - 3.1], atol=1e-9)


def test_jetclass_root_round_trip(tmp_path):
    uproot = pytest.importorskip("uproot")
    ak = pytest.importorskip("awkward")
    jets = _jets(20, 12)
    counts = jets["n_constituents"]
    flat = jets["p4"][jets["mask"]]
    branches = {f"part_{n}": ak.unflatten(flat[:, i], counts)
                for i, n in enumerate(("energy", "px", "py", "pz"))}
    branches["part_charge"] = ak.unflatten(np.ones(len(flat), np.float32), counts)
    branches["label_QCD"] = (jets["label"] == 0).astype(np.float32)
    branches["label_Tbqq"] = (jets["label"] == 1).astype(np.float32)
    with uproot.recreate(tmp_path / "jc.root") as f:
        f["tree"] = branches
    back = formats.read_jetclass(tmp_path / "jc.root", max_particles=8)
    assert back["label_names"] == ("label_QCD", "label_Tbqq")
    np.testing.assert_array_equal(back["label"], jets["label"])
    np.testing.assert_allclose(back["p4"], jets["p4"][:, :8])
    np.testing.assert_array_equal(back["mask"], jets["mask"][:, :8])
    with pytest.raises(formats.FormatError, match="no tree 'Events'"):
        formats.read_jetclass(tmp_path / "jc.root", tree="Events")


def test_real_cms_file_is_rejected_clearly():
    import pathlib
    path = pathlib.Path(__file__).parents[2] / "../shared/data/cms_deepjet_ttbar_ntuple/ntuple_ttbar.root"
    if not path.exists():
        pytest.skip("../shared/data is absent")
    pytest.importorskip("uproot")
    with pytest.raises(formats.FormatError, match="ntuple_ttbar.root"):
        formats.read_jetclass(path)
