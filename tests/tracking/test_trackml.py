"""TrackML format: the real event in ../shared/data, write/read round trips, one-line errors,
derived hit features and module geometry."""
import gzip

import numpy as np
import pytest

from hepjax.tracking import trackml as tm



@pytest.fixture(scope="module")
def event(event_dir):
    return tm.load_event(event_dir / "event000000001")


@pytest.fixture(scope="module")
def detectors(event_dir):
    return tm.load_detectors(event_dir / "detectors.csv.gz")


def small_event():
    """Two particles (one with a 64-bit id), one noise hit, cells."""
    big = np.uint64(2**63 + 12345)
    hits = {"hit_id": np.array([1, 2, 3, 4, 5], np.int32),
            "x": np.array([31.5, 71.25, 115.0, -32.1, 0.1], np.float32),
            "y": np.array([1.0, 2.0, 3.0, 4.5, -32.0], np.float32),
            "z": np.array([10.0, 20.0, 30.0, -5.0, 1e-3], np.float32),
            "volume_id": np.array([8, 8, 8, 8, 8], np.int32),
            "layer_id": np.array([2, 4, 6, 2, 2], np.int32),
            "module_id": np.array([1, 2, 3, 4, 5], np.int32)}
    particles = {"particle_id": np.array([7, big], np.uint64),
                 "particle_type": np.array([211, -13], np.int32),
                 "vx": np.zeros(2, np.float32), "vy": np.zeros(2, np.float32),
                 "vz": np.array([0.5, -1.0], np.float32),
                 "px": np.array([1.5, -0.3], np.float32), "py": np.array([0.1, 0.2], np.float32),
                 "pz": np.array([2.0, -0.1], np.float32), "q": np.array([1, -1], np.int32),
                 "nhits": np.array([3, 1], np.int32)}
    truth = {"hit_id": hits["hit_id"].copy(),
             "particle_id": np.array([7, 7, 7, big, 0], np.uint64),
             "tx": hits["x"].copy(), "ty": hits["y"].copy(), "tz": hits["z"].copy(),
             "tpx": np.array([1.5, 1.4, 1.3, -0.3, 0.0], np.float32),
             "tpy": np.array([0.1, 0.1, 0.1, 0.2, 0.0], np.float32),
             "tpz": np.array([2.0, 2.0, 2.0, -0.1, 0.0], np.float32),
             "weight": np.array([0.3, 0.25, 0.45, 0.0, 0.0], np.float32)}
    cells = {"hit_id": np.array([1, 1, 2, 3, 4, 5, 5, 5], np.int32),
             "ch0": np.array([10, 11, 3, 4, 5, 6, 6, 9], np.int32),
             "ch1": np.array([20, 20, 1, 2, 3, 4, 5, 4], np.int32),
             "value": np.array([0.5, 0.25, 1, 1, 1, 0.1, 0.2, 0.3], np.float32)}
    return {"hits": hits, "cells": cells, "particles": particles, "truth": truth}


# --------------------------------------------------------------------------------------------
# The real event
# --------------------------------------------------------------------------------------------


def test_real_event_counts_and_dtypes(event):
    hits, truth, particles, cells = (event[p] for p in ("hits", "truth", "particles", "cells"))
    assert len(hits["hit_id"]) == 5527 and len(truth["hit_id"]) == 5527
    assert len(particles["particle_id"]) == 548
    assert int((truth["particle_id"] == 0).sum()) == 829
    assert len(cells["hit_id"]) == 18564
    assert particles["particle_id"].dtype == np.uint64 and truth["particle_id"].dtype == np.uint64
    assert int(particles["particle_id"].max()) > 2**59          # needs 64 bits
    assert hits["x"].dtype == np.float32 and hits["volume_id"].dtype == np.int32
    assert particles["particle_type"].dtype == np.int32
    assert list(hits) == list(tm.COLUMNS["hits"])
    np.testing.assert_array_equal(hits["hit_id"], truth["hit_id"])   # same row order
    # nhits of the particles file = their hits in the truth file (80 particles have none)
    ids, counts = np.unique(truth["particle_id"][truth["particle_id"] != 0], return_counts=True)
    rows = np.searchsorted(np.sort(particles["particle_id"]), ids)
    nhits = particles["nhits"][np.argsort(particles["particle_id"])][rows]
    np.testing.assert_array_equal(nhits, counts)
    assert int((particles["nhits"] == 0).sum()) == 80 and len(ids) == 468


