"""Validation at the door: every reader refuses a bad file with one line naming the file, the
field, the number of bad rows and the first one; good files still read bit-identically."""
import re

import numpy as np
import pytest

from hepjax.data import formats, read_npz, write_npz

from .jets import synthetic_jets

pd = pytest.importorskip("pandas")
h5py = pytest.importorskip("h5py")


def _jets(n=40, m=12, seed=0):
    return synthetic_jets(n, m, seed)


def _refused(read, *args, match, **kwargs):
    """``read`` raises one FormatError whose single-line message matches ``match``."""
    with pytest.raises(formats.FormatError) as info:
        read(*args, **kwargs)
    message = str(info.value)
    assert "\n" not in message, message
    assert re.search(match, message), message
    return message


# ----------------------------------------------------------------------------- reference layout
@pytest.fixture
def reference(tmp_path):
    """A good reference-layout file and its DataFrame; ``corrupt(frame, name, fmt)`` writes a
    modified copy."""
    jets = _jets()
    path = tmp_path / "train.h5"
    formats.write_top_tagging(path, jets["p4"], jets["truth"], jets["ttv"], jets["label"],
                              n_particles=20)
    frame = pd.read_hdf(path, "table")

    def corrupt(changed, name="bad.h5", fmt="table"):
        out = tmp_path / name
        changed.to_hdf(out, key="table", format=fmt)
        return out

    return jets, path, frame, corrupt


@pytest.mark.parametrize("fmt", ["table", "fixed"])
def test_reference_labels_outside_classes(reference, fmt):
    _, _, frame, corrupt = reference
    bad = frame.copy()
    rows = [5, 7, 8, 11, 13, 17, 19, 23, 29, 31, 37, 39]
    bad.loc[rows, "is_signal_new"] = 3
    path = corrupt(bad, "train.h5" if fmt == "table" else "fixed.h5", fmt)
    expected = re.escape(f"{path}: column 'is_signal_new' has 12 rows outside {{0, 1}} (e.g. row 5: 3)")
    # counted over the whole file, not just the chunk where the first bad row is
    _refused(formats.read_top_tagging, path, chunk_size=8, match=f"^{expected}$")
    _refused(lambda: list(formats.iter_top_tagging(path, chunk_size=8)), match=f"^{expected}$")
    # a bad chunk is never yielded: the chunks before it are
    chunks = formats.iter_top_tagging(path, chunk_size=4)
    assert len(next(chunks)["label"]) == 4
    with pytest.raises(formats.FormatError, match="12 rows"):
        next(chunks)

    bad = frame.copy()
    bad.loc[30, "ttv"] = 7
    _refused(formats.read_top_tagging, corrupt(bad, fmt=fmt),
             match=r"bad.h5: column 'ttv' has 1 rows outside \{0, 1, 2\} \(e\.g\. row 30: 7\)$")
    bad = frame.copy()
    bad["is_signal_new"] = bad["is_signal_new"].astype(float)
    bad.loc[3, "is_signal_new"] = 0.5
    _refused(formats.read_top_tagging, corrupt(bad, fmt=fmt),
             match=r"column 'is_signal_new' has 1 rows outside \{0, 1\} \(e\.g\. row 3: 0\.5\)")


@pytest.mark.parametrize("fmt", ["table", "fixed"])
def test_reference_nan_inf_anywhere(reference, fmt):
    _, _, frame, corrupt = reference
    for column, value, field in (("PY_7", np.inf, "E_i/PX_i/PY_i/PZ_i"), ("truthPX", np.nan, "truth*"),
                                 ("is_signal_new", np.nan, "is_signal_new"),
                                 ("ttv", -np.inf, "ttv")):
        bad = frame.copy()
        if bad[column].dtype.kind == "i":
            bad[column] = bad[column].astype(float)
        bad.loc[[4, 9], column] = value
        named = column not in ("ttv", "is_signal_new")  # a group of columns: which one
        example = f"{column}={value!r}" if named else repr(value)
        _refused(formats.read_top_tagging, corrupt(bad, fmt=fmt), chunk_size=6,
                 match=re.escape(f"bad.h5: column {field!r} has NaN/Inf values in 2 of 40 rows "
                                 f"(e.g. row 4: {example})"))


