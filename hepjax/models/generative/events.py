"""Event generation with a conditional normalising flow: Z(-> mu mu) + {1, 2, 3} jets
(issue 27, item 4), after Butter, Heimel, Hummerich, Krebs, Plehn, Rousselot, Vent,
"Generative networks for precision enthusiasts" (arXiv:2110.13632).

Representation (``EventPreprocessor``) of an event with n jets (``hepjax.data.zjets_generation``):

* the azimuthal symmetry is removed: every phi is measured from the leading muon's and wrapped
  into [0, 2 pi) (``rotate``), so the leading muon's phi (always 0) is dropped; at generation a
  global phi_mu1 is drawn uniformly and added back (``unrotate``). The recoiling jets and the
  second muon sit near pi, in the middle of the interval, away from the wrap.
* per object pT -> log(pT - pT_min) (pT_min the selection threshold, 20 GeV for muons and jets,
  as in the anchor: the steep threshold becomes a smooth exponential tail), eta ->
  artanh(eta / eta_max) (2.5 for muons, 5 for jets: the acceptance's hard edges go to
  infinity, so generated events always pass them), jet mass -> log(1 GeV + m).
* 17 columns: mu1 (log pT, eta'), mu2 (log pT, eta', phi), then jets 1-3 (log pT, eta', phi,
  log m); each column standardised on the training events that have it.

Models (``EventFlow``):

* ``"per-n"`` (the experiment's flows, in every representation): one unconditional ``ConditionalFlow`` per
  multiplicity n over its own 5 + 4n columns (9, 13, 17 dimensions); the multiplicity is the
  choice of flow, p(x | n), and p(n) is taken from the sample to be matched (as the anchor's
  per-multiplicity networks).
* ``"padded"``: one ``ConditionalFlow`` over all 17 columns conditioned on the one-hot
  multiplicity, the columns of absent jets padded with fresh N(0, 1) noise (drawn in the loss
  at every step, ``padded_flow_loss``): it learns p(x_present | n) times an independent
  N(0, 1), and sampling drops the padded columns. One network (one compilation) shares the
  muon statistics of all multiplicities, but in the experiment it failed for the 1-jet events:
  the coupling conditioners take the 12 noise columns as inputs, the noise leaks into the
  transforms of the real columns and broadens them (experiments/generative/README.md).

Generated events are then put in the truth's conventions: muons and jets re-sorted by pT (a
flow does not know the ordering; ``sample_events`` counts how often it had to swap).

The dimuon representation (``DimuonPreprocessor``, the experiment's default): in the muon
columns above the Z peak is a narrow ridge in a five-dimensional correlation (m_mumu of two
massless muons is sqrt(2 pT1 pT2 (cosh d_eta - cos d_phi))), which the flow smears (W1 of m_mumu
10x the truth-vs-truth scale, 2 % of the events outside the 66-116 GeV window). As physicists
parametrise a resonance decay, the muon pair is represented instead by the dimuon system and
the decay angles, so that the line shape is one learned marginal:

* log pT_mumu, the rapidity y_mumu, and m_mumu mapped to an unbounded variable over the
  selection window: u = the relativistic Breit-Wigner CDF in m^2 (m_Z 91.1876 GeV,
  Gamma_Z 2.4952 GeV, PDG) normalised on 66-116 GeV, then logit(u). The CDF flattens the peak
  (a pure Breit-Wigner becomes uniform in u, logistic after the logit); the logit sends the
  window's edges to infinity, so every generated m_mumu is inside the window.
* the Collins-Soper angles of the negative muon (Collins, Soper, Phys. Rev. D 16 (1977) 2219):
  in the dimuon rest frame z bisects the beam direction and the negative of the other beam's,
  x is in the beams' plane along the dimuon pT (no flip by the sign of y_mumu, so the frame is a
  smooth function of the dimuon momentum), cos theta* -> artanh(cos theta*) and
  phi* in [0, 2 pi) -> logit(phi* / 2 pi).
* every phi is measured from the dimuon's phi (instead of the leading muon's), jets as above.

The muons are reconstructed exactly (massless, as in the observables): mu- = (m/2)(1, n) in the
rest frame, boosted back; mu+ = p_mumu - mu-. The muon acceptance (pT > 20 GeV, |eta| < 2.5) is
no longer built into the representation, so generated events are passed through the truth's
selection (``passes_selection``: muon cuts, window, Delta R_jj >= 0.4) and the failing ones
re-drawn (``sample_event_flow(..., reject=True)``, which reports the rejection fraction): the
truth sample passed the same selection, so this is the same conditional distribution.
The muons-plus-mass representation (``MassPreprocessor``) keeps the muons' columns but replaces
the leading muon's pT by the same Breit-Wigner logit of m_mumu and solves the pT back from
m^2 = 2 pT1 pT2 (cosh d_eta - cos d_phi): the acceptance stays built in, but the solved pT
carries the other columns' errors (experiments/generative/README.md compares the three).
Butter et al. fixed the same failure differently, with a maximum-mean-discrepancy (MMD) loss on
m_mumu added to the likelihood loss (arXiv:2110.13632, their section on the Z-peak).
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from hepjax.models.generative.flows import ConditionalFlow
from hepjax.physics import numpy_kinematics as npkin

Array = jax.Array

__all__ = ["N_MAX_JETS", "COLUMNS", "DIMUON_COLUMNS", "MASS_COLUMNS", "MassPreprocessor",
           "bw_cdf", "bw_cdf_inverse", "DimuonPreprocessor", "collins_soper",
           "dimuon_decay", "passes_selection", "make_preprocessor", "rotate", "unrotate", "EventPreprocessor", "padded_flow_loss",
           "EventFlow", "sample_event_flow", "column_mask", "one_hot", "sort_objects",
           "make_flow", "sample_events", "observables", "OBSERVABLES"]

N_MAX_JETS = 3
MU_PT_MIN, MU_ETA_MAX = 20.0, 2.5
JET_PT_MIN, JET_ETA_MAX = 20.0, 5.0
JET_RADIUS, MLL_WINDOW = 0.4, (66.0, 116.0)
M_Z, GAMMA_Z = 91.1876, 2.4952
_JET_COLUMNS = tuple(f"j{i}_{v}" for i in (1, 2, 3) for v in ("logpt", "eta", "phi", "logm"))
COLUMNS = ("mu1_logpt", "mu1_eta", "mu2_logpt", "mu2_eta", "mu2_phi") + _JET_COLUMNS
MASS_COLUMNS = ("mu2_logpt", "mu1_eta", "mu2_eta", "mu2_phi", "ll_logit_bw") + _JET_COLUMNS
DIMUON_COLUMNS = ("ll_logpt", "ll_y", "ll_logit_bw", "atanh_cos_theta_cs",
                  "logit_phi_cs") + _JET_COLUMNS
_TWO_PI = 2.0 * math.pi


def _wrap_0_2pi(phi):
    return np.mod(phi, _TWO_PI)


def _wrap_pm_pi(phi):
    return np.mod(np.asarray(phi) + math.pi, _TWO_PI) - math.pi


def rotate(mu: np.ndarray, jets: np.ndarray, n_jets: np.ndarray):
    """Removes the azimuthal symmetry: returns (mu', jets', phi_mu1) with every phi measured
    from the leading muon's and wrapped into [0, 2 pi) (mu'[:, 0, 2] == 0; padded jets keep
    phi = 0)."""
    mu, jets = np.array(mu, np.float64), np.array(jets, np.float64)
    phi0 = mu[:, 0, 2].copy()
    mu[:, :, 2] = _wrap_0_2pi(mu[:, :, 2] - phi0[:, None])
    mu[:, 0, 2] = 0.0
    present = np.arange(jets.shape[1])[None, :] < np.asarray(n_jets)[:, None]
    jets[:, :, 2] = np.where(present, _wrap_0_2pi(jets[:, :, 2] - phi0[:, None]), 0.0)
    return mu, jets, phi0


def unrotate(mu: np.ndarray, jets: np.ndarray, n_jets: np.ndarray, phi0: np.ndarray):
    """The inverse of :func:`rotate`: adds phi0 to every phi and wraps into [-pi, pi)."""
    mu, jets = np.array(mu, np.float64), np.array(jets, np.float64)
    mu[:, :, 2] = _wrap_pm_pi(mu[:, :, 2] + phi0[:, None])
    present = np.arange(jets.shape[1])[None, :] < np.asarray(n_jets)[:, None]
    jets[:, :, 2] = np.where(present, _wrap_pm_pi(jets[:, :, 2] + phi0[:, None]), 0.0)
    return mu, jets


def _check(mu, jets, n_jets):
    mu, jets, n_jets = np.asarray(mu), np.asarray(jets), np.asarray(n_jets)
    if mu.ndim != 3 or mu.shape[1:] != (2, 3):
        raise ValueError(f"mu: expected shape (N, 2, 3) (pT, eta, phi of two muons), got "
                         f"{mu.shape}")
    if jets.ndim != 3 or jets.shape[1:] != (N_MAX_JETS, 4):
        raise ValueError(f"jets: expected shape (N, {N_MAX_JETS}, 4) (pT, eta, phi, m), got "
                         f"{jets.shape}")
    if n_jets.shape != (len(mu),) or len(jets) != len(mu):
        raise ValueError(f"n_jets: expected shape ({len(mu)},) matching mu and jets, got "
                         f"{n_jets.shape} (jets {jets.shape})")
    if len(n_jets) and (n_jets.min() < 1 or n_jets.max() > N_MAX_JETS):
        raise ValueError(f"n_jets: expected values in 1..{N_MAX_JETS}, got "
                         f"{int(n_jets.min())}..{int(n_jets.max())}")
    return mu, jets, n_jets.astype(np.int64)


def column_mask(n_jets: np.ndarray) -> np.ndarray:
    """(N, 17) bool: which columns an event with n jets has."""
    n_jets = np.asarray(n_jets)
    jet_present = np.arange(N_MAX_JETS)[None, :] < n_jets[:, None]
    return np.concatenate([np.ones((len(n_jets), 5), bool), np.repeat(jet_present, 4, 1)], 1)


def _jet_raw(jets_r):
    cols = []
    for j in range(N_MAX_JETS):
        cols += [np.log(np.maximum(jets_r[:, j, 0] - JET_PT_MIN, 1e-12)),
                 np.arctanh(np.clip(jets_r[:, j, 1] / JET_ETA_MAX, -1 + 1e-12, 1 - 1e-12)),
                 jets_r[:, j, 2], np.log1p(np.maximum(jets_r[:, j, 3], 0.0))]
    return cols


def _jet_unraw(x, n_jets):
    jets = np.zeros((len(x), N_MAX_JETS, 4))
    for j in range(N_MAX_JETS):
        c = 5 + 4 * j
        present = j < n_jets
        jets[:, j, 0] = np.where(present, JET_PT_MIN + np.exp(x[:, c]), 0.0)
        jets[:, j, 1] = np.where(present, JET_ETA_MAX * np.tanh(x[:, c + 1]), 0.0)
        jets[:, j, 2] = np.where(present, x[:, c + 2], 0.0)
        jets[:, j, 3] = np.where(present, np.maximum(np.expm1(x[:, c + 3]), 0.0), 0.0)
    return jets


class EventPreprocessor:
    """Events <-> standardised 17-column vectors (module docstring). ``fit`` on training events,
    then ``transform`` (-> x (N, 17) with NaN in absent columns, mask, condition, phi_mu1) and
    ``inverse`` (x, n_jets, phi_mu1 -> mu, jets). ``charge`` (N, 2) is accepted everywhere and
    ignored here (the dimuon representation needs it)."""

    columns = COLUMNS
    representation = "muons"

    def __init__(self):
        self.mean = None
        self.std = None

    def raw(self, mu, jets, n_jets, charge=None):
        """Unstandardised columns (NaN where absent) and the leading muon's phi."""
        mu, jets, n_jets = _check(mu, jets, n_jets)
        mu_r, jets_r, phi0 = rotate(mu, jets, n_jets)
        eps = 1e-12
        cols = [np.log(np.maximum(mu_r[:, 0, 0] - MU_PT_MIN, eps)),
                np.arctanh(np.clip(mu_r[:, 0, 1] / MU_ETA_MAX, -1 + 1e-12, 1 - 1e-12)),
                np.log(np.maximum(mu_r[:, 1, 0] - MU_PT_MIN, eps)),
                np.arctanh(np.clip(mu_r[:, 1, 1] / MU_ETA_MAX, -1 + 1e-12, 1 - 1e-12)),
                mu_r[:, 1, 2]] + _jet_raw(jets_r)
        x = np.stack(cols, 1)
        mask = column_mask(n_jets)
        return np.where(mask, x, np.nan), mask, phi0

    def fit(self, mu, jets, n_jets, charge=None) -> "EventPreprocessor":
        x, mask, _ = self.raw(mu, jets, n_jets, charge)
        missing = [self.columns[i] for i in np.flatnonzero(~mask.any(0))]
        if missing:
            raise ValueError(f"{type(self).__name__}.fit: no training event has {missing}; "
                             f"every multiplicity 1..{N_MAX_JETS} must be present")
        self.mean = np.nanmean(x, 0)
        self.std = np.maximum(np.nanstd(x, 0), 1e-6)
        return self

    def transform(self, mu, jets, n_jets, charge=None):
        """(x (N, 17) standardised, NaN where absent; mask (N, 17); cond (N, 3) one-hot of n;
        phi0 (N,), the azimuth the event was rotated by)."""
        if self.mean is None:
            raise RuntimeError(f"{type(self).__name__}.transform before fit")
        x, mask, phi0 = self.raw(mu, jets, n_jets, charge)
        n_jets = np.asarray(n_jets)
        return (x - self.mean) / self.std, mask, one_hot(n_jets), phi0

    def unraw(self, x, n_jets, phi0):
        """Unstandardised columns -> (mu, jets) in the lab frame."""
        n = len(x)
        n_jets = np.asarray(n_jets)
        mu = np.zeros((n, 2, 3))
        mu[:, 0, 0] = MU_PT_MIN + np.exp(x[:, 0])
        mu[:, 0, 1] = MU_ETA_MAX * np.tanh(x[:, 1])
        mu[:, 1, 0] = MU_PT_MIN + np.exp(x[:, 2])
        mu[:, 1, 1] = MU_ETA_MAX * np.tanh(x[:, 3])
        mu[:, 1, 2] = x[:, 4]
        return unrotate(mu, _jet_unraw(x, n_jets), n_jets, np.asarray(phi0, np.float64))

    def inverse(self, x, n_jets, phi0):
        """Standardised columns -> (mu (N, 2, 3), jets (N, 3, 4)) in the lab frame (phi of the
        leading muon = phi0; absent jets zero). Does not re-sort (``sort_objects`` does)."""
        return self.unraw(np.asarray(x, np.float64) * self.std + self.mean, n_jets, phi0)

    def state(self) -> dict:
        return {"representation": self.representation, "mean": self.mean.tolist(),
                "std": self.std.tolist(), "columns": list(self.columns)}


