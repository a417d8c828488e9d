"""Z(-> mu mu) + jets generation (hepjax.data.zjets_generation): the selection on a hand-made
event record, chunk determinism, and the physics of a small Pythia 8 sample (the dimuon mass
peaks at m_Z, opposite-charge muons, the cuts)."""
import math

import numpy as np
import pytest

pytest.importorskip("pythia8mc", reason="needs Pythia 8 (pip install 'hepjax[gen]')")
fastjet = pytest.importorskip("fastjet", reason="needs FastJet (pip install 'hepjax[gen]')")

from hepjax.data import zjets_generation as zg  # noqa: E402

M_Z = 91.1876


def _particle(pt, eta, phi, m=0.0):
    px, py, pz = pt * math.cos(phi), pt * math.sin(phi), pt * math.sinh(eta)
    return px, py, pz, math.sqrt(px * px + py * py + pz * pz + m * m)


def _dimuon(mass, pt=45.0):
    """Two back-to-back muons at eta = +-y with invariant mass ``mass`` (massless muons)."""
    y = math.acosh(mass / (2 * pt))            # m = 2 pT cosh(eta) for eta1 = -eta2, dphi = pi
    return [_particle(pt, y, 0.3), _particle(pt, -y, 0.3 + math.pi)]


def test_selection_on_a_handmade_record():
    rows = []   # (event, id, charge, px, py, pz, E)

    def add(ev, pid, q, p):
        rows.append((ev, pid, q, *p))

    jet = [_particle(pt, 0.5 + d, 2.0 + d, 0.14) for pt, d in ((30, 0.0), (15, 0.05), (8, -0.05))]
    for ev, (mass, q2, with_jet) in enumerate(((91.0, 1, True), (91.0, -1, True),
                                               (130.0, 1, True), (91.0, 1, False))):
        m1, m2 = _dimuon(mass)
        add(ev, 13, -1, m1)
        add(ev, -13 if q2 > 0 else 13, q2, m2)
        add(ev, 12, 0, _particle(25, 1.0, 1.0))                 # a neutrino: never clustered
        if with_jet:
            for p in jet:
                add(ev, 211, 1, p)
        add(ev, 22, 0, _particle(3, -1.0, -2.0))                 # soft: no jet
    a = np.array(rows, dtype=np.float64)
    rec = {"event": a[:, 0].astype(np.int64), "id": a[:, 1].astype(np.int64), "charge": a[:, 2],
           "px": a[:, 3], "py": a[:, 4], "pz": a[:, 5], "E": a[:, 6]}
    out = zg.select_events(rec, 4, fastjet)
    assert (out["n_fail_muons"], out["n_fail_window"], out["n_0jet"]) == (1, 1, 1)
    assert out["n_jets"].tolist() == [1]
    np.testing.assert_allclose(out["jets"][0, 0, 0], 53.0, rtol=0.01)   # the three pions
    assert out["jets"][0, 1:].sum() == 0
    np.testing.assert_allclose(out["mu"][0, :, 0], 45.0, rtol=1e-9)
    assert out["mu_charge"][0].tolist() == [-1, 1]


@pytest.fixture(scope="module")
def sample():
    return zg.generate(60, seed=5, events_per_chunk=120)


def test_chunks_are_deterministic(sample):
    again = zg.simulate_chunk(5, 1, 120)
    rows = sample["chunk"] == 1
    assert rows.any() and (sample["chunk"][:rows.argmax()] == 0).all()
    k = int(rows.sum())
    for key in ("mu", "mu_charge", "jets", "n_jets"):
        np.testing.assert_array_equal(sample[key][rows], again[key][:k])


def test_physics_of_the_sample(sample):
    mu, jets, n = sample["mu"], sample["jets"], sample["n_jets"]
    assert len(n) == 60 and int(sample["n_generated"]) == 120 * (sample["chunk"].max() + 1)
    assert (sample["mu_charge"].prod(1) == -1).all()                      # opposite charges
    assert (mu[:, :, 0] > 20).all() and (np.abs(mu[:, :, 1]) < 2.5).all()
    assert (mu[:, 0, 0] >= mu[:, 1, 0]).all()
    assert ((n >= 1) & (n <= 3)).all()
    present = np.arange(3)[None, :] < n[:, None]
    assert (jets[:, :, 0][present] > 20).all() and (jets[~present] == 0).all()
    assert (np.diff(np.where(present, jets[:, :, 0], 0), axis=1) <= 0).all()

    def p4(a):
        pt, eta, phi = a[..., 0], a[..., 1], a[..., 2]
        return np.stack([pt * np.cosh(eta), pt * np.cos(phi), pt * np.sin(phi),
                         pt * np.sinh(eta)], -1)
    ll = p4(mu[:, 0]) + p4(mu[:, 1])
    m = np.sqrt(ll[:, 0] ** 2 - (ll[:, 1:] ** 2).sum(1))
    assert ((m > 66) & (m < 116)).all()
    # the peak: maximum-likelihood Breit-Wigner (Cauchy, Gamma_Z = 2.5 GeV) position in 81-101
    core = m[(m > 81) & (m < 101)]
    grid = np.arange(86.0, 96.0, 0.01)
    loglik = -np.log1p(((core[None, :] - grid[:, None]) / 1.25) ** 2).sum(1)
    assert abs(grid[loglik.argmax()] - M_Z) < 1.0
    # the jets recoil against the dimuon system: pT balance holds on average within 30 %
    jet_sum = (p4(jets[:, :, :3]) * present[..., None]).sum(1)
    assert abs(np.median(np.hypot(jet_sum[:, 1], jet_sum[:, 2]) / np.hypot(ll[:, 1], ll[:, 2]))
               - 1.0) < 0.3