def test_reference_empty_and_missing(reference, tmp_path):
    jets, _, frame, corrupt = reference
    formats.write_top_tagging(tmp_path / "empty.h5", jets["p4"][:0], jets["truth"][:0],
                              jets["ttv"][:0], jets["label"][:0])
    _refused(formats.read_top_tagging, tmp_path / "empty.h5", match=r"empty.h5: no jets \(0 rows\)")
    _refused(formats.read_top_tagging, corrupt(frame.iloc[:0], "empty_fixed.h5", "fixed"),
             match=r"empty_fixed.h5: no jets \(0 rows\) in key 'table'")
    _refused(formats.read_top_tagging, tmp_path / "train.h5", start=50,
             match=r"train.h5: rows 50:40 select no jets \(0 rows\); the file has 40")
    _refused(formats.read_top_tagging, corrupt(frame.drop(columns=["ttv", "truthE"]), "cols.h5"),
             match=r"cols.h5: missing columns \['truthE', 'ttv'\] \(2 in all\)")
    (tmp_path / "text.h5").write_text("not hdf5")
    _refused(formats.read_top_tagging, tmp_path / "text.h5", match=r"text.h5: not a readable HDF5 file")


def test_reference_good_file_reads_bit_identically(reference):
    jets, path, _, _ = reference
    for chunk_size in (7, 40):
        out = formats.read_top_tagging(path, chunk_size=chunk_size)
        assert out["p4"][:, :12].tobytes() == jets["p4"].tobytes()
        assert not out["p4"][:, 12:].any()
        assert out["truth"].tobytes() == jets["truth"].tobytes()
        assert out["label"].dtype == out["ttv"].dtype == np.int64
        np.testing.assert_array_equal(out["label"], jets["label"])
        np.testing.assert_array_equal(out["ttv"], jets["ttv"])
        np.testing.assert_array_equal(out["n_constituents"], jets["n_constituents"])


# ----------------------------------------------------------------------------- native
def _native(tmp_path, meta=None, **changes):
    jets = {**_jets(), **changes}
    path = tmp_path / "jets.h5"
    formats.write_native(path, jets, {"task": "top-tagging"} if meta is None else meta)
    return path


def _edit(path, key, fn):
    with h5py.File(path, "a") as f:
        data = f[key][:]
        data = fn(data)
        del f[key]
        f[key] = data


def test_native_refuses_bad_labels_and_values(tmp_path):
    jets = _jets()
    label = jets["label"].copy()
    label[[6, 9]] = 2
    _refused(formats.read_native, _native(tmp_path, label=label),
             match=r"jets.h5: dataset 'label' has 2 rows outside \{0, 1\} \(e\.g\. row 6: 2\)$")
    back = formats.read_native(_native(tmp_path, meta={"task": "jetclass-like"}, label=label))
    np.testing.assert_array_equal(back["label"], label)   # any class index >= 0 for other tasks
    label[4] = -1
    _refused(formats.read_native, _native(tmp_path, meta={}, label=label),
             match=r"dataset 'label' has 1 rows that are not class indices \(integers >= 0\) "
                   r"\(e\.g\. row 4: -1\)")
    ttv = jets["ttv"].copy()
    ttv[11] = 3
    _refused(formats.read_native, _native(tmp_path, ttv=ttv),
             match=r"dataset 'ttv' has 1 rows outside \{0, 1, 2\} \(e\.g\. row 11: 3\)")

    path = _native(tmp_path)
    counts = jets["n_constituents"]
    first_of_jet3 = int(counts[:3].sum())

    def poison(p4):
        p4[first_of_jet3 + 1, 2] = np.nan
        return p4

    _edit(path, "p4", poison)
    _refused(formats.read_native, path,
             match=r"dataset 'p4' has NaN/Inf values in 1 of 40 jets \(e\.g\. row 3: particle 1 = nan\)")
    truth = jets["truth"].copy()
    truth[8, 0] = np.inf
    _refused(formats.read_native, _native(tmp_path, truth=truth),
             match=r"dataset 'truth' has NaN/Inf values in 1 of 40 rows \(e\.g\. row 8: inf\)")