# ------------------------------------------------------------------ the dimuon representation

def _boost(p, beta):
    """Lorentz boost of four-vectors p (..., 4) = (E, px, py, pz) into the frame moving with
    velocity beta (..., 3)."""
    b2 = np.sum(beta ** 2, -1)
    gamma = 1.0 / np.sqrt(1.0 - b2)
    bp = np.sum(beta * p[..., 1:], -1)
    coef = np.where(b2 > 0, (gamma - 1.0) / np.where(b2 > 0, b2, 1.0), 0.0) * bp - gamma * p[..., 0]
    return np.concatenate([(gamma * (p[..., 0] - bp))[..., None],
                           p[..., 1:] + coef[..., None] * beta], -1)


def _cs_axes(p_ll):
    """The Collins-Soper axes (x, y, z), each (N, 3), in the rest frame of p_ll (N, 4)."""
    beta = p_ll[:, 1:] / p_ll[:, :1]
    one = np.ones(len(p_ll))
    zero = np.zeros(len(p_ll))
    a = _boost(np.stack([one, zero, zero, one], -1), beta)[:, 1:]
    b = _boost(np.stack([one, zero, zero, -one], -1), beta)[:, 1:]
    a /= np.linalg.norm(a, axis=-1, keepdims=True)
    b /= np.linalg.norm(b, axis=-1, keepdims=True)
    z = a - b
    z /= np.linalg.norm(z, axis=-1, keepdims=True)
    x = -(a + b)
    nx = np.linalg.norm(x, axis=-1, keepdims=True)
    # pT_mumu = 0 (never in these samples: a >= 20 GeV jet recoils): the lab x axis
    x = np.where(nx > 1e-12, x / np.maximum(nx, 1e-300), np.array([1.0, 0.0, 0.0]))
    y = np.cross(z, x)
    return x, y, z


