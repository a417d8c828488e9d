"""Generated dijet events: a narrow resonance decaying to two jets versus QCD dijets.

The demo's physics, from first principles and numpy alone (no download, no external generator):
the classic dijet-resonance search. A colour-singlet vector boson X (default m = 1500 GeV,
Gamma = 5% of m) decays to q qbar with the spin-1 angular distribution 1 + cos^2(theta*) in its rest
frame; QCD 2 -> 2 scattering is dominated by t-channel gluon exchange, dsigma/dcos(theta*) ~
1 / (1 - cos theta*)^2 (Rutherford-like, forward-peaked), with a steeply falling dijet mass
spectrum dsigma/dm ~ m^-5. Each system gets a transverse kick (initial-state radiation) and a
longitudinal boost (parton luminosities), both partons are smeared by a calorimeter response
sigma_E / E = a / sqrt(E / GeV) (+) c and a small angular resolution, and the event must pass a
dijet selection. Units: GeV. All randomness comes from ``numpy.random.default_rng(seed)``.

This is a stand-in until the Pythia 8 top-tagging generator lands (see the data issue); it is a
fair classification task (the mass peak and the central angular distribution separate signal from
background, neither perfectly).
"""
from __future__ import annotations

import dataclasses

import numpy as np

from hepjax.physics import numpy_kinematics as npkin

FEATURES = ("mjj", "pt1", "pt2", "eta1", "eta2", "delta_eta", "delta_phi", "pt_jj", "y_boost",
            "chi")
# Features that are positive and span decades: log-transform them before standardisation.
LOG_FEATURES = ("mjj", "pt1", "pt2", "pt_jj", "chi")


@dataclasses.dataclass(frozen=True)
class DijetSettings:
    resonance_mass: float = 1500.0     # GeV
    resonance_width: float = 75.0      # GeV (Breit-Wigner)
    mass_min: float = 1100.0           # GeV, selection on m_jj
    mass_max: float = 2000.0           # GeV
    qcd_mass_power: float = 5.0        # dsigma/dm ~ m^-power
    isr_pt_mean: float = 40.0          # GeV, mean transverse kick of the dijet system
    rapidity_sigma_signal: float = 0.8  # spread of the system's rapidity
    rapidity_sigma_qcd: float = 1.0
    stochastic: float = 1.0            # a in a / sqrt(E)
    constant: float = 0.05             # c
    angular_resolution: float = 0.02   # in eta and phi
    jet_pt_min: float = 200.0          # GeV
    jet_eta_max: float = 2.5


def _four_vectors(pt, eta, phi):
    px, py = pt * np.cos(phi), pt * np.sin(phi)
    pz = pt * np.sinh(eta)
    e = pt * np.cosh(eta)
    return np.stack([e, px, py, pz], axis=-1)


def _boost(p, beta):
    """Boosts four-vectors p (..., 4) by velocity beta (..., 3)."""
    b2 = np.sum(beta**2, axis=-1, keepdims=True)
    gamma = 1.0 / np.sqrt(1.0 - b2)
    bp = np.sum(beta * p[..., 1:], axis=-1, keepdims=True)
    coef = np.where(b2 > 0, (gamma - 1.0) / np.where(b2 > 0, b2, 1.0), 0.0)
    e = gamma * (p[..., :1] + bp)
    vec = p[..., 1:] + coef * bp * beta + gamma * beta * p[..., :1]
    return np.concatenate([e, vec], axis=-1)


def _kinematics(p):
    pt = npkin.pt(p)
    return pt, npkin.eta(p, pt), npkin.phi(p, pt)


def _sample_mass(rng, n, signal, s: DijetSettings):
    if signal:  # Cauchy (Breit-Wigner) truncated to the selection window, by inverse CDF
        lo, hi = (np.arctan((m - s.resonance_mass) / (s.resonance_width / 2))
                  for m in (s.mass_min * 0.8, s.mass_max * 1.1))
        u = rng.uniform(lo, hi, n)
        return s.resonance_mass + s.resonance_width / 2 * np.tan(u)
    k = s.qcd_mass_power - 1.0  # Pareto: m^-power above 0.8 * mass_min
    m0 = 0.8 * s.mass_min
    return m0 * (1.0 - rng.uniform(0, 1, n)) ** (-1.0 / k)