def test_native_empty_missing_and_good(tmp_path):
    jets = _jets()
    empty = {k: v[:0] for k, v in jets.items()}
    formats.write_native(tmp_path / "empty.h5", empty, {"task": "top-tagging"})
    _refused(formats.read_native, tmp_path / "empty.h5", match=r"empty.h5: no jets \(0 rows\)")
    path = _native(tmp_path)
    with h5py.File(path, "a") as f:
        del f["label"]
    _refused(formats.read_native, path, match=r"jets.h5: missing datasets \['label'\]; it has \[")
    back = formats.read_native(_native(tmp_path))
    for key in ("p4", "pid", "charge", "n_constituents", "label", "ttv", "truth", "mask", "jet_p4"):
        assert back[key].tobytes() == np.asarray(jets[key]).tobytes(), key


# ----------------------------------------------------------------------------- energyflow npz
def test_energyflow_refuses_bad_files(tmp_path):
    jets = _jets()
    x = formats.p4_to_ptyphi(jets["p4"], jets["pid"])
    path = tmp_path / "qg.npz"
    y = jets["label"].copy()
    y[[2, 3, 30]] = 2
    formats.write_energyflow_npz(path, x, y)
    _refused(formats.read_energyflow_npz, path,
             match=r"qg.npz: array 'y' has 3 rows outside \{0, 1\} \(e\.g\. row 2: 2\)$")
    np.testing.assert_array_equal(formats.read_energyflow_npz(path, num_classes=3)["y"], y)
    bad = x.copy()
    bad[5, 1, 2] = np.nan
    formats.write_energyflow_npz(path, bad, jets["label"])
    _refused(formats.read_energyflow_npz, path,
             match=r"array 'X' has NaN/Inf values in 1 of 40 rows \(e\.g\. row 5: phi\[1\]=nan\)")
    formats.write_energyflow_npz(path, x, np.where(np.arange(40) == 9, np.inf, jets["label"]))
    _refused(formats.read_energyflow_npz, path, match=r"array 'y' has NaN/Inf values in 1 of 40 rows")
    formats.write_energyflow_npz(path, x[:0], jets["label"][:0])
    _refused(formats.read_energyflow_npz, path, match=r"qg.npz: no jets \(0 rows\)")
    np.savez(path, X=x)
    _refused(formats.read_energyflow_npz, path, match=r"qg.npz: missing arrays \['y'\]; it has \['X'\]")
    path.write_bytes(b"garbage")
    _refused(formats.read_energyflow_npz, path, match=r"qg.npz: not an .npz file")
    formats.write_energyflow_npz(path, x, jets["label"])
    back = formats.read_energyflow_npz(path)
    assert back["X"].tobytes() == x.tobytes() and back["y"].tobytes() == jets["label"].tobytes()


# ----------------------------------------------------------------------------- JetClass ROOT
def _write_jetclass(path, jets, onehot=None, drop=(), part_px=None):
    uproot = pytest.importorskip("uproot")
    ak = pytest.importorskip("awkward")
    counts = jets["n_constituents"]
    flat = jets["p4"][jets["mask"]].copy()
    if part_px is not None:
        flat[:, 1] = part_px
    branches = {f"part_{n}": ak.unflatten(flat[:, i], counts)
                for i, n in enumerate(("energy", "px", "py", "pz"))}
    branches["part_charge"] = ak.unflatten(np.ones(len(flat), np.float32), counts)
    if onehot is None:
        onehot = np.stack([jets["label"] == 0, jets["label"] == 1], -1).astype(np.float32)
    branches["label_QCD"], branches["label_Tbqq"] = onehot[:, 0], onehot[:, 1]
    for name in drop:
        branches.pop(name)
    with uproot.recreate(path) as f:
        f["tree"] = branches
    return path