def collins_soper(p_minus, p_plus):
    """(cos theta*, phi* in [0, 2 pi)) of the negative lepton p_minus (N, 4) in the
    Collins-Soper frame of p_minus + p_plus (module docstring)."""
    p_ll = p_minus + p_plus
    x, y, z = _cs_axes(p_ll)
    q = _boost(p_minus, p_ll[:, 1:] / p_ll[:, :1])[:, 1:]
    q = q / np.linalg.norm(q, axis=-1, keepdims=True)
    cos_t = np.clip(np.sum(q * z, -1), -1.0, 1.0)
    phi = np.mod(np.arctan2(np.sum(q * y, -1), np.sum(q * x, -1)), _TWO_PI)
    return cos_t, phi


def dimuon_decay(pt, y, phi, m, cos_t, phi_cs):
    """The two massless muons (mu-, mu+), each (N, 4) = (E, px, py, pz), of a dimuon system with
    transverse momentum pt, rapidity y, azimuth phi and mass m whose negative muon has the
    Collins-Soper angles (cos_t, phi_cs): the inverse of :func:`collins_soper`."""
    mt = np.sqrt(m ** 2 + pt ** 2)
    p_ll = np.stack([mt * np.cosh(y), pt * np.cos(phi), pt * np.sin(phi), mt * np.sinh(y)], -1)
    x, y_ax, z = _cs_axes(p_ll)
    sin_t = np.sqrt(np.maximum(1.0 - cos_t ** 2, 0.0))
    n = ((sin_t * np.cos(phi_cs))[:, None] * x + (sin_t * np.sin(phi_cs))[:, None] * y_ax
         + cos_t[:, None] * z)
    q = 0.5 * m[:, None] * np.concatenate([np.ones((len(m), 1)), n], -1)
    p_minus = _boost(q, -p_ll[:, 1:] / p_ll[:, :1])
    return p_minus, p_ll - p_minus


