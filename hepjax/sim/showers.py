"""Parametrised showers as energy spots: electromagnetic (Grindhammer-Peters), hadronic
(two-component, Bock et al. longitudinal shapes) and minimum-ionising tracks.

Every function draws from the ``numpy.random.Generator`` it is given, in a fixed order, and
returns *spots*: points (x, y, z) [cm] carrying energy [GeV] on the EM scale, with a ``kind``
(``EM_SPOT`` 0, ``HAD_SPOT`` 1, ``MIP_SPOT`` 2) that chooses the sampling term the spot receives
later (``sample_fluctuations``). Spots are placed by ``place_spots``: a depth along the shower
axis in radiation or interaction lengths becomes a point on the axis through the per-layer
tables of the geometry (so a shower that crosses from one section into the next continues in
the second one's units), and a lateral distance in units of the *local* Moliere radius or
interaction length is laid off perpendicular to the axis at a uniform azimuth.

Electromagnetic showers (e+-, photons)
--------------------------------------
Grindhammer, Rudowicz, Peters, "The fast simulation of electromagnetic and hadronic showers",
NIM A290 (1990) 469, and Grindhammer & Peters, "The parameterized simulation of electromagnetic
showers in homogeneous and sampling calorimeters", arXiv:hep-ex/0001020 (the numbers below, in
the effective medium of the section where the shower starts, y = E / E_c):

* longitudinal: each shower has its own gamma profile
  (1/E) dE/dt = (beta t)^(alpha-1) beta exp(-beta t) / Gamma(alpha), t in X0, with maximum
  T = (alpha - 1) / beta. (ln T, ln alpha) are drawn from a correlated normal: means
  <ln T> = ln(ln y - 0.812), <ln alpha> = ln(0.81 + (0.458 + 2.26 / Z) ln y), widths
  sigma(ln T) = (-1.4 + 1.26 ln y)^-1, sigma(ln alpha) = (-0.58 + 0.86 ln y)^-1 (at most 0.5),
  correlation rho = 0.705 - 0.023 ln y. The average profile peaks at T ~ ln y - 0.86, close to
  the textbook t_max = ln y - 0.5 of an electron shower (PDG "Passage of particles through
  matter", from Rossi's approximation B).
  ``em_profile="sampling"`` adds the paper's sampling-calorimeter terms (section 4:
  T += -0.55 / F_S - 0.69 (1 - e_hat), alpha += -0.476 / F_S, their widths and correlation),
  which describe the *visible* (sensor) profile of a calorimeter whose response varies with
  depth. We calibrate every layer with the same sampling fraction, so the default
  ``"homogeneous"`` describes the deposited energy.
* photons first convert: the shower starts after an exponential depth of mean 9/7 X0 (the pair
  production mean free path), so its maximum lies ~1.3 X0 deeper than an electron's (textbook:
  1 X0, t_max = ln y + 0.5).
* lateral: at depth tau = t / T the radial density (r in R_M) is core + tail,
  f(r) = p 2 r R_C^2 / (r^2 + R_C^2)^2 + (1 - p) 2 r R_T^2 / (r^2 + R_T^2)^2, with
  R_C = z1 + z2 tau, R_T = k1 (exp(k3 (tau - k2)) + exp(k4 (tau - k2))),
  p = p1 exp((p2 - tau) / p3 - exp((p2 - tau) / p3)) and the paper's z1 = 0.0251 + 0.00319 ln E,
  z2 = 0.1162 - 0.000381 Z, k1 = 0.659 - 0.00309 Z, k2 = 0.645, k3 = -2.59,
  k4 = 0.3585 + 0.0412 ln E, p1 = 2.632 - 0.00094 Z, p2 = 0.401 + 0.00187 Z,
  p3 = 1.313 - 0.0686 ln E (E in GeV). Radii are drawn by inverting r^2 / (r^2 + R^2).
* spots: N = 10.3 / a * (E/GeV)^0.959 spots of equal energy (the paper's count for sampling
  calorimeters, a the section's EM sampling term), depths drawn from the shower's own profile.
  (The paper draws the spot depths from a second, slightly earlier gamma profile and weights
  them; equal-energy spots from the energy profile give the same mean profile.)

Hadronic showers (pi+-, K, p, n, ...)
-------------------------------------
A two-component model (Wigmans, "Calorimetry", chapter 2; Groom, "Energy flow in a hadronic
cascade: application to hadron calorimetry", NIM A572 (2007) 633):

* charged hadrons ionise as MIPs up to the first nuclear interaction, at an exponentially
  distributed depth of mean one lambda_int along the path; no interaction inside the
  calorimeter means a punch-through track. Neutral hadrons leave nothing before it.
* at the interaction a fraction f_em of the remaining energy goes into pi0/eta photons (an
  electromagnetic cascade) and the rest into the non-EM (hadronic) component. f_em fluctuates
  from shower to shower, Beta-distributed with mean
  <f_em> = 1 - (E / E0)^(m - 1) (Gabriel, Groom, Job, Mokhov, Stevenson, "Energy dependence of
  hadronic activity", NIM A338 (1994) 336; E0 = 1 GeV for mesons, 2.6 GeV for baryons,
  m = 0.83) and concentration ``fem_concentration`` (sigma(f_em) ~ 0.12 at <f_em> = 0.5).
* non-compensation: the non-EM part is seen with response h/e = 1 / ``e_over_h`` relative to
  the EM part, and the shower's energy is divided by the mean response
  <f_em> + (1 - <f_em>) h/e at its energy (a hadronic calibration), so the mean response is
  linear while the fluctuations of f_em still widen the resolution.
* longitudinal: the shapes of Bock, Hansl-Kozanecka, Shah, "Parametrization of the longitudinal
  development of hadronic showers in sampling calorimeters", NIM 186 (1981) 533:
  dE/dx ~ w (x/X0)^(a-1) exp(-b x/X0) + (1 - w) (x/lambda)^(a-1) exp(-d x/lambda), x from the
  interaction point, a = 0.6165 + 0.3183 ln E, b = 0.2198, d = 0.9099 - 0.0237 ln E. The EM
  component follows the X0 term, the hadronic one the lambda term; f_em takes the place of
  Bock's fixed weight w (which amounts to an X0-term share of ~0.55 at 100 GeV in iron).
* lateral: the EM component has the Grindhammer-Peters core + tail at its energy; the hadronic
  component r / rho^2 exp(-r / rho) with rho = lambda_int (c + g s), s the depth after the
  interaction in lambda (``lateral_core`` c, ``lateral_growth`` g): it widens with depth, and
  ~95 % of a shower lies within one lambda_int of its axis.
* spots: the EM component as an EM shower of its energy; the hadronic one in spots of
  ``spot_energy`` GeV.

Tracks (muons; hadrons before their first interaction)
------------------------------------------------------
A straight line that deposits in every sensor it crosses the layer's MIP signal (one MIP on
the EM scale, divided by cos(theta) for the longer path) times a Moyal-distributed factor of
mean 1 and scale ``mip_landau_width`` (Moyal, "Theory of ionization fluctuations", Phil. Mag. 46
(1955) 263, an approximation of Landau's distribution), and loses dE/dx|min on the way (it
stops when that has used up its energy). No multiple scattering, no magnetic field.

Sampling fluctuations and the constant term
-------------------------------------------
``sample_fluctuations`` replaces each EM or hadronic spot's energy e by a Gamma variate of mean e
and variance a^2 e (GFLASH's ``ApplySampling``), a the sampling term of the spot's section and
kind: summed over a shower, sigma^2 = a^2 E, the stochastic term a / sqrt(E). The constant term
is one Gaussian factor (1 + b N(0, 1)) per shower (``em_constant``/``had_constant`` of
``hepjax.sim.calorimeter.SimConfig``): the shower-to-shower variation of the response
(calibration, non-uniformity) that makes sigma/E -> b at high energy.
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np

from hepjax.sim.geometry import Geometry

__all__ = ["EM_SPOT", "HAD_SPOT", "MIP_SPOT", "HadronParams", "Spots", "em_profile_parameters",
           "em_spot_count", "em_radial", "sample_em_radius", "mean_em_fraction", "em_shower",
           "hadron_shower", "mip_track", "place_spots", "sample_fluctuations", "moyal"]

EM_SPOT, HAD_SPOT, MIP_SPOT = 0, 1, 2
_EULER_LN2 = 0.5772156649015329 + math.log(2.0)   # the mean of the standard Moyal variate
_CONVERSION_LENGTH = 9.0 / 7.0   # photon mean free path for pair production [X0]


@dataclasses.dataclass(frozen=True)
class HadronParams:
    """Hadronic shower model (module docstring). Energies in GeV."""
    fem_e0_meson: float = 1.0      # <f_em> = 1 - (E / E0)^(m - 1): pions, kaons
    fem_e0_baryon: float = 2.6     # protons, neutrons, hyperons
    fem_m: float = 0.83
    fem_concentration: float = 15.0   # Beta(mu k, (1 - mu) k): var = mu (1 - mu) / (k + 1)
    e_over_h: float = 1.3          # non-compensation of the calorimeter
    bock_a0: float = 0.6165        # a = a0 + a1 ln E (shape of both components)
    bock_a1: float = 0.3183
    bock_b: float = 0.2198         # slope of the X0 component [1/X0]
    bock_d0: float = 0.9099        # slope of the lambda component d = d0 - d1 ln E [1/lambda]
    bock_d1: float = 0.0237
    lateral_core: float = 0.14     # rho = lambda_int (core + growth * depth in lambda)
    lateral_growth: float = 0.04
    spot_energy: float = 0.1       # GeV per hadronic spot (before sampling fluctuations)

    def __post_init__(self):
        if self.e_over_h <= 0 or self.fem_concentration <= 0 or self.spot_energy <= 0:
            raise ValueError("HadronParams: e_over_h, fem_concentration, spot_energy must be > 0")


@dataclasses.dataclass
class Spots:
    """Energy spots of one particle: x, y, z [cm], e [GeV, EM scale], kind (EM/HAD/MIP)."""
    x: np.ndarray
    y: np.ndarray
    z: np.ndarray
    e: np.ndarray
    kind: np.ndarray

    @classmethod
    def empty(cls) -> "Spots":
        z = np.zeros(0)
        return cls(z, z, z, z, np.zeros(0, np.int8))

    @classmethod
    def concatenate(cls, parts) -> "Spots":
        parts = [p for p in parts if len(p.e)]
        if not parts:
            return cls.empty()
        return cls(*(np.concatenate([getattr(p, k) for p in parts])
                     for k in ("x", "y", "z", "e", "kind")))

    def __len__(self) -> int:
        return len(self.e)


# ---------------------------------------------------------------------------------------------
# geometry helpers

def _basis(u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two unit vectors perpendicular to the unit vector u (and to each other)."""
    helper = np.array([1.0, 0.0, 0.0]) if abs(u[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
    e1 = np.cross(u, helper)
    e1 /= np.linalg.norm(e1)
    return e1, np.cross(u, e1)


def _layer_of(geo: Geometry, z: np.ndarray) -> np.ndarray:
    t = geo.tables
    return np.clip(np.searchsorted(t.z_bound, z, side="right") - 1, 0, len(t.section) - 1)


def depth_to_z(geo: Geometry, depth: np.ndarray, u_z: float, unit: str) -> np.ndarray:
    """z [cm] of the axis point at ``depth`` (X0 or lambda, along an axis of direction cosine
    u_z from z = 0); inf beyond the back of the calorimeter."""
    t = geo.tables
    bound = t.x0_bound if unit == "x0" else t.lambda_bound
    projected = np.asarray(depth, np.float64) * u_z
    z = np.interp(projected, bound, t.z_bound)
    return np.where(projected < bound[-1], z, np.inf)


def z_to_depth(geo: Geometry, z: float, u_z: float, unit: str) -> float:
    """Inverse of ``depth_to_z``: X0 or lambda along the axis from z = 0 to the plane z."""
    t = geo.tables
    bound = t.x0_bound if unit == "x0" else t.lambda_bound
    return float(np.interp(z, t.z_bound, bound)) / u_z


def place_spots(geo: Geometry, rng: np.random.Generator, origin: np.ndarray, u: np.ndarray,
                depth: np.ndarray, unit: str, radius: np.ndarray, scale: str) -> tuple:
    """(x, y, z) of spots at ``depth`` along the axis (origin at z = 0, unit direction u) in
    ``unit`` ("x0" or "lambda") and ``radius`` from it in units of the local ``scale``
    ("moliere" or "lambda"), at uniform azimuth in the plane perpendicular to the axis. Spots
    beyond the back get z = inf."""
    t = geo.tables
    z_axis = depth_to_z(geo, depth, u[2], unit)
    inside = np.isfinite(z_axis)
    z_safe = np.where(inside, z_axis, t.z_bound[-1])
    layer = _layer_of(geo, z_safe)
    local = t.moliere[layer] if scale == "moliere" else t.interaction_length[layer]
    r = radius * local
    psi = rng.uniform(0.0, 2.0 * np.pi, len(r))
    c, s = r * np.cos(psi), r * np.sin(psi)
    e1, e2 = _basis(u)
    path = z_safe / u[2]
    x = origin[0] + path * u[0] + c * e1[0] + s * e2[0]
    y = origin[1] + path * u[1] + c * e1[1] + s * e2[1]
    z = np.where(inside, z_safe + c * e1[2] + s * e2[2], np.inf)
    return x, y, np.maximum(z, 0.0)


# ---------------------------------------------------------------------------------------------
# electromagnetic showers

def _width(denominator):
    """Grindhammer-Peters widths 1 / (a + b ln y), at most 0.5 (also where a + b ln y < 2)."""
    return 1.0 / max(denominator, 2.0)


def em_profile_parameters(energy: float, z_eff: float, critical_energy: float,
                          profile: str = "homogeneous", layer_x0: float = 1.0,
                          e_hat: float = 1.0) -> dict:
    """Means and covariance of (ln T, ln alpha) of an electron shower of ``energy`` GeV in a
    medium (Z, E_c [GeV]); ``profile="sampling"`` adds the sampling-calorimeter terms for layers
    of ``layer_x0`` radiation lengths (1/F_S) with e/mip ``e_hat``."""
    ln_y = math.log(max(energy / critical_energy, 1.0 + 1e-9))
    mean_t = max(ln_y - 0.812, 0.1)
    mean_a = max(0.81 + (0.458 + 2.26 / z_eff) * ln_y, 0.1)
    if profile == "homogeneous":
        sig_t, sig_a = _width(-1.4 + 1.26 * ln_y), _width(-0.58 + 0.86 * ln_y)
        rho = 0.705 - 0.023 * ln_y
    elif profile == "sampling":
        mean_t = max(mean_t - 0.55 * layer_x0 - 0.69 * (1.0 - e_hat), 0.1)
        mean_a = max(mean_a - 0.476 * layer_x0, 0.1)
        sig_t, sig_a = _width(-2.5 + 1.25 * ln_y), _width(-0.82 + 0.79 * ln_y)
        rho = 0.784 - 0.023 * ln_y
    else:
        raise ValueError(f"em_profile={profile!r}: use 'homogeneous' or 'sampling'")
    return {"ln_t": math.log(mean_t), "ln_alpha": math.log(mean_a), "sigma_ln_t": sig_t,
            "sigma_ln_alpha": sig_a, "rho": float(np.clip(rho, -1.0, 1.0))}


def em_spot_count(energy: float, stochastic: float) -> int:
    """Grindhammer-Peters' spots for a sampling calorimeter, 10.3 / a * (E/GeV)^0.959."""
    return int(min(max(math.ceil(10.3 / max(stochastic, 0.05) * energy ** 0.959), 10), 400_000))


def em_radial(energy: float, z_eff: float, tau: np.ndarray, profile: str = "homogeneous",
              layer_x0: float = 1.0, e_hat: float = 1.0):
    """(R_C, R_T, p) [R_M] of the core + tail radial profile at depths tau = t / T."""
    ln_e = math.log(max(energy, 1e-3))
    tau = np.asarray(tau, np.float64)
    r_core = (0.0251 + 0.00319 * ln_e) + (0.1162 - 0.000381 * z_eff) * tau
    k1, k2, k3, k4 = 0.659 - 0.00309 * z_eff, 0.645, -2.59, 0.3585 + 0.0412 * ln_e
    r_tail = k1 * (np.exp(k3 * (tau - k2)) + np.exp(k4 * (tau - k2)))
    p1, p2, p3 = 2.632 - 0.00094 * z_eff, 0.401 + 0.00187 * z_eff, 1.313 - 0.0686 * ln_e
    arg = (p2 - tau) / p3
    p = p1 * np.exp(arg - np.exp(arg))
    if profile == "sampling":
        r_core = r_core - 0.0203 * (1 - e_hat) + 0.0397 * layer_x0 * np.exp(-tau)
        r_tail = r_tail - 0.14 * (1 - e_hat) - 0.495 * layer_x0 * np.exp(-tau)
        p = p + (1 - e_hat) * (0.348 - 0.642 * layer_x0 * np.exp(-(tau - 1.0) ** 2))
    return np.maximum(r_core, 1e-3), np.maximum(r_tail, 1e-3), np.clip(p, 0.0, 1.0)


def sample_em_radius(rng, r_core, r_tail, p) -> np.ndarray:
    """Radii [R_M] from the core + tail profile (inverse of the CDF r^2 / (r^2 + R^2))."""
    n = len(r_core)
    which = rng.uniform(size=n) < p
    u = rng.uniform(size=n)
    radius = np.where(which, r_core, r_tail)
    return radius * np.sqrt(u / (1.0 - u))


def _em_spots(geo: Geometry, rng, energy: float, origin, u, start_x0: float, profile: str,
              kind: int = EM_SPOT, stochastic: float | None = None, longitudinal=None) -> Spots:
    """Spots of an EM (sub)shower of ``energy`` starting ``start_x0`` X0 along the axis.
    ``longitudinal``=(alpha, beta, T) fixes the gamma profile (hadronic EM component)."""
    t = geo.tables
    if energy <= 0:
        return Spots.empty()
    z_start = depth_to_z(geo, np.array([start_x0]), u[2], "x0")[0]
    if not np.isfinite(z_start):
        return Spots.empty()
    layer = _layer_of(geo, np.array([z_start]))[0]
    sec = geo.sections[t.section[layer]]
    z_eff, e_c = sec.z_eff, sec.critical_energy
    if longitudinal is None:
        par = em_profile_parameters(energy, z_eff, e_c, profile, sec.layer_x0, sec.e_over_mip)
        g1, g2 = rng.standard_normal(2)
        c1, c2 = math.sqrt((1 + par["rho"]) / 2), math.sqrt((1 - par["rho"]) / 2)
        t_max = math.exp(par["ln_t"] + par["sigma_ln_t"] * (c1 * g1 + c2 * g2))
        alpha = max(math.exp(par["ln_alpha"] + par["sigma_ln_alpha"] * (c1 * g1 - c2 * g2)), 1.1)
        t_max = max(t_max, 0.05)
        beta = (alpha - 1.0) / t_max
    else:
        alpha, beta, t_max = longitudinal
    n = em_spot_count(energy, sec.em_stochastic if stochastic is None else stochastic)
    depth = rng.gamma(alpha, 1.0 / beta, n)
    r_core, r_tail, p = em_radial(energy, z_eff, depth / t_max, profile, sec.layer_x0,
                                  sec.e_over_mip)
    radius = sample_em_radius(rng, r_core, r_tail, p)
    x, y, z = place_spots(geo, rng, origin, u, start_x0 + depth, "x0", radius, "moliere")
    return Spots(x, y, z, np.full(n, energy / n), np.full(n, kind, np.int8))


def em_shower(geo: Geometry, rng, energy: float, origin, u, photon: bool,
              profile: str = "homogeneous") -> tuple[Spots, float]:
    """An electron/positron (``photon=False``) or photon shower entering at ``origin`` (z = 0)
    along the unit vector ``u``. Returns (spots, z of the shower start [cm]; inf if a photon
    converts behind the calorimeter)."""
    start = rng.exponential(_CONVERSION_LENGTH) if photon else 0.0
    z_start = float(depth_to_z(geo, np.array([start]), u[2], "x0")[0])
    if not np.isfinite(z_start):
        return Spots.empty(), math.inf
    return _em_spots(geo, rng, energy, origin, u, start, profile), z_start


# ---------------------------------------------------------------------------------------------
# hadronic showers

def mean_em_fraction(energy: float, baryon: bool, params: HadronParams = HadronParams()) -> float:
    """<f_em> = 1 - (E / E0)^(m - 1), 0 below E0."""
    e0 = params.fem_e0_baryon if baryon else params.fem_e0_meson
    if energy <= e0:
        return 0.0
    return 1.0 - (energy / e0) ** (params.fem_m - 1.0)


def hadron_shower(geo: Geometry, rng, energy: float, origin, u, charged: bool, baryon: bool,
                  params: HadronParams = HadronParams(), profile: str = "homogeneous",
                  landau_width: float = 0.06) -> tuple[Spots, float, Spots]:
    """A hadron of ``energy`` GeV entering at ``origin`` along ``u``: returns (shower spots, z of
    the first interaction [cm], inf for punch-through; track spots before it)."""
    first = rng.exponential(1.0)                      # lambda_int along the path
    z_int = float(depth_to_z(geo, np.array([first]), u[2], "lambda")[0])
    track, used = (mip_track(geo, rng, energy, origin, u, 0.0, z_int, landau_width) if charged
                   else (Spots.empty(), 0.0))
    e_shower = energy - used
    if not np.isfinite(z_int) or e_shower <= 0:
        return Spots.empty(), math.inf, track
    mu = mean_em_fraction(e_shower, baryon, params)
    mu_c = min(max(mu, 0.01), 0.99)
    k = params.fem_concentration
    f_em = rng.beta(mu_c * k, (1.0 - mu_c) * k)
    h_over_e = 1.0 / params.e_over_h
    response = mu_c + (1.0 - mu_c) * h_over_e          # mean response on the EM scale
    e_em = e_shower * f_em / response
    e_had = e_shower * (1.0 - f_em) * h_over_e / response
    ln_e = math.log(max(e_shower, 1e-3))
    a = max(params.bock_a0 + params.bock_a1 * ln_e, 0.3)
    b = params.bock_b
    d = max(params.bock_d0 - params.bock_d1 * ln_e, 0.3)
    start_x0 = z_to_depth(geo, z_int, u[2], "x0")
    start_l = z_to_depth(geo, z_int, u[2], "lambda")
    em = _em_spots(geo, rng, e_em, origin, u, start_x0, profile,
                   longitudinal=(a, b, max(a - 1.0, 0.5) / b))
    n_had = int(min(max(math.ceil(e_had / params.spot_energy), 20), 400_000))
    depth = rng.gamma(a, 1.0 / d, n_had)
    radius = rng.gamma(2.0, 1.0, n_had) * (params.lateral_core + params.lateral_growth * depth)
    x, y, z = place_spots(geo, rng, origin, u, start_l + depth, "lambda", radius, "lambda")
    had = Spots(x, y, z, np.full(n_had, e_had / n_had), np.full(n_had, HAD_SPOT, np.int8))
    return Spots.concatenate([em, had]), z_int, track


# ---------------------------------------------------------------------------------------------
# tracks

def moyal(rng, n: int, width: float) -> np.ndarray:
    """Mean-one Moyal (Landau-like) factors 1 + width (X - <X>), X = -ln(G^2), G ~ N(0, 1)."""
    g2 = np.maximum(rng.standard_normal(n) ** 2, 1e-300)
    return np.maximum(1.0 + width * (-np.log(g2) - _EULER_LN2), 0.0)


def mip_track(geo: Geometry, rng, energy: float, origin, u, z_from: float, z_to: float,
              landau_width: float = 0.06) -> tuple[Spots, float]:
    """The MIP signal of a straight track from the plane z_from to z_to (inf: through the back),
    stopping where its dE/dx|min losses use up ``energy``. Returns (spots in the sensors it
    crosses, energy lost [GeV])."""
    t = geo.tables
    z_end = float(t.z_bound[-1])
    lost_before = float(np.interp(z_from, t.z_bound, t.mip_bound))
    # range: the plane where the cumulative loss along the path reaches the energy
    z_range = float(np.interp(lost_before + energy * u[2], t.mip_bound, t.z_bound,
                              right=np.inf))
    z_stop = min(z_to, z_range, z_end)
    lost = (float(np.interp(z_stop, t.z_bound, t.mip_bound)) - lost_before) / u[2]
    layers = np.flatnonzero((t.z_sensor >= z_from) & (t.z_sensor < z_stop))
    if len(layers) == 0:
        return Spots.empty(), min(lost, energy)
    zs = t.z_sensor[layers]
    path = zs / u[2]
    e = t.mip_energy[layers] / u[2] * moyal(rng, len(layers), landau_width)
    spots = Spots(origin[0] + path * u[0], origin[1] + path * u[1], zs.astype(np.float64), e,
                  np.full(len(layers), MIP_SPOT, np.int8))
    return spots, min(lost, energy)


# ---------------------------------------------------------------------------------------------
# sampling fluctuations

def sample_fluctuations(rng, stochastic: np.ndarray, kind: np.ndarray, e: np.ndarray) -> np.ndarray:
    """Gamma-distributed spot energies of mean e and variance a^2 e (a = ``stochastic``, per
    spot: the section's term for the spot's kind); MIP spots are returned unchanged."""
    out = e.copy()
    a2 = stochastic ** 2
    m = (kind != MIP_SPOT) & (a2 > 0) & (e > 0)
    out[m] = rng.gamma(e[m] / a2[m], a2[m])
    return out
