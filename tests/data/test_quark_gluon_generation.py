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