def _bw_atan(m):
    return np.arctan((np.asarray(m) ** 2 - M_Z ** 2) / (M_Z * GAMMA_Z))


def bw_cdf(m):
    """The relativistic Breit-Wigner CDF in m^2, normalised on the selection window."""
    lo, hi = _bw_atan(MLL_WINDOW[0]), _bw_atan(MLL_WINDOW[1])
    return (_bw_atan(m) - lo) / (hi - lo)


def bw_cdf_inverse(u):
    lo, hi = _bw_atan(MLL_WINDOW[0]), _bw_atan(MLL_WINDOW[1])
    return np.sqrt(M_Z ** 2 + M_Z * GAMMA_Z * np.tan(lo + np.asarray(u) * (hi - lo)))


def _logit(u, eps=1e-15):
    u = np.clip(u, eps, 1 - eps)
    return np.log(u) - np.log1p(-u)


def _expit(t):
    return 0.5 * (1.0 + np.tanh(0.5 * np.asarray(t)))


def _pt_eta_phi(p):
    pt = npkin.pt(p)
    return np.stack([pt, npkin.eta(p, pt), npkin.phi(p, pt)], -1)


class DimuonPreprocessor(EventPreprocessor):
    """Events <-> standardised columns of the dimuon representation (module docstring): log
    pT_mumu, y_mumu, logit of the Breit-Wigner CDF of m_mumu, artanh cos theta*_CS, logit of
    phi*_CS / 2 pi, then the jets as in ``EventPreprocessor`` with phi measured from the dimuon's.
    ``charge`` (N, 2) is required (which muon is negative); ``inverse`` returns mu[:, 0] = mu-,
    mu[:, 1] = mu+ (not pT-ordered)."""

    columns = DIMUON_COLUMNS
    representation = "dimuon"

    def raw(self, mu, jets, n_jets, charge=None):
        mu, jets, n_jets = _check(mu, jets, n_jets)
        if charge is None:
            raise ValueError("DimuonPreprocessor: charge (N, 2) of the muons is required")
        charge = np.asarray(charge)
        if charge.shape != (len(mu), 2) or not np.all(charge[:, 0] * charge[:, 1] < 0):
            raise ValueError(f"charge: expected shape ({len(mu)}, 2) with opposite charges per "
                             f"event, got {charge.shape}")
        p = _p4(mu[..., 0], mu[..., 1], mu[..., 2])
        neg = charge[:, 0] < 0
        p_minus = np.where(neg[:, None], p[:, 0], p[:, 1])
        p_plus = np.where(neg[:, None], p[:, 1], p[:, 0])
        p_ll = p_minus + p_plus
        pt_ll = np.hypot(p_ll[:, 1], p_ll[:, 2])
        phi0 = np.arctan2(p_ll[:, 2], p_ll[:, 1])
        y_ll = 0.5 * np.log((p_ll[:, 0] + p_ll[:, 3]) / (p_ll[:, 0] - p_ll[:, 3]))
        cos_t, phi_cs = collins_soper(p_minus, p_plus)
        present = np.arange(N_MAX_JETS)[None, :] < n_jets[:, None]
        jets_r = np.array(jets, np.float64)
        jets_r[:, :, 2] = np.where(present, _wrap_0_2pi(jets_r[:, :, 2] - phi0[:, None]), 0.0)
        cols = [np.log(np.maximum(pt_ll, 1e-12)), y_ll, _logit(bw_cdf(npkin.mass(p_ll))),
                np.arctanh(np.clip(cos_t, -1 + 1e-15, 1 - 1e-15)),
                _logit(phi_cs / _TWO_PI)] + _jet_raw(jets_r)
        x = np.stack(cols, 1)
        mask = column_mask(n_jets)
        return np.where(mask, x, np.nan), mask, phi0

    def unraw(self, x, n_jets, phi0):
        n_jets = np.asarray(n_jets)
        phi0 = np.asarray(phi0, np.float64)
        p_minus, p_plus = dimuon_decay(np.exp(x[:, 0]), x[:, 1], phi0,
                                       bw_cdf_inverse(_expit(x[:, 2])), np.tanh(x[:, 3]),
                                       _TWO_PI * _expit(x[:, 4]))
        mu = np.stack([_pt_eta_phi(p_minus), _pt_eta_phi(p_plus)], 1)
        jets = _jet_unraw(x, n_jets)
        present = np.arange(N_MAX_JETS)[None, :] < n_jets[:, None]
        jets[:, :, 2] = np.where(present, _wrap_pm_pi(jets[:, :, 2] + phi0[:, None]), 0.0)
        return mu, jets