def test_real_event_weights_follow_the_trackml_definition(event):
    """TrackML truth weights (Amrouche et al. arXiv:1904.06778; trackml-library weights.py):
    noise and particles with <= 3 hits weigh 0; a particle's hits, ordered by |tz - vz|, share its
    weight as the interpolated order profile (10, 8, 6, 5, 3, 3, 3, 5, 6), and the particle's
    total is proportional to the pT weight (0.2 below 0.5 GeV rising linearly to 1 at 3 GeV);
    the full event sums to 1. This file is a ~5 % particle subsample: it sums to 0.0513."""
    truth, particles = event["truth"], event["particles"]
    w = truth["weight"].astype(np.float64)
    pid = truth["particle_id"]
    assert (w >= 0).all() and w[pid == 0].sum() == 0
    assert w.sum() == pytest.approx(0.0512628, abs=2e-6)
    proposal = np.array([10, 8, 6, 5, 3, 3, 3, 5, 6], float)
    pt = np.hypot(particles["px"], particles["py"]).astype(np.float64)
    ratios, n_weighted = [], 0
    for i, p in enumerate(particles["particle_id"]):
        m = pid == p
        n = int(m.sum())
        if n <= 3:
            assert w[m].sum() == 0
            continue
        if w[m].sum() == 0:
            continue
        n_weighted += 1
        order = np.argsort(np.abs(truth["tz"][m] - particles["vz"][i]), kind="stable")
        profile = np.interp(np.arange(n), np.arange(9) * (n - 1) / 8, proposal)
        np.testing.assert_allclose(w[m][order] / w[m].sum(), profile / profile.sum(), atol=1e-5)
        ratios.append(w[m].sum() / np.interp(pt[i], [0.05, 0.5, 3.0], [0.2, 0.2, 1.0]))
    assert n_weighted == 377
    assert np.ptp(ratios) / np.mean(ratios) < 1e-4               # one normalisation constant


def test_real_detectors_and_module_geometry(event, detectors):
    assert len(detectors["module_id"]) == 18728
    assert "Unnamed: 0" not in detectors and list(detectors)[0] == "volume_id"  # index dropped
    assert detectors["cx"].dtype == np.float64
    g = tm.module_geometry(event["hits"], detectors)
    rot = g["rotation"]
    np.testing.assert_allclose(np.einsum("nji,njk->nik", rot, rot),
                               np.broadcast_to(np.eye(3), rot.shape), atol=1e-5)
    u, v, w = tm.local_coordinates(event["hits"], detectors).T
    # every hit lies on the sensor of its module: in the plane, inside the trapezoid
    assert (np.abs(w) <= g["module_t"] / 2).all()
    assert (np.abs(v) <= g["module_hv"] + 1e-3).all()
    half_u = g["module_minhu"] + (g["module_maxhu"] - g["module_minhu"]) * \
        (v + g["module_hv"]) / (2 * g["module_hv"])
    assert (np.abs(u) <= half_u + 1e-3).all()
    moved = dict(event["hits"], module_id=event["hits"]["module_id"] + 5000)
    with pytest.raises(ValueError, match="absent from the detectors table"):
        tm.module_geometry(moved, detectors)


def test_real_hit_features_and_layers(event):
    f = tm.hit_features(event["hits"])
    assert np.unique(f["layer"]).tolist() == list(range(48))      # all 48 layers have hits
    barrel = event["hits"]["volume_id"] == 8
    # the pixel barrel layers at r = 32, 72, 116, 172 mm are global layers 7..10
    for layer, radius in zip(range(7, 11), (32, 72, 116, 172)):
        sel = barrel & (f["layer"] == layer)
        assert sel.any() and np.abs(f["r"][sel] - radius).max() < 5
    endcap = event["hits"]["volume_id"] == 7
    assert np.abs(f["z"][endcap & (f["layer"] == 0)] + 1500).max() < 5   # (7, 2): z = -1500
    cf = tm.cell_features(event["hits"]["hit_id"], event["cells"])
    assert (cf["n_cells"] >= 1).all() and cf["n_cells"].sum() == 18564


# --------------------------------------------------------------------------------------------
# Derived quantities on hand-made hits
# --------------------------------------------------------------------------------------------


def test_global_layer_order_and_unknown_pairs():
    assert len(tm.TRACKML_LAYERS) == 48 and list(tm.TRACKML_LAYERS) == sorted(tm.TRACKML_LAYERS)
    layers = tm.global_layer([7, 7, 8, 9, 12, 17, 18], [2, 14, 2, 2, 2, 4, 12])
    np.testing.assert_array_equal(layers, [0, 6, 7, 11, 18, 41, 47])
    with pytest.raises(ValueError, match=r"unknown \(volume_id, layer_id\).*\(8, 3\)"):
        tm.global_layer([8, 8], [2, 3])