def _sample_cos_theta(rng, n, signal):
    if signal:  # 1 + c^2 on [-1, 1] by accept-reject
        out = np.empty(0)
        while out.size < n:
            c = rng.uniform(-1, 1, 2 * n)
            out = np.concatenate([out, c[rng.uniform(0, 2, 2 * n) < 1 + c**2]])
        return out[:n]
    # 1 / (1 - c)^2 on [-c_max, c_max], inverse CDF, then symmetrised (identical partons)
    c_max = 0.96
    a, b = 1 / (1 + c_max), 1 / (1 - c_max)
    c = 1 - 1 / rng.uniform(a, b, n)
    return c * rng.choice([-1.0, 1.0], n)


def _events(rng, n, signal, s: DijetSettings):
    m = _sample_mass(rng, n, signal, s)
    cos_t = _sample_cos_theta(rng, n, signal)
    sin_t = np.sqrt(1 - cos_t**2)
    phi = rng.uniform(-np.pi, np.pi, n)
    direction = np.stack([sin_t * np.cos(phi), sin_t * np.sin(phi), cos_t], axis=-1)
    half = (m / 2)[:, None]
    partons = np.stack([np.concatenate([half, half * direction], -1),
                        np.concatenate([half, -half * direction], -1)], axis=1)  # (n, 2, 4)
    # the system: transverse kick from ISR, longitudinal boost from the parton luminosities
    pt_sys = rng.exponential(s.isr_pt_mean, n)
    phi_sys = rng.uniform(-np.pi, np.pi, n)
    y_sys = rng.normal(0.0, s.rapidity_sigma_signal if signal else s.rapidity_sigma_qcd, n)
    mt = np.sqrt(m**2 + pt_sys**2)
    system = np.stack([mt * np.cosh(y_sys), pt_sys * np.cos(phi_sys), pt_sys * np.sin(phi_sys),
                       mt * np.sinh(y_sys)], axis=-1)
    beta = system[:, 1:] / system[:, :1]
    lab = _boost(partons, beta[:, None, :])
    pt, eta, phi_j = _kinematics(lab)
    # calorimeter: energy resolution a/sqrt(E) (+) c, angular smearing; massless jets
    energy = lab[..., 0]
    sigma = np.sqrt(s.stochastic**2 / energy + s.constant**2)
    scale = np.clip(1 + sigma * rng.standard_normal(energy.shape), 0.05, None)
    pt = pt * scale
    eta = eta + s.angular_resolution * rng.standard_normal(eta.shape)
    phi_j = phi_j + s.angular_resolution * rng.standard_normal(phi_j.shape)
    return _features(_four_vectors(pt, eta, phi_j), s)


def _features(jets, s: DijetSettings):
    pt, eta, phi = _kinematics(jets)
    order = np.argsort(-pt, axis=1)
    jets = np.take_along_axis(jets, order[..., None], axis=1)
    pt, eta, phi = _kinematics(jets)
    dijet = jets.sum(axis=1)
    mjj = npkin.mass(dijet)
    pt_jj = npkin.pt(dijet)
    delta_eta = np.abs(eta[:, 0] - eta[:, 1])
    delta_phi = np.abs(npkin.delta_phi(phi[:, 0], phi[:, 1]))
    features = np.stack([mjj, pt[:, 0], pt[:, 1], eta[:, 0], eta[:, 1], delta_eta, delta_phi,
                         pt_jj, (eta[:, 0] + eta[:, 1]) / 2, np.exp(delta_eta)], axis=-1)
    passed = ((pt[:, 1] > s.jet_pt_min) & (np.abs(eta) < s.jet_eta_max).all(axis=1)
              & (mjj > s.mass_min) & (mjj < s.mass_max))
    return features[passed]


def generate(n_events: int, seed: int, signal_fraction: float = 0.5,
             settings: DijetSettings = DijetSettings()) -> dict[str, np.ndarray]:
    """``n_events`` selected events: ``features`` (n, 10) float32 in the order of ``FEATURES``
    and ``label`` (n,) int32 (1 = resonance, 0 = QCD), shuffled. Same seed, same events."""
    if n_events <= 0:
        raise ValueError(f"n_events must be positive, got {n_events}")
    rng = np.random.default_rng(seed)
    n_sig = int(round(n_events * signal_fraction))
    parts = []
    for signal, wanted in ((True, n_sig), (False, n_events - n_sig)):
        got, chunks = 0, []
        while got < wanted:
            batch = _events(rng, max(2 * (wanted - got), 1000), signal, settings)
            chunks.append(batch)
            got += len(batch)
        parts.append(np.concatenate(chunks)[:wanted])
    features = np.concatenate(parts).astype(np.float32)
    label = np.concatenate([np.ones(n_sig, np.int32), np.zeros(n_events - n_sig, np.int32)])
    order = rng.permutation(n_events)
    return {"features": features[order], "label": label[order]}