class MassPreprocessor(EventPreprocessor):
    """Events <-> standardised columns of the muons-plus-mass representation (module docstring):
    the subleading muon's log(pT - 20 GeV), both muons' artanh(eta / 2.5), the subleading muon's
    phi measured from the leading muon's, and the logit of the Breit-Wigner CDF of m_mumu; the
    leading muon's pT is solved from the mass of two massless muons,
    m^2 = 2 pT1 pT2 (cosh(eta1 - eta2) - cos(phi1 - phi2)). Jets as in ``EventPreprocessor``."""

    columns = MASS_COLUMNS
    representation = "mass"

    def raw(self, mu, jets, n_jets, charge=None):
        mu, jets, n_jets = _check(mu, jets, n_jets)
        mu_r, jets_r, phi0 = rotate(mu, jets, n_jets)
        m = npkin.mass(_p4(mu[:, 0, 0], mu[:, 0, 1], mu[:, 0, 2])
                  + _p4(mu[:, 1, 0], mu[:, 1, 1], mu[:, 1, 2]))
        cols = [np.log(np.maximum(mu_r[:, 1, 0] - MU_PT_MIN, 1e-12)),
                np.arctanh(np.clip(mu_r[:, 0, 1] / MU_ETA_MAX, -1 + 1e-12, 1 - 1e-12)),
                np.arctanh(np.clip(mu_r[:, 1, 1] / MU_ETA_MAX, -1 + 1e-12, 1 - 1e-12)),
                mu_r[:, 1, 2], _logit(bw_cdf(m))] + _jet_raw(jets_r)
        x = np.stack(cols, 1)
        mask = column_mask(n_jets)
        return np.where(mask, x, np.nan), mask, phi0

    def unraw(self, x, n_jets, phi0):
        n_jets = np.asarray(n_jets)
        mu = np.zeros((len(x), 2, 3))
        pt2 = MU_PT_MIN + np.exp(x[:, 0])
        eta1, eta2 = MU_ETA_MAX * np.tanh(x[:, 1]), MU_ETA_MAX * np.tanh(x[:, 2])
        m = bw_cdf_inverse(_expit(x[:, 4]))
        den = 2.0 * pt2 * (np.cosh(eta1 - eta2) - np.cos(x[:, 3]))
        mu[:, 0, 0] = m ** 2 / np.maximum(den, 1e-300)
        mu[:, 0, 1], mu[:, 1, 0], mu[:, 1, 1], mu[:, 1, 2] = eta1, pt2, eta2, x[:, 3]
        return unrotate(mu, _jet_unraw(x, n_jets), n_jets, np.asarray(phi0, np.float64))


def make_preprocessor(representation: str) -> EventPreprocessor:
    """``"muons"`` (``EventPreprocessor``), ``"dimuon"`` (``DimuonPreprocessor``) or ``"mass"``
    (``MassPreprocessor``)."""
    kinds = {"muons": EventPreprocessor, "dimuon": DimuonPreprocessor, "mass": MassPreprocessor}
    if representation not in kinds:
        raise ValueError(f"representation {representation!r}: use one of {sorted(kinds)}")
    return kinds[representation]()


def passes_selection(mu, jets, n_jets) -> np.ndarray:
    """(N,) bool: the truth sample's selection (``hepjax.data.zjets_generation``) on generated
    events: both muons pT > 20 GeV and |eta| < 2.5, 66 < m_mumu < 116 GeV, every present jet
    pT > 20 GeV and |eta| < 5, and every pair of jets Delta R >= 0.4 (anti-kT R = 0.4: when a
    jet is declared final every other pseudojet is at least R away; all 25,000 events of the
    cpu samples pass it)."""
    mu, jets, n_jets = np.asarray(mu), np.asarray(jets), np.asarray(n_jets)
    ok = np.all((mu[:, :, 0] > MU_PT_MIN) & (np.abs(mu[:, :, 1]) < MU_ETA_MAX), 1)
    m = npkin.mass(_p4(mu[:, 0, 0], mu[:, 0, 1], mu[:, 0, 2]) + _p4(mu[:, 1, 0], mu[:, 1, 1],
                                                                mu[:, 1, 2]))
    ok &= (m > MLL_WINDOW[0]) & (m < MLL_WINDOW[1])
    present = np.arange(N_MAX_JETS)[None, :] < n_jets[:, None]
    ok &= np.all(~present | ((jets[:, :, 0] > JET_PT_MIN) & (np.abs(jets[:, :, 1]) < JET_ETA_MAX)),
                 1)
    for a in range(N_MAX_JETS):
        for b in range(a + 1, N_MAX_JETS):
            dr = np.hypot(jets[:, a, 1] - jets[:, b, 1], _dphi(jets[:, a, 2], jets[:, b, 2]))
            ok &= (n_jets <= b) | (dr >= JET_RADIUS)
    return ok


