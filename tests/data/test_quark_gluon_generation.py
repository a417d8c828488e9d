"""The quark/gluon recipe of the energyflow ``qg_jets`` sample (Komiske, Metodiev, Thaler,
"Energy Flow Networks: Deep Sets for Particle Jets", JHEP 01 (2019) 121): light quarks only
(the hard-process veto of c and b), the hardest R = 0.4 jet with 500 < pT < 550 GeV and
|y| < 1.7, and a cache named by the quark/gluon recipe version."""
import dataclasses

import numpy as np
import pytest

from hepjax.configs import defaults
from hepjax.data import generation, quark_gluon


def test_hard_process_veto_closed_form():
    # three events: a u quark (kept), a c quark (vetoed), a b quark only as an MPI parton
    # (status -31, kept) and a decayed Z (status -22, never a veto)
    rec = {"event": np.array([0, 0, 1, 1, 2, 2]),
           "status": np.array([-23, -22, -23, -23, -31, -23]),
           "id": np.array([2, 23, -4, 23, 5, 21])}
    offsets = np.array([0, 2, 4, 6])
    np.testing.assert_array_equal(generation.hard_process_vetoed(rec, offsets, (4, 5)),
                                  [False, True, False])
    assert not generation.hard_process_vetoed(rec, offsets, ()).any()


def test_recipe_and_cache_version():
    task = generation.TASKS["quark-gluon"]
    assert task.cuts.eta_max == 1.7 and task.cuts.use_rapidity and task.cuts.radius == 0.4
    assert (task.cuts.pt_min, task.cuts.pt_max, task.cuts.jets_per_event) == (500.0, 550.0, 1)
    assert [p.veto_outgoing for p in task.processes] == [(), (4, 5)]
    assert all(not p.veto_outgoing for p in generation.TASKS["top-tagging"].processes)
    name = quark_gluon.cache_path(defaults.quark_gluon_data()).name
    assert f"recipe{generation.QUARK_GLUON_RECIPE_VERSION}_" in name
    assert generation.QUARK_GLUON_RECIPE_VERSION == 3


def test_quark_jets_are_light_and_in_the_window(monkeypatch):
    """Seed 7, 30 Z + quark events: the veto removes exactly the jets of events whose
    hard-process quark is c or b (one here), and every kept jet passes the cuts."""
    pytest.importorskip("pythia8mc")
    pytest.importorskip("fastjet")
    records = []
    real = generation._flat_event_record

    def spy(events, charge_of):
        out = real(events, charge_of)
        records.append(out)
        return out

    monkeypatch.setattr(generation, "_flat_event_record", spy)
    task = generation.TASKS["quark-gluon"]
    free = dataclasses.replace(task, processes=(
        task.processes[0], dataclasses.replace(task.processes[1], veto_outgoing=())))
    kept = generation.simulate_chunk(task, 1, 7, 0, "none", events_per_chunk=30)
    every = generation.simulate_chunk(free, 1, 7, 0, "none", events_per_chunk=30)
    rec, _ = records[0]
    hard = (rec["status"] == -23) & (np.abs(rec["id"]) <= 5)
    flavour = np.zeros(30, int)
    flavour[rec["event"][hard]] = np.abs(rec["id"][hard])
    assert np.all(np.isin(flavour, (1, 2, 3, 4, 5)))   # one hard-process quark per event
    heavy = np.isin(flavour, (4, 5))
    assert set(every["event"]) - set(kept["event"]) == set(np.flatnonzero(heavy)) & set(every["event"])
    assert len(every["event"]) > len(kept["event"]) > 0
    assert not heavy[kept["event"]].any()
    light = ~heavy[every["event"]]
    np.testing.assert_array_equal(every["p4"][light], kept["p4"])   # the same jets otherwise
    jet = kept["jet_p4"].astype(np.float64)
    pt = np.hypot(jet[:, 1], jet[:, 2])
    y = 0.5 * np.log((jet[:, 0] + jet[:, 3]) / (jet[:, 0] - jet[:, 3]))
    assert np.all((pt > 500) & (pt < 550)) and np.all(np.abs(y) < 1.7)


def _fake_pool(monkeypatch, tmp_path):
    """``fill_chunk_pool`` on a fake simulator: class 0 makes 2-4 jets a chunk (as gluons, fewer
    per chunk), class 1 makes 5; each chunk is written where the real ``_chunk_job`` writes it."""
    calls = []

    def fake_job(args, chunk_file=None):
        k, chunk = args[1], args[3]
        calls.append((k, chunk))
        n = 2 + chunk % 3 if k == 0 else 5
        out = {"n_constituents": np.full(n, 10 * k + chunk)}
        np.savez(chunk_file, **out)
        return out

    monkeypatch.setattr(generation, "_chunk_job", fake_job)
    cfg = defaults.quark_gluon_data(cache_dir=str(tmp_path))
    return cfg, quark_gluon.chunk_pool(cfg), calls


@pytest.mark.parametrize("workers", [1, 3])
def test_fill_chunk_pool_balances_classes_and_resumes(monkeypatch, tmp_path, workers):
    import concurrent.futures

    cfg, pool, calls = _fake_pool(monkeypatch, tmp_path)
    executor = concurrent.futures.ThreadPoolExecutor(workers) if workers > 1 else None
    n = quark_gluon.fill_chunk_pool(cfg, 60.0, 40, workers=workers, executor=executor)
    assert n == 40   # both classes reached 20 jets; the returned size is exactly covered
    jets = [quark_gluon._pool_jets(pool, k) for k in (0, 1)]
    # the class with fewer jets per chunk got more chunks: neither class overshoots by more
    # than the chunks that were in flight when the other reached its target
    assert 20 <= min(jets) and max(jets) <= 20 + 5 * workers
    assert sum(k == 0 for k, _ in calls) > sum(k == 1 for k, _ in calls)
    # a killed run's gap (chunk 1 of class 0 lost, a later chunk finished, so the class's jets
    # still reach the target) is simulated first; only class 0 again
    last = max(int(p.stem[-7:]) for p in pool.glob("process0_chunk*.npz"))
    generation._chunk_job((None, 0, None, last + 1), str(pool / f"process0_chunk{last + 1:07d}.npz"))
    (pool / "process0_chunk0000001.npz").unlink()
    calls.clear()
    assert quark_gluon._pool_jets(pool, 0) == 2
    n = quark_gluon.fill_chunk_pool(cfg, 60.0, 40, workers=workers, executor=executor)
    assert calls[0] == (0, 1) and {k for k, _ in calls} == {0} and n == 40
    jets = [quark_gluon._pool_jets(pool, k) for k in (0, 1)]
    # no time: nothing simulated, the covered size returned
    calls.clear()
    assert quark_gluon.fill_chunk_pool(cfg, 0.0, 10_000, workers=workers, executor=executor) == 2 * min(jets)
    assert calls == []
    # ... and with a gap only the contiguous chunks 0, 1, ... count
    (pool / "process1_chunk0000001.npz").unlink()
    assert quark_gluon.fill_chunk_pool(cfg, 0.0, 10_000, workers=workers, executor=executor) == 2 * 5
    assert calls == []