def test_hit_features_values():
    hits = {"x": np.array([3.0, 0.0]), "y": np.array([4.0, -2.0]), "z": np.array([0.0, -2.0])}
    f = tm.hit_features(hits)
    np.testing.assert_allclose(f["r"], [5, 2])
    np.testing.assert_allclose(f["phi"], [np.arctan2(4, 3), -np.pi / 2])
    np.testing.assert_allclose(f["eta"], [0.0, -np.log(np.tan(3 * np.pi / 8))])   # theta=135deg
    np.testing.assert_allclose(f["theta"], [np.pi / 2, 3 * np.pi / 4])
    assert "layer" not in f


def test_cell_features():
    ev = small_event()
    cf = tm.cell_features(ev["hits"]["hit_id"], ev["cells"])
    np.testing.assert_array_equal(cf["n_cells"], [2, 1, 1, 1, 3])
    np.testing.assert_allclose(cf["charge"], [0.75, 1, 1, 1, 0.6], rtol=1e-6)
    np.testing.assert_array_equal(cf["span_u"], [2, 1, 1, 1, 4])
    np.testing.assert_array_equal(cf["span_v"], [1, 1, 1, 1, 2])
    with pytest.raises(ValueError, match="hit ids not in hit_id, e.g. 5"):
        tm.cell_features(ev["hits"]["hit_id"][:4], ev["cells"])


# --------------------------------------------------------------------------------------------
# Round trips
# --------------------------------------------------------------------------------------------


def assert_same_event(a, b):
    assert set(a) == set(b)
    for part in a:
        assert list(a[part]) == list(b[part]), part
        for col in a[part]:
            assert a[part][col].dtype == b[part][col].dtype, (part, col)
            np.testing.assert_array_equal(a[part][col], b[part][col], err_msg=f"{part}.{col}")


@pytest.mark.parametrize("compress", [True, False])
def test_write_read_round_trip(tmp_path, compress):
    ev = small_event()
    paths = tm.write_event(tmp_path / "out" / "event000000042", ev, compress=compress)
    assert paths["hits"].name == "event000000042-hits.csv" + (".gz" if compress else "")
    if compress:
        with gzip.open(paths["truth"], "rt") as f:
            assert f.readline().strip() == ",".join(tm.COLUMNS["truth"])
    back = tm.load_event(tmp_path / "out" / "event000000042")
    assert_same_event(tm.check_event(ev), back)
    assert int(back["truth"]["particle_id"][3]) == 2**63 + 12345          # exact, > int64
    assert list(back["particles"])[:2] == ["particle_id", "particle_type"]


def test_real_event_round_trip(tmp_path, event, detectors):
    tm.write_event(tmp_path / "event000000001", event)
    assert_same_event(event, tm.load_event(tmp_path / "event000000001"))
    tm.write_detectors(tmp_path / "detectors.csv", detectors)
    back = tm.load_detectors(tmp_path / "detectors.csv")
    for k in detectors:
        np.testing.assert_array_equal(detectors[k], back[k])


def test_submission_round_trip(tmp_path):
    path = tm.write_submission(tmp_path / "sub.csv.gz", 3, [5, 1, 9], [0, 0, 2])
    sub = tm.load_submission(path)
    assert list(sub) == ["event_id", "hit_id", "track_id"]
    np.testing.assert_array_equal(sub["event_id"], [3, 3, 3])
    np.testing.assert_array_equal(sub["hit_id"], [5, 1, 9])
    np.testing.assert_array_equal(sub["track_id"], [0, 0, 2])
    with pytest.raises(ValueError, match=r"sub2.csv: column 'track_id': negative ids"):
        tm.write_submission(tmp_path / "sub2.csv", 3, [1, 2], [0, -1])
    with pytest.raises(ValueError, match=r"column 'hit_id': duplicated hit ids .*line 3: 1"):
        tm.write_submission(tmp_path / "sub2.csv", 3, [1, 1], [0, 1])
    (tmp_path / "bad.csv").write_text("event_id,hit_id\n1,2\n")
    with pytest.raises(ValueError, match=r"bad.csv: column 'track_id': missing"):
        tm.load_submission(tmp_path / "bad.csv")


# --------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------


def write_parts(tmp_path, ev, edit):
    """Write ``ev`` as plain CSV via pandas (bypassing the writer's checks), after ``edit``."""
    import pandas as pd
    prefix = tmp_path / "event000000007"
    for part, table in ev.items():
        df = pd.DataFrame(table)
        df = edit.get(part, lambda d: d)(df)
        df.to_csv(f"{prefix}-{part}.csv", index=False)
    return prefix


def _drop(col):
    return lambda d: d.drop(columns=[col])


def _set(col, row, value):
    def f(d):
        d = d.copy()
        d[col] = d[col].astype(object)
        d.loc[row, col] = value
        return d
    return f