def one_hot(n_jets) -> np.ndarray:
    n_jets = np.asarray(n_jets)
    return (n_jets[:, None] == np.arange(1, N_MAX_JETS + 1)[None, :]).astype(np.float32)


def sort_objects(mu, jets, n_jets):
    """Re-sorts the muons and the present jets by pT (descending). Returns (mu, jets,
    fraction of events whose muons were swapped, fraction whose jets were reordered)."""
    mu, jets = np.array(mu), np.array(jets)
    swap = mu[:, 1, 0] > mu[:, 0, 0]
    mu[swap] = mu[swap][:, ::-1]
    key = np.where(np.arange(N_MAX_JETS)[None, :] < np.asarray(n_jets)[:, None],
                   -jets[:, :, 0], np.inf)
    order = np.argsort(key, 1, kind="stable")
    reordered = (order != np.arange(N_MAX_JETS)[None, :]).any(1)
    jets = np.take_along_axis(jets, order[:, :, None], 1)
    return mu, jets, float(swap.mean()) if len(mu) else 0.0, \
        float(reordered.mean()) if len(mu) else 0.0


def padded_flow_loss(model: ConditionalFlow, batch, key) -> Array:
    """Mean NLL per dimension of a batch (x with NaN in absent columns, mask, cond): the absent
    columns are replaced by fresh N(0, 1) noise from ``key`` (module docstring)."""
    x, mask, cond = batch
    noise = jax.random.normal(key, x.shape, x.dtype)
    x = jnp.where(mask, jnp.nan_to_num(x), noise)
    return -jnp.mean(model.log_prob(x, cond)) / x.shape[-1]


def make_flow(*, n_layers=8, kind="spline", hidden=(128, 128), bins=8, bound=4.0, seed=0):
    from flax import nnx
    return ConditionalFlow(len(COLUMNS), N_MAX_JETS, n_layers=n_layers, kind=kind,
                           hidden=tuple(hidden), bins=bins, bound=bound, perm_seed=seed,
                           rngs=nnx.Rngs(seed))


def sample_events(sampler, key, n_jets, pre: EventPreprocessor, phi_seed: int):
    """Generated events for the multiplicities ``n_jets`` (N,): the flow's samples (``sampler``
    from ``training.make_sampler``) mapped back, a uniform phi_mu1 from ``phi_seed``, objects
    re-sorted by pT. Returns (events dict like the truth's, info dict)."""
    n_jets = np.asarray(n_jets, np.int64)
    x = np.asarray(sampler(key, jnp.asarray(one_hot(n_jets))), np.float64)
    phi0 = np.random.default_rng(phi_seed).uniform(-math.pi, math.pi, len(n_jets))
    mu, jets = pre.inverse(x, n_jets, phi0)
    mu, jets, f_mu, f_j = sort_objects(mu, jets, n_jets)
    return ({"mu": mu, "jets": jets, "n_jets": n_jets},
            {"frac_muons_swapped": f_mu, "frac_jets_reordered": f_j})


# ------------------------------------------------------------------------------ observables

def _p4(pt, eta, phi, m=0.0):
    """(E, px, py, pz) from pT, pseudorapidity eta, phi and mass."""
    pz = pt * np.sinh(eta)
    e = np.sqrt(pt ** 2 + pz ** 2 + np.asarray(m) ** 2)
    return np.stack([e, pt * np.cos(phi), pt * np.sin(phi), pz], -1)


def _dphi(a, b):
    return np.abs(npkin.delta_phi(np.asarray(a), np.asarray(b)))


OBSERVABLES = ("pT_mu1", "pT_mu2", "eta_mu1", "m_mumu", "pT_mumu", "dphi_mumu", "pT_j1", "eta_j1",
               "m_j1", "pT_j2", "eta_j2", "dR_j1j2", "dphi_j1j2", "m_j1j2", "pT_j3", "eta_j3",
               "pT_imbalance")