def test_jetclass_refuses_bad_files(tmp_path):
    jets = _jets()
    onehot = np.stack([jets["label"] == 0, jets["label"] == 1], -1).astype(np.float32)
    two = onehot.copy()
    two[[4, 21], :] = 1
    path = _write_jetclass(tmp_path / "jc.root", jets, two)
    _refused(formats.read_jetclass, path, max_particles=8,
             match=r"jc.root: branches 'label_\*' are not one-hot \(exactly one 1 per row\) in 2 of "
                   r"40 rows \(e\.g\. row 4: label_QCD=1\.0, label_Tbqq=1\.0\)$")
    none = onehot.copy()
    none[7] = 0
    _refused(formats.read_jetclass, _write_jetclass(tmp_path / "jc.root", jets, none),
             match=r"not one-hot .* in 1 of 40 rows \(e\.g\. row 7: all 0\)")
    nan_label = onehot.copy()
    nan_label[3, 1] = np.nan
    _refused(formats.read_jetclass, _write_jetclass(tmp_path / "jc.root", jets, nan_label),
             match=r"branches 'label_\*' has NaN/Inf values in 1 of 40 rows \(e\.g\. row 3: label_Tbqq=nan\)")
    px = jets["p4"][jets["mask"]][:, 1].copy()
    px[0] = np.inf
    _refused(formats.read_jetclass, _write_jetclass(tmp_path / "jc.root", jets, part_px=px),
             match=r"branches 'part_energy/px/py/pz' has NaN/Inf values in 1 of 40 rows "
                   r"\(e\.g\. row 0: part_px\[0\]=inf\)")
    _refused(formats.read_jetclass, _write_jetclass(tmp_path / "jc.root", jets, drop=("part_pz",)),
             match=r"jc.root: tree 'tree' lacks branches \['part_pz'\]")
    _refused(formats.read_jetclass, _write_jetclass(tmp_path / "jc.root", jets,
                                                    drop=("label_QCD", "label_Tbqq")),
             match=r"lacks branches \['label_\*'\]")
    _refused(formats.read_jetclass, _write_jetclass(tmp_path / "jc.root", jets), entry_stop=0,
             match=r"jc.root: no jets \(0 rows\) in tree 'tree'")
    back = formats.read_jetclass(_write_jetclass(tmp_path / "jc.root", jets), max_particles=12)
    assert back["p4"].tobytes() == jets["p4"].tobytes()
    np.testing.assert_array_equal(back["label"], jets["label"])


# ----------------------------------------------------------------------------- hepjax.data.read_npz
def test_read_npz_refuses_bad_files(tmp_path):
    path = tmp_path / "train.npz"
    features = np.random.default_rng(0).normal(size=(30, 3)).astype(np.float32)
    label = np.arange(30) % 2
    np.savez(path, features=features)
    _refused(read_npz, path, match=r"train.npz: missing arrays \['label'\]; it has \['features'\]")
    bad = features.copy()
    bad[[12, 20], 1] = np.nan
    write_npz(path, bad, label, ("a", "b", "c"))
    _refused(read_npz, path,
             match=r"array 'features' has NaN/Inf values in 2 of 30 rows \(e\.g\. row 12: b=nan\)$")
    write_npz(path, features, np.where(np.arange(30) == 17, -1, label))
    _refused(read_npz, path, match=r"array 'label' has 1 rows that are not class indices "
                                   r"\(integers >= 0\) \(e\.g\. row 17: -1\)")
    write_npz(path, features, np.where(np.arange(30) == 17, 2, label))
    _refused(read_npz, path, num_classes=2, match=r"array 'label' has 1 rows outside \{0, 1\}")
    write_npz(path, features[:0], label[:0])
    _refused(read_npz, path, match=r"train.npz: no jets \(0 rows\)")
    write_npz(path, features, label[:5])
    _refused(read_npz, path, match=r"'features' has 30 rows and 'label' 5")
    write_npz(path, features, label, ("a", "b", "c"))
    back = read_npz(path, num_classes=2)
    assert back["features"].tobytes() == features.tobytes()
    assert back["label"].tobytes() == label.tobytes() and back["feature_names"] == ("a", "b", "c")