@pytest.mark.parametrize("edit, pattern", [
    ({"hits": _drop("z")}, r"event000000007-hits.csv: column 'z': missing \(required: hit_id"),
    ({"truth": _drop("weight")}, r"-truth.csv: column 'weight': missing"),
    ({"hits": _set("x", 2, float("nan"))},
     r"-hits.csv: column 'x': NaN/inf or empty values in 1 of 5 rows, first at line 4: nan"),
    ({"truth": _set("tz", 0, float("inf"))}, r"-truth.csv: column 'tz': NaN/inf"),
    ({"hits": _set("hit_id", 3, 2), "truth": _set("hit_id", 3, 2)},
     r"-hits.csv: column 'hit_id': duplicated hit ids in 1 of 5 rows, first at line 5: 2"),
    ({"truth": _set("hit_id", 4, 99)},
     r"-truth.csv: column 'hit_id': hit ids not in .*-hits.csv: 1 of 5 rows, first at line 6: 99"),
    ({"hits": _set("hit_id", 4, 99), "cells": _set("hit_id", 5, 99)},
     r"-truth.csv: column 'hit_id': hit ids not in .*-hits.csv"),
    ({"truth": _set("particle_id", 1, 8)},
     r"-truth.csv: column 'particle_id': particle ids \(other than 0 = noise\) not in "
     r".*-particles.csv: 1 of 5 rows, first at line 3: 8"),
    ({"cells": _set("hit_id", 0, 42)}, r"-cells.csv: column 'hit_id': hit ids not in"),
    ({"hits": _set("volume_id", 1, 8.5)},
     r"-hits.csv: column 'volume_id': non-integer or empty values .* 8.5"),
    ({"hits": _set("y", 1, "abc")}, r"-hits.csv: column 'y': non-numeric values .*'abc'"),
    ({"particles": _set("particle_id", 0, -7), "truth": _set("particle_id", 0, -7)},
     r"-particles.csv: column 'particle_id': negative values"),
    ({"particles": _set("particle_id", 1, 7)},
     r"-particles.csv: column 'particle_id': duplicated particle ids"),
    ({"truth": _set("weight", 2, -0.5)}, r"-truth.csv: column 'weight': negative weights"),
])
def test_load_errors_name_file_and_column(tmp_path, edit, pattern):
    prefix = write_parts(tmp_path, small_event(), edit)
    with pytest.raises(ValueError, match=pattern) as info:
        tm.load_event(prefix)
    assert "\n" not in str(info.value)


def test_file_errors(tmp_path):
    prefix = write_parts(tmp_path, small_event(), {})
    with pytest.raises(FileNotFoundError, match=r"event000000008-hits.csv.gz"):
        tm.load_event(tmp_path / "event000000008", parts=("hits",))
    with pytest.raises(ValueError, match="unknown part 'tracks'"):
        tm.load_event(prefix, parts=("tracks",))
    (tmp_path / "event000000007-hits.csv.gz").write_bytes(b"")
    with pytest.raises(ValueError, match="both .*hits.csv and .*hits.csv.gz exist"):
        tm.load_event(prefix, parts=("hits",))
    (tmp_path / "event000000007-hits.csv.gz").unlink()
    (tmp_path / "event000000007-hits.csv").write_text("")
    with pytest.raises(ValueError, match="hits.csv: not a readable CSV file"):
        tm.load_event(prefix, parts=("hits",))
    # parts read alone are not cross-checked against the others
    assert len(tm.load_event(prefix, parts=("truth",))["truth"]["hit_id"]) == 5


def test_writer_refuses_bad_events(tmp_path):
    ev = small_event()
    ev["hits"] = dict(ev["hits"], z=np.array([1, 2, np.nan, 4, 5], np.float32))
    with pytest.raises(ValueError, match=r"event000000009-hits: column 'z': NaN/inf"):
        tm.write_event(tmp_path / "event000000009", ev)
    assert not list(tmp_path.iterdir())                              # nothing written
    ev = small_event()
    ev["truth"] = dict(ev["truth"], particle_id=np.array([7, 7, 7, 3, 0], np.uint64))
    with pytest.raises(ValueError, match="particle ids .* not in"):
        tm.write_event(tmp_path / "event000000009", ev)


def test_detectors_errors(tmp_path, detectors):
    import pandas as pd
    df = pd.DataFrame({k: v[:3] for k, v in detectors.items()})
    df.drop(columns=["pitch_v"]).to_csv(tmp_path / "d1.csv")
    with pytest.raises(ValueError, match=r"d1.csv: column 'pitch_v': missing"):
        tm.load_detectors(tmp_path / "d1.csv")
    dup = df.copy()
    dup.loc[2, "module_id"] = dup.loc[1, "module_id"]
    dup.to_csv(tmp_path / "d2.csv", index=False)
    with pytest.raises(ValueError, match=r"d2.csv: column 'module_id': duplicated \(volume_id"):
        tm.load_detectors(tmp_path / "d2.csv")