def observables(events: dict) -> dict[str, np.ndarray]:
    """Per event (NaN where undefined, e.g. pT_j2 of a 1-jet event): the muons' pT, the leading
    muon's eta, m_mumu, pT_mumu, |Delta phi_mumu|, each jet's pT and eta, m_j1, Delta R and
    |Delta phi| between the two leading jets and their invariant mass, and the transverse
    imbalance |pT(mu mu) + sum of the jets' pT| (small: the jets recoil against the dimuon; it
    needs the dimuon-jet correlation, which no marginal carries)."""
    mu, jets, n = np.asarray(events["mu"]), np.asarray(events["jets"]), np.asarray(events["n_jets"])
    p_mu = _p4(mu[..., 0], mu[..., 1], mu[..., 2])
    ll = p_mu[:, 0] + p_mu[:, 1]
    out = {"pT_mu1": mu[:, 0, 0], "pT_mu2": mu[:, 1, 0], "eta_mu1": mu[:, 0, 1],
           "m_mumu": npkin.mass(ll), "pT_mumu": np.hypot(ll[:, 1], ll[:, 2]),
           "dphi_mumu": _dphi(mu[:, 0, 2], mu[:, 1, 2])}
    nan = np.full(len(n), np.nan)
    for j in range(N_MAX_JETS):
        has = n > j
        out[f"pT_j{j + 1}"] = np.where(has, jets[:, j, 0], nan)
        out[f"eta_j{j + 1}"] = np.where(has, jets[:, j, 1], nan)
    out["m_j1"] = jets[:, 0, 3]
    two = n >= 2
    deta = jets[:, 0, 1] - jets[:, 1, 1]
    dphi = _dphi(jets[:, 0, 2], jets[:, 1, 2])
    out["dR_j1j2"] = np.where(two, np.hypot(deta, dphi), nan)
    out["dphi_j1j2"] = np.where(two, dphi, nan)
    pj = _p4(jets[..., 0], jets[..., 1], jets[..., 2], jets[..., 3])
    out["m_j1j2"] = np.where(two, npkin.mass(pj[:, 0] + pj[:, 1]), nan)
    present = (np.arange(N_MAX_JETS)[None, :] < n[:, None])[..., None]
    total = ll[:, 1:3] + np.sum(np.where(present, pj[:, :, 1:3], 0.0), 1)
    out["pT_imbalance"] = np.hypot(total[:, 0], total[:, 1])
    return {k: out[k] for k in OBSERVABLES}


# ------------------------------------------------------------------------------ the two models

class EventFlow:
    """Standardised 17-column events (``EventPreprocessor``) with an exact likelihood, as either

    * ``mode="padded"``: one ``ConditionalFlow`` over all 17 columns conditioned on the one-hot
      multiplicity, absent columns padded with N(0, 1) noise (module docstring), or
    * ``mode="per-n"``: one unconditional ``ConditionalFlow`` per multiplicity n over its own
      5 + 4n columns (9, 13, 17): no padding; the multiplicity is the choice of flow, so
      p(x | n) is learned by the n-th flow and p(n) is taken from the sample to be matched.

    ``fit`` trains with ``training.fit``; ``log_prob`` gives per event (log p, dimension);
    ``sample`` returns (N, 17) columns with NaN where absent."""

    def __init__(self, mode: str = "per-n", *, n_layers=6, kind="spline", hidden=(64, 64),
                 bins=8, seed=0):
        from flax import nnx
        if mode not in ("padded", "per-n"):
            raise ValueError(f"EventFlow mode {mode!r}: use 'padded' or 'per-n'")
        self.mode = mode
        kw = dict(n_layers=n_layers, kind=kind, hidden=tuple(hidden), bins=bins)
        if mode == "padded":
            self.flows = {0: make_flow(**kw, seed=seed)}
        else:
            self.flows = {n: ConditionalFlow(5 + 4 * n, 0, **kw, perm_seed=seed + n,
                                             rngs=nnx.Rngs(seed + n))
                          for n in range(1, N_MAX_JETS + 1)}
        self._samplers, self._logp = {}, {}

    @staticmethod
    def columns(n: int) -> np.ndarray:
        return np.flatnonzero(column_mask(np.array([n]))[0])

    def fit(self, x, mask, n_jets, *, steps, batch_size, key, log=None, **fit_kw) -> list:
        """``steps``: an int (padded) or {n: steps} (per-n). Returns the history (rows with
        ``n``, 0 for the padded flow)."""
        from hepjax.models.generative.flows import flow_loss
        from hepjax.models.generative.training import fit
        history = []
        if self.mode == "padded":
            data = (np.asarray(x, np.float32), np.asarray(mask), one_hot(n_jets))
            self.flows[0], _, h = fit(self.flows[0], padded_flow_loss, data, steps=int(steps),
                                      batch_size=batch_size, key=key, log=log, **fit_kw)
            history += [{**r, "n": 0} for r in h]
        else:
            for n, flow in self.flows.items():
                rows = np.asarray(n_jets) == n
                xn = np.asarray(x, np.float32)[rows][:, self.columns(n)]
                data = (xn, np.zeros((len(xn), 0), np.float32))
                self.flows[n], _, h = fit(flow, flow_loss, data, steps=int(steps[n]),
                                          batch_size=batch_size, key=jax.random.fold_in(key, n),
                                          log=log, **fit_kw)
                history += [{**r, "n": n} for r in h]
        self._samplers, self._logp = {}, {}
        return history

    def log_prob(self, x, mask, n_jets, seed: int = 0, wrong_n: bool = False):
        """(log p (N,), dimension (N,)) per event; the padded flow's absent columns get N(0, 1)
        noise from ``seed``; ``wrong_n`` (padded only) conditions on n mod 3 + 1 instead."""
        n_jets = np.asarray(n_jets)
        x = np.asarray(x, np.float64)
        if self.mode == "padded":
            noise = np.random.default_rng(seed).standard_normal(x.shape)
            xf = np.where(mask, np.nan_to_num(x), noise)
            cond = one_hot(n_jets % N_MAX_JETS + 1 if wrong_n else n_jets)
            return self._batched_log_prob(0, xf, cond), np.full(len(x), x.shape[1])
        if wrong_n:
            raise ValueError("wrong_n applies to the padded flow only")
        lp = np.zeros(len(x))
        for n in self.flows:
            rows = n_jets == n
            if rows.any():
                xn = x[rows][:, self.columns(n)]
                lp[rows] = self._batched_log_prob(n, xn, np.zeros((len(xn), 0)))
        return lp, 5 + 4 * n_jets

    def _batched_log_prob(self, n, x, cond, batch: int = 2048) -> np.ndarray:
        """log p in fixed-size batches (the last one padded): one compilation per flow."""
        if n not in self._logp:
            self._logp[n] = jax.jit(self.flows[n].log_prob)
        out = []
        for start in range(0, len(x), batch):
            xb, cb = x[start:start + batch], cond[start:start + batch]
            pad = batch - len(xb)
            if pad:
                xb = np.concatenate([xb, np.repeat(xb[-1:], pad, 0)])
                cb = np.concatenate([cb, np.repeat(cb[-1:], pad, 0)])
            out.append(np.asarray(self._logp[n](jnp.asarray(xb, jnp.float32),
                                                jnp.asarray(cb, jnp.float32)),
                                  np.float64)[:batch - pad])
        return np.concatenate(out) if out else np.zeros(0)

    def _sampler(self, n, batch):
        from hepjax.models.generative.training import make_sampler
        if (n, batch) not in self._samplers:
            self._samplers[(n, batch)] = make_sampler(self.flows[n], lambda m, k, c: m.sample(k, c),
                                                      batch_size=batch)
        return self._samplers[(n, batch)]

    def sample(self, key, n_jets, batch: int = 8192) -> np.ndarray:
        """(N, 17) standardised columns for the multiplicities ``n_jets`` (NaN where absent)."""
        n_jets = np.asarray(n_jets, np.int64)
        out = np.full((len(n_jets), len(COLUMNS)), np.nan)
        if self.mode == "padded":
            s = self._sampler(0, min(batch, max(len(n_jets), 1)))
            x = np.asarray(s(key, jnp.asarray(one_hot(n_jets))), np.float64)
            return np.where(column_mask(n_jets), x, np.nan)
        for n in self.flows:
            rows = np.flatnonzero(n_jets == n)
            if len(rows):
                s = self._sampler(n, min(batch, len(rows)))
                x = np.asarray(s(jax.random.fold_in(key, n), jnp.zeros((len(rows), 0))),
                               np.float64)
                out[np.ix_(rows, self.columns(n))] = x
        return out

    def state(self) -> dict:
        from flax import nnx
        return {n: jax.tree_util.tree_map(np.asarray, nnx.to_pure_dict(nnx.state(f)))
                for n, f in self.flows.items()}

    def load_state(self, params: dict) -> None:
        from flax import nnx
        for n, f in self.flows.items():
            st = nnx.state(f)
            nnx.replace_by_pure_dict(st, params[n])
            nnx.update(f, st)
        self._samplers, self._logp = {}, {}


def sample_event_flow(model: EventFlow, key, n_jets, pre: EventPreprocessor, phi_seed: int,
                      reject: bool = False, max_rounds: int = 50):
    """Like :func:`sample_events` for an :class:`EventFlow`. ``reject``: generated events that
    fail :func:`passes_selection` are re-drawn (round r draws a whole batch with the same
    multiplicities from fold_in(key, r) and fills the failing rows whose new draw passes; the
    phi0 of a row is kept); ``info`` then has the rejection fraction of the first draw (overall
    and per multiplicity, binomial errors) and the number of rounds. With a
    ``DimuonPreprocessor`` the events carry ``mu_charge`` (after the pT re-sorting)."""
    n_jets = np.asarray(n_jets, np.int64)
    phi0 = np.random.default_rng(phi_seed).uniform(-math.pi, math.pi, len(n_jets))

    def draw(k):
        return pre.inverse(np.nan_to_num(model.sample(k, n_jets)), n_jets, phi0)

    mu, jets = draw(key)
    info = {}
    if reject:
        ok = passes_selection(mu, jets, n_jets)
        info["rejected_fraction"] = _binomial(int((~ok).sum()), len(ok))
        info["rejected_fraction_by_n"] = {str(n): _binomial(int((~ok[n_jets == n]).sum()),
                                                            int((n_jets == n).sum()))
                                          for n in range(1, N_MAX_JETS + 1)}
        rounds = 0
        while not ok.all():
            rounds += 1
            if rounds > max_rounds:
                raise RuntimeError(f"sample_event_flow: {int((~ok).sum())} events still fail the "
                                   f"selection after {max_rounds} rounds")
            mu2, jets2 = draw(jax.random.fold_in(key, rounds))
            fill = ~ok & passes_selection(mu2, jets2, n_jets)
            mu[fill], jets[fill] = mu2[fill], jets2[fill]
            ok |= fill
        info["rounds"] = rounds
    charge = None
    if isinstance(pre, DimuonPreprocessor):
        swap = mu[:, 1, 0] > mu[:, 0, 0]
        charge = np.where(swap[:, None], [1, -1], [-1, 1])
    mu, jets, f_mu, f_j = sort_objects(mu, jets, n_jets)
    events = {"mu": mu, "jets": jets, "n_jets": n_jets}
    if charge is not None:
        events["mu_charge"] = charge
    return events, {"frac_muons_swapped": f_mu, "frac_jets_reordered": f_j, **info}


def _binomial(k: int, n: int) -> dict:
    p = k / max(n, 1)
    return {"k": k, "n": n, "fraction": p,
            "err": math.sqrt(max(p * (1 - p), 1.0 / max(n, 1) ** 2) / max(n, 1))}
