"""Simulated TrackML events: Pythia 8 particles through the real TrackML module geometry.

Events
------
``simulate_event(seed, config)`` makes one event in the TrackML layout (Amrouche et al., "The
Tracking Machine Learning challenge: accuracy phase", arXiv:1904.06778): a hard process
(``SimConfig.hard_process``: 'ttbar' (default, as the challenge), 'dijet', 'none' or any tuple of
Pythia settings) plus ``pileup_mu`` minimum-bias interactions (``SoftQCD:inelastic``; Poisson
with mean mu, or exactly mu with ``pileup_poisson=False``), 14 TeV pp with Pythia 8 (Bierlich et
al., "A comprehensive guide to the physics and usage of PYTHIA 8.3", SciPost Phys. Codebases 8
(2022)), each interaction at a vertex drawn from the luminous region (Gaussian, sigma_z = 55 mm,
sigma_x = sigma_y = 17 um: the spread of the real event's primary vertices). Pythia decays the
short-lived hadrons (K0S, Lambda, ...) with their vertices; every charged final-state particle
with pT > ``pt_min`` (0.1 GeV) and |eta| < ``eta_max`` (4), as in the real event's particle
table, is kept with its truth. ``simulate_particles(particles, seed, config)`` runs the detector
on given particles (``particle_gun`` builds them).

Detector
--------
A uniform solenoid field B = 2 T along +z (positive particles turn clockwise seen from +z).
Each particle is a helix, stepped surface to surface: at every step the next crossing with the
nominal surface of any layer (barrel cylinders and end-cap disks of ``hepjax.tracking
.geometry``, plus a beryllium beam pipe at r = 25 mm) is found analytically, the layer's spatial
index gives the candidate modules, the helix is intersected exactly with each candidate's plane
(Newton iterations from the nominal crossing) and a hit is made on every module whose bounds
contain the point: overlapping modules in one layer both get a hit, as in real data. The
particle then crosses the layer's material: multiple scattering with the Highland formula
(Highland, NIM 129 (1975) 497, with Lynch & Dahl's constants, NIM B 58 (1991) 6, as in the PDG
review "Passage of particles through matter"), theta0 = 13.6 MeV / (beta c p) |z| sqrt(x/X0)
(1 + 0.038 ln(x z^2 / (X0 beta^2))), two independent Gaussian deflections, and the mean
ionisation loss of silicon, 36.3 MeV per radiation length for a minimum-ionising particle
(1.664 MeV cm^2/g x 21.82 g/cm^2) scaled by max(1, 0.925 / beta^2) below the minimum. x/X0 per
crossing is the layer's material (``geometry.DEFAULT_MATERIAL``: 1.0 % pixels, 1.8 % short
strips, 3.0 % long strips, 0.23 % beam pipe) divided by the cosine of the incidence angle on the
nominal surface (capped at 20x). A particle stops after half a turn in the transverse plane
(``max_turn`` = pi: loopers do not come back), after ``max_path`` mm, or when it has lost its
kinetic energy.

Hits: the truth position is the helix crossing with the module mid-plane (w = 0, as in the
real files) and the truth momentum the one arriving there. The measured position is the truth
moved by a uniform random amount over one pitch in u and in v (resolution pitch / sqrt(12), as
the real event's residuals: 0.014 / 0.016 mm in the pixels, 0.017 / 0.31 mm short strips,
0.024 / 3.0 mm long strips), kept inside the module. Each hit is lost with probability
``1 - hit_efficiency`` (0.99); noise hits, a fraction ``noise_fraction`` of all hits (0.15: the
real event has 829 noise hits in 5,527), are placed uniformly on modules drawn uniformly (the
real event's noise per module is flat across volumes within its statistics).

Output: ``{'hits': ..., 'particles': ..., 'truth': ...}``, each a dict column -> numpy array with
the TrackML names: hits (hit_id, x, y, z, volume_id, layer_id, module_id), sorted by module as
the real files, hit_id = 1..N; particles (particle_id, particle_type, vx, vy, vz, px, py, pz, q,
nhits), particle_id coded as TrackML's (vertex_id << 52 | primary_id << 36 | generation << 24;
vertex_id = 1 + interaction index with the hard process first, primary_id = 1 + index in the
interaction's Pythia record, generation 0: Pythia's decay products count as primaries, as in
the real event); truth (hit_id, particle_id (0 for noise), tx, ty, tz, tpx, tpy, tpz, weight).
No cells.

Weights: ``trackml_weights`` transcribes the challenge's scoring weights (arXiv:1904.06778,
Sec. "Scoring"; the reference implementation trackml-library ``weights.py``, M. Kiehn): a hit's
weight is w_order x w_pt. w_order depends on the hit's rank along its particle (hits ordered by
|tz - vz|) and on the particle's nhits: the profile (10, 8, 6, 5, 3, 3, 3, 5, 6) stretched
linearly over the nhits ranks and normalised to sum 1 per particle (so the first hits count
most and the last ones more than the middle); nhits above 20 use the 20-hit profile and ranks
from 20 on get 0. w_pt = 0.2 for pT < 0.5 GeV, rising linearly to 1 at pT = 3 GeV and 1 above
(0 below 0.05 GeV). Noise, particles with fewer than 4 hits and secondaries (generation != 0,
the phase-2 rule the real file follows) weigh 0; the weights are normalised to sum 1 per event.
On the real event the recomputed weights equal the file's up to one common factor (the file is
a 5 % subsample; tests/tracking/test_sim.py). Approximation: the reference ranks ties with
pandas' average rank; here ties (none in practice) are broken by hit order.

Determinism: everything derives from ``seed`` via numpy ``SeedSequence`` (vertices, the pile-up
count, the Pythia seeds of the hard and the pile-up generator, the detector effects). Pythia is
initialised once per process and settings and reseeded per event (``pythia.rndm.init``), so an
event depends only on (seed, config, geometry), not on what the process generated before
(tests/tracking/test_sim.py regenerates an event after others and compares every column).

Speed (``benchmark``; 2026-12-06, one core of a 2-core machine shared with other jobs, load
average 5-7, nice 19; 3 events each): mu = 0 (ttbar alone, 172 particles, 2.4k hits) 0.17 s
per event; mu = 50 (3.1k particles, 44k hits) 1.1 s (0.34 s Pythia, 0.74 s detector);
mu = 200 (11.5k particles, 163k hits) 3.5 s (1.25 s Pythia, 2.3 s detector). Once per process:
the geometry and its index ~1 s, Pythia's initialisation ~0.7 s for ttbar and ~8 s for
``SoftQCD:inelastic`` (its diffractive cross-section tables; ``SoftQCD:nonDiffractive`` takes
~0.7 s).

Known differences from the real event (figures and numbers in the session report): the real
field is a solenoid map, ~2 T in the centre but weaker at large |z| (circle fits of the real
truth give an effective 1.99 T for tracks within |z| < 1 m, 1.87 T to 2 m, 1.4 T beyond); no
hadronic interactions, photon conversions, delta rays or other secondaries (22 % of the real
event's particles are secondaries); no brems for electrons; no cluster merging, Lorentz shift
or cluster-size resolution (the real pixel residuals are ~30 % narrower than pitch / sqrt(12));
no dead modules. Primaries with pT > 1 GeV get ~1 hit more than in the real event on average,
and no primary with |eta| < 4 escapes without hits (the real event has 4-19 % such particles,
most of them below 0.3 GeV at large |eta|).
"""
from __future__ import annotations

import dataclasses
import functools
import os
import pathlib
import time

import numpy as np

from hepjax.tracking import geometry as geometry_lib

__all__ = ["SimConfig", "HARD_PROCESSES", "DEFAULT_DETECTORS", "default_geometry",
           "particle_gun", "generate_particles", "propagate", "simulate_particles",
           "simulate_event", "trackml_weights", "order_weight_matrix", "pt_weight",
           "encode_particle_id", "decode_particle_id", "benchmark"]

DEFAULT_DETECTORS = (pathlib.Path(__file__).resolve().parents[2]
                     / "../shared/data/trackml_event_gnn_tracking/detectors.csv.gz")

HARD_PROCESSES = {
    "ttbar": ("Top:gg2ttbar = on", "Top:qqbar2ttbar = on"),
    "dijet": ("HardQCD:all = on", "PhaseSpace:pTHatMin = 50."),
    "none": (),
}

_C_HIGHLAND = 0.0136        # GeV
_DEDX_MIP_X0 = 0.0363       # GeV per radiation length of silicon, minimum ionising
_BETA2_MIN_ION = 0.925      # beta^2 at the minimum of the Bethe curve (beta gamma ~ 3.5)
_KAPPA_UNIT = 0.299792458e-3   # curvature [1/mm] = 0.3e-3 q B[T] / pT[GeV]


@dataclasses.dataclass(frozen=True)
class SimConfig:
    """Settings of the event simulation (units: GeV, mm, T).

    ``hard_process``: a key of ``HARD_PROCESSES`` or a tuple of Pythia settings;
    ``pileup_mu`` (0-200 intended), Poisson-distributed unless ``pileup_poisson=False``;
    ``pileup_settings``: the minimum-bias Pythia process; ``sigma_z``, ``sigma_xy``: the luminous
    region; ``b_field`` along +z; ``pt_min``, ``eta_max``: the particles kept; ``material``:
    ((volume_id, x/X0), ...) overriding ``geometry.DEFAULT_MATERIAL`` (used when the geometry
    is built here, ignored with an explicit ``geometry=``); ``beam_pipe_radius`` and
    ``beam_pipe_x0``; switches for ``multiple_scattering``, ``energy_loss`` and ``smear``;
    ``hit_efficiency`` per hit; ``noise_fraction`` of all hits; ``max_turn`` (radians turned in
    the transverse plane), ``max_path`` (mm) and ``max_steps`` (surfaces) per particle."""
    hard_process: str | tuple[str, ...] = "ttbar"
    pileup_mu: float = 0.0
    pileup_poisson: bool = True
    pileup_settings: tuple[str, ...] = ("SoftQCD:inelastic = on",)
    sigma_z: float = 55.0
    sigma_xy: float = 0.017
    b_field: float = 2.0
    pt_min: float = 0.1
    eta_max: float = 4.0
    material: tuple[tuple[int, float], ...] | None = None   # ((volume_id, x/X0), ...)
    beam_pipe_radius: float = 25.0
    beam_pipe_x0: float = 0.0023        # 0.8 mm beryllium
    multiple_scattering: bool = True
    energy_loss: bool = True
    hit_efficiency: float = 0.99
    noise_fraction: float = 0.15
    smear: bool = True
    max_turn: float = np.pi
    max_path: float = 10_000.0
    max_steps: int = 200


# -- particle ids ---------------------------------------------------------------------------
def encode_particle_id(vertex_id, primary_id, generation=0) -> np.ndarray:
    """TrackML particle_id: vertex_id << 52 | primary_id << 36 | generation << 24."""
    v, p, g = (np.asarray(a, np.int64) for a in (vertex_id, primary_id, generation))
    if np.any(v >= 2048) or np.any(p >= 65536) or np.any(g >= 4096):
        raise ValueError("vertex_id < 2048, primary_id < 65536 and generation < 4096 required")
    return (v << 52) | (p << 36) | (g << 24)


def decode_particle_id(particle_id) -> dict[str, np.ndarray]:
    """The fields of TrackML particle ids (the challenge's bit layout)."""
    pid = np.asarray(particle_id).astype(np.uint64)
    fields = {"vertex_id": (52, 0xfff), "primary_id": (36, 0xffff), "generation": (24, 0xfff),
              "secondary_id": (12, 0xfff), "process": (0, 0xfff)}
    return {k: ((pid >> np.uint64(s)) & np.uint64(m)).astype(np.int64)
            for k, (s, m) in fields.items()}


# -- scoring weights ------------------------------------------------------------------------
_ORDER_PROFILE = np.array([10., 8., 6., 5., 3., 3., 3., 5., 6.])
_ORDER_MIN_HITS, _ORDER_MAX_HITS = 4, 20


@functools.lru_cache(maxsize=1)
def order_weight_matrix() -> np.ndarray:
    """(21, 20) w_order[nhits, rank]: the challenge's order profile stretched over nhits ranks
    and normalised to sum 1 (rows below 4 hits are 0)."""
    table = np.zeros((_ORDER_MAX_HITS + 1, _ORDER_MAX_HITS))
    knots = np.arange(len(_ORDER_PROFILE), dtype=np.float64)
    for n in range(_ORDER_MIN_HITS, _ORDER_MAX_HITS + 1):
        # rank i of n sits at knot position i * 8 / (n - 1) of the 9-point profile
        w = np.interp(np.arange(n) * (len(knots) - 1) / (n - 1), knots, _ORDER_PROFILE)
        table[n, :n] = w / w.sum()
    return table


def pt_weight(pt) -> np.ndarray:
    """The challenge's pT weight: 0.2 up to 0.5 GeV, linear to 1 at 3 GeV, 1 above; 0 below
    0.05 GeV."""
    return np.interp(np.asarray(pt, np.float64), [0.05, 0.5, 3.0], [0.2, 0.2, 1.0],
                     left=0.0, right=1.0)


def trackml_weights(hit_particle_id, tz, particles: dict[str, np.ndarray]) -> np.ndarray:
    """Per-hit scoring weights of the TrackML challenge (see the module docstring).

    ``hit_particle_id`` (H,) and ``tz`` (H,) from the truth table (0 = noise); ``particles``
    with particle_id, vz, px, py, nhits. Returns (H,) weights summing to 1 (all 0 if no hit
    counts)."""
    hit_pid = np.asarray(hit_particle_id, np.int64)
    tz = np.asarray(tz, np.float64)
    pid = np.asarray(particles["particle_id"], np.int64)
    order = np.argsort(pid, kind="stable")
    slot = np.searchsorted(pid[order], hit_pid)
    slot = np.minimum(slot, len(pid) - 1) if len(pid) else np.zeros_like(slot)
    known = (hit_pid != 0) & (len(pid) > 0)
    if len(pid):
        known &= pid[order][slot] == hit_pid
    owner = np.where(known, order[slot] if len(pid) else 0, -1)
    weight = np.zeros(len(hit_pid))
    if not known.any():
        return weight
    h = np.flatnonzero(known)
    p = owner[h]
    nhits = np.asarray(particles["nhits"], np.int64)[p]
    dz = np.abs(tz[h] - np.asarray(particles["vz"], np.float64)[p])
    # rank of each hit along its particle by |tz - vz|
    by = np.lexsort((np.arange(len(h)), dz, p))
    first = np.r_[True, p[by][1:] != p[by][:-1]]
    start = np.maximum.accumulate(np.where(first, np.arange(len(by)), 0))
    rank = np.empty(len(h), np.int64)
    rank[by] = np.arange(len(by)) - start
    table = order_weight_matrix()
    n_eff = np.minimum(nhits, _ORDER_MAX_HITS)
    ok = (nhits >= _ORDER_MIN_HITS) & (rank < _ORDER_MAX_HITS) & (rank < n_eff)
    w_order = np.zeros(len(h))
    w_order[ok] = table[n_eff[ok], rank[ok]]
    pt = np.hypot(np.asarray(particles["px"], np.float64)[p],
                  np.asarray(particles["py"], np.float64)[p])
    w = w_order * pt_weight(pt)
    w[decode_particle_id(hit_pid[h])["generation"] != 0] = 0.0
    weight[h] = w
    total = weight.sum()
    return weight / total if total > 0 else weight


# -- geometry -------------------------------------------------------------------------------
@functools.lru_cache(maxsize=4)
def _cached_geometry(path: str, material: tuple | None):
    return geometry_lib.load_geometry(path, None if material is None else dict(material))


def default_geometry(path: str | os.PathLike | None = None,
                     material: tuple[tuple[int, float], ...] | None = None):
    """The TrackML geometry from ``path`` (default: the real detectors.csv.gz in
    ../shared/data), built once per process."""
    path = os.path.abspath(str(DEFAULT_DETECTORS if path is None else path))
    if not os.path.exists(path):
        raise FileNotFoundError(f"TrackML detectors file {path} not found (pass geometry=)")
    return _cached_geometry(path, material)


# -- particles ------------------------------------------------------------------------------
def particle_gun(pt, eta, phi, q, vertex=(0.0, 0.0, 0.0), pdg=211, mass=0.13957039,
                 ) -> dict[str, np.ndarray]:
    """Particles with given pT [GeV], eta, phi, charge and vertex [mm] (broadcast), in the
    layout ``simulate_particles`` takes (particle_id 1..N, vertex_id 1)."""
    pt, eta, phi, q = np.broadcast_arrays(*(np.atleast_1d(np.asarray(a, np.float64))
                                            for a in (pt, eta, phi, q)))
    n = len(pt)
    vertex = np.broadcast_to(np.asarray(vertex, np.float64), (n, 3))
    return {"particle_id": encode_particle_id(1, np.arange(1, n + 1)),
            "particle_type": np.broadcast_to(np.asarray(pdg, np.int64), (n,)).copy(),
            "vx": vertex[:, 0].copy(), "vy": vertex[:, 1].copy(), "vz": vertex[:, 2].copy(),
            "px": pt * np.cos(phi), "py": pt * np.sin(phi), "pz": pt * np.sinh(eta),
            "q": q.astype(np.int64),
            "mass": np.broadcast_to(np.asarray(mass, np.float64), (n,)).copy()}


_PYTHIA = {}


def _seeded_pythia(settings: tuple[str, ...], seed: int):
    """A Pythia initialised once per process for ``settings``, reseeded with ``seed``."""
    from hepjax.data import generation

    if settings not in _PYTHIA:
        _PYTHIA[settings] = generation._pythia(settings, 1)
    pythia = _PYTHIA[settings]
    pythia.rndm.init(int(seed))
    return pythia


def _pythia_seed(seq: np.random.SeedSequence) -> int:
    return int(seq.generate_state(1, np.uint64)[0] % 900_000_000) + 1


def generate_particles(seed: int, config: SimConfig = SimConfig()) -> dict[str, np.ndarray]:
    """Charged final-state particles of one event (hard process + pile-up) at their vertices.

    Returns columns particle_id, particle_type, vx, vy, vz [mm], px, py, pz [GeV], q, mass,
    interaction (0 = the hard process, 1.. pile-up)."""
    import awkward as ak

    root = np.random.SeedSequence([int(seed), 0x7AC4])
    s_vertex, s_pileup, s_hard, s_soft = root.spawn(4)
    hard = (HARD_PROCESSES[config.hard_process] if isinstance(config.hard_process, str)
            else tuple(config.hard_process))
    mu = float(config.pileup_mu)
    if not 0.0 <= mu <= 2000.0:
        raise ValueError(f"pileup_mu={mu}: use 0..2000")
    n_pileup = (int(np.random.default_rng(s_pileup).poisson(mu)) if config.pileup_poisson
                else int(round(mu)))
    if (1 if hard else 0) + n_pileup >= 2047:
        raise ValueError("too many interactions for TrackML particle ids (< 2047)")
    batches = []   # (interaction offset, awkward events, pythia)
    if hard:
        pythia = _seeded_pythia(tuple(hard) + ("PartonLevel:MPI = on",), _pythia_seed(s_hard))
        batches.append((0, pythia.nextBatch(1), pythia))
    first_soft = 1 if hard else 0
    if n_pileup:
        pythia = _seeded_pythia(tuple(config.pileup_settings), _pythia_seed(s_soft))
        batches.append((first_soft, pythia.nextBatch(n_pileup), pythia))
    n_interactions = first_soft + n_pileup
    vrng = np.random.default_rng(s_vertex)
    vertex = np.stack([vrng.normal(0, config.sigma_xy, n_interactions),
                       vrng.normal(0, config.sigma_xy, n_interactions),
                       vrng.normal(0, config.sigma_z, n_interactions)], -1)
    out = {k: [] for k in ("particle_id", "particle_type", "vx", "vy", "vz", "px", "py", "pz",
                           "q", "mass", "interaction")}
    for offset, events, pythia in batches:
        prt = events.prt
        counts = ak.to_numpy(ak.num(prt)).astype(np.int64)
        interaction = offset + np.repeat(np.arange(len(counts)), counts)
        index = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
        pdg = ak.to_numpy(ak.flatten(prt.id)).astype(np.int64)
        status = ak.to_numpy(ak.flatten(prt.status))
        mom = {k: ak.to_numpy(ak.flatten(prt.p[k])).astype(np.float64)
               for k in ("px", "py", "pz", "e")}
        # vProd is missing (None) for particles made at the interaction point
        pos = {k: np.asarray(ak.to_numpy(ak.fill_none(ak.flatten(prt.vProd[k]), 0.0)),
                             np.float64) for k in ("px", "py", "pz")}
        ids, inverse = np.unique(pdg, return_inverse=True)
        data = pythia.particleData
        charge = np.array([data.chargeType(int(i)) for i in ids], np.int64)[inverse] // 3
        pt = np.hypot(mom["px"], mom["py"])
        with np.errstate(divide="ignore", invalid="ignore"):
            eta = np.arcsinh(mom["pz"] / pt)
        vx, vy, vz = (pos[k] + vertex[interaction, j] for j, k in enumerate(("px", "py", "pz")))
        keep = ((status > 0) & (charge != 0) & (pt > config.pt_min)
                & (np.abs(eta) < config.eta_max) & (np.hypot(vx, vy) < 1030.0)
                & (np.abs(vz) < 3000.0))
        mass2 = mom["e"] ** 2 - mom["px"] ** 2 - mom["py"] ** 2 - mom["pz"] ** 2
        out["particle_id"].append(encode_particle_id(interaction[keep] + 1, index[keep] + 1))
        out["particle_type"].append(pdg[keep])
        for k, v in (("vx", vx), ("vy", vy), ("vz", vz)):
            out[k].append(v[keep])
        for k in ("px", "py", "pz"):
            out[k].append(mom[k][keep])
        out["q"].append(charge[keep])
        out["mass"].append(np.sqrt(np.maximum(mass2[keep], 0.0)))
        out["interaction"].append(interaction[keep])
    dtypes = {"particle_id": np.int64, "particle_type": np.int64, "q": np.int64,
              "interaction": np.int64}
    return {k: (np.concatenate(v) if v else np.zeros(0)).astype(dtypes.get(k, np.float64))
            for k, v in out.items()}


# -- helix propagation ----------------------------------------------------------------------
def _helix_offset(phi, kappa, s):
    """Transverse displacement (dx, dy) after transverse arc length s (stable as kappa -> 0)."""
    half = 0.5 * kappa * s
    small = np.abs(half) < 1e-4
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(small, 1.0 - half * half / 6.0, np.sin(half) / half)   # sin(h) / h
    f = s * ratio
    return f * np.cos(phi + half), f * np.sin(phi + half)


def _cylinder_s(x, y, phi, kappa, rho, eps):
    """Smallest transverse arc length s > eps at which the helix reaches radius rho (inf if
    never within less than half a turn). From |x(s)|^2 = rho^2 with tau = tan(kappa s / 2) =
    kappa sigma / 2: alpha sigma^2 + 2 a sigma - (rho^2 - r0^2) = 0, alpha = 1 + b kappa -
    kappa^2 (rho^2 - r0^2) / 4 (a, b: the start point along and across the direction)."""
    c, sn = np.cos(phi), np.sin(phi)
    a = x * c + y * sn
    b = -x * sn + y * c
    delta = rho * rho - (x * x + y * y)
    alpha = 1.0 + b * kappa - 0.25 * kappa * kappa * delta
    disc = a * a + alpha * delta
    sq = np.sqrt(np.maximum(disc, 0.0))
    qq = -(a + np.copysign(sq, a))
    best = np.full(np.broadcast(x, rho).shape, np.inf)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        for sigma in (qq / alpha, -delta / qq):
            t = 0.5 * kappa * sigma
            s = np.where(np.abs(t) < 1e-9, sigma,
                         2.0 * np.arctan(t) / np.where(kappa == 0, 1.0, kappa))
            s = np.where(np.isfinite(s) & (s > eps) & (disc >= 0), s, np.inf)
            best = np.minimum(best, s)
    return best


def _surfaces(geometry, config):
    """Arrays describing the crossable surfaces: the layers, then the beam pipe."""
    layers = geometry.layers
    barrel = np.array([l.barrel for l in layers] + [True])
    position = np.array([l.position for l in layers] + [config.beam_pipe_radius])
    pad = np.array([l.pad for l in layers] + [0.0])
    lo = np.array([(l.z_range[0] if l.barrel else l.r_range[0]) for l in layers] + [-3000.0])
    hi = np.array([(l.z_range[1] if l.barrel else l.r_range[1]) for l in layers] + [3000.0])
    material = dict(geometry.material)
    x_x0 = np.array([material[l.volume_id] for l in layers] + [config.beam_pipe_x0])
    return barrel, position, lo - pad, hi + pad, x_x0


def propagate(geometry, particles: dict[str, np.ndarray], config: SimConfig,
              rng: np.random.Generator) -> dict[str, np.ndarray]:
    """True crossings of ``particles`` with the modules of ``geometry``.

    ``particles``: vx, vy, vz, px, py, pz, q, mass (N,). Returns arrays over the H crossings:
    ``particle`` (index into the particles), ``module`` (index into the geometry), ``position``
    (H, 3) on the module mid-plane, ``momentum`` (H, 3) arriving there, ``path`` (3D path
    length from the vertex, mm). Field along +z; one step per layer surface crossed."""
    barrel, position, lo, hi, x_x0 = _surfaces(geometry, config)
    n_layers = len(geometry.layers)
    is_b = np.flatnonzero(barrel)
    is_e = np.flatnonzero(~barrel)
    pos = np.stack([particles["vx"], particles["vy"], particles["vz"]], -1).astype(np.float64)
    px, py, pz = (np.asarray(particles[k], np.float64) for k in ("px", "py", "pz"))
    q = np.asarray(particles["q"], np.float64)
    mass = np.asarray(particles["mass"], np.float64)
    pt = np.hypot(px, py)
    phi = np.arctan2(py, px)
    with np.errstate(divide="ignore", invalid="ignore"):
        tanl = pz / pt
    turned = np.zeros(len(pt))
    path = np.zeros(len(pt))
    alive = np.flatnonzero((q != 0) & (pt > 0) & np.isfinite(tanl))
    eps = 1e-3
    out = {k: [] for k in ("particle", "module", "position", "momentum", "path")}
    for _ in range(config.max_steps):
        if len(alive) == 0:
            break
        x, y, z = pos[alive, 0], pos[alive, 1], pos[alive, 2]
        ph, tl, kap = phi[alive], tanl[alive], -_KAPPA_UNIT * config.b_field * q[alive] / pt[alive]
        s_all = np.full((len(alive), len(barrel)), np.inf)
        # barrel cylinders: crossing z within the layer's (padded) extent
        sb = _cylinder_s(x[:, None], y[:, None], ph[:, None], kap[:, None], position[is_b], eps)
        zb = z[:, None] + sb * tl[:, None]
        s_all[:, is_b] = np.where((zb >= lo[is_b]) & (zb <= hi[is_b]), sb, np.inf)
        # end-cap disks: crossing radius within the layer's (padded) extent
        with np.errstate(divide="ignore", invalid="ignore"):
            se = (position[is_e][None, :] - z[:, None]) / tl[:, None]
        row, col = np.nonzero(np.isfinite(se) & (se > eps))   # disks ahead of the particle
        s_row = se[row, col]
        dx, dy = _helix_offset(ph[row], kap[row], s_row)
        re = np.hypot(x[row] + dx, y[row] + dy)
        inside = (re >= lo[is_e][col]) & (re <= hi[is_e][col])
        s_all[row[inside], is_e[col[inside]]] = s_row[inside]
        # budgets: half a turn, the maximum path
        stretch = np.sqrt(1.0 + tl * tl)
        s_max = np.minimum((config.max_turn - turned[alive]) / np.maximum(np.abs(kap), 1e-300),
                           (config.max_path - path[alive]) / stretch)
        s_all[s_all > s_max[:, None]] = np.inf
        layer = np.argmin(s_all, 1)
        s_step = s_all[np.arange(len(alive)), layer]
        go = np.isfinite(s_step)
        alive, layer, s_step = alive[go], layer[go], s_step[go]
        x, y, z, ph, tl, kap, stretch = (a[go] for a in (x, y, z, ph, tl, kap, stretch))
        # hits on the modules of the crossed layers
        for l in np.unique(layer):
            if l >= n_layers:
                continue
            sel = np.flatnonzero(layer == l)
            _layer_hits(geometry, geometry.layers[l], alive[sel], x[sel], y[sel], z[sel],
                        ph[sel], tl[sel], kap[sel], s_step[sel], pt[alive[sel]],
                        path[alive[sel]], out)
        # move to the crossing
        dx, dy = _helix_offset(ph, kap, s_step)
        new = np.stack([x + dx, y + dy, z + s_step * tl], -1)
        pos[alive] = new
        ph = ph + kap * s_step
        turned[alive] += np.abs(kap * s_step)
        path[alive] += s_step * stretch
        # material: multiple scattering and ionisation loss
        cos_l = 1.0 / stretch
        d = np.stack([np.cos(ph) * cos_l, np.sin(ph) * cos_l, tl * cos_l], -1)
        r_new = np.hypot(new[:, 0], new[:, 1])
        normal_dot = np.where(barrel[layer],
                              (d[:, 0] * new[:, 0] + d[:, 1] * new[:, 1]) / np.maximum(r_new, 1e-9),
                              d[:, 2])
        x_eff = x_x0[layer] / np.maximum(np.abs(normal_dot), 0.05)
        p = pt[alive] * stretch
        m = mass[alive]
        energy = np.hypot(p, m)
        beta = p / energy
        if config.energy_loss:
            loss = _DEDX_MIP_X0 * x_eff * np.maximum(1.0, _BETA2_MIN_ION / beta ** 2)
            energy = energy - loss
            stopped = energy <= m * (1.0 + 1e-6)
            p = np.sqrt(np.maximum(energy ** 2 - m ** 2, 0.0))
            beta = np.where(stopped, 1.0, p / np.maximum(energy, 1e-300))
        else:
            stopped = np.zeros(len(alive), bool)
        if config.multiple_scattering:
            zq = np.abs(q[alive])
            arg = np.maximum(x_eff * zq * zq / (beta * beta), 1e-12)
            theta0 = _C_HIGHLAND * zq / (beta * np.maximum(p, 1e-12)) * np.sqrt(x_eff) * (
                1.0 + 0.038 * np.log(arg))
            theta0 = np.clip(theta0, 0.0, 0.5)
            kick = rng.normal(size=(len(alive), 2)) * theta0[:, None]
            e1 = np.stack([-np.sin(ph), np.cos(ph), np.zeros_like(ph)], -1)
            e2 = np.stack([-d[:, 2] * np.cos(ph), -d[:, 2] * np.sin(ph), cos_l], -1)
            d = d + kick[:, :1] * e1 + kick[:, 1:] * e2
            d /= np.linalg.norm(d, axis=1, keepdims=True)
        dt = np.hypot(d[:, 0], d[:, 1])
        phi[alive] = np.arctan2(d[:, 1], d[:, 0])
        with np.errstate(divide="ignore", invalid="ignore"):
            tanl[alive] = d[:, 2] / dt
        pt[alive] = p * dt
        alive = alive[~stopped & (dt > 1e-9) & (pt[alive] > 0)]
    if out["particle"]:
        res = {k: np.concatenate(v) for k, v in out.items()}
    else:
        res = {"particle": np.zeros(0, np.int64), "module": np.zeros(0, np.int64),
               "position": np.zeros((0, 3)), "momentum": np.zeros((0, 3)), "path": np.zeros(0)}
    return res


def _layer_hits(geometry, layer, index, x, y, z, ph, tl, kap, s0, pt, path0, out):
    """Hits of particles crossing ``layer``'s nominal surface at transverse arc length s0."""
    dx, dy = _helix_offset(ph, kap, s0)
    cx, cy, cz = x + dx, y + dy, z + s0 * tl
    other = cz if layer.barrel else np.hypot(cx, cy)
    cand = layer.candidates(np.arctan2(cy, cx), other)
    row, col = np.nonzero(cand >= 0)
    module = cand[row, col]
    normal, centre = geometry.normal[module], geometry.centre[module]
    x, y, z, ph, tl, kap, s = (a[row] for a in (x, y, z, ph, tl, kap, s0))
    start = s
    for _ in range(4):   # Newton on n . (x(s) - c) = 0
        dx, dy = _helix_offset(ph, kap, s)
        g = (normal[:, 0] * (x + dx - centre[:, 0]) + normal[:, 1] * (y + dy - centre[:, 1])
             + normal[:, 2] * (z + s * tl - centre[:, 2]))
        a = ph + kap * s
        dg = normal[:, 0] * np.cos(a) + normal[:, 1] * np.sin(a) + normal[:, 2] * tl
        with np.errstate(divide="ignore", invalid="ignore"):
            s = s - g / dg
    dx, dy = _helix_offset(ph, kap, s)
    point = np.stack([x + dx, y + dy, z + s * tl], -1)
    local = geometry.to_local(module, point)
    ok = (np.isfinite(s) & (s > 0) & (np.abs(s - start) < 200.0) & (np.abs(local[:, 2]) < 1e-3)
          & geometry.inside(module, local[:, 0], local[:, 1]))
    if not ok.any():
        return
    a = (ph + kap * s)[ok]
    ptr = pt[row][ok]
    out["particle"].append(index[row][ok])
    out["module"].append(module[ok])
    out["position"].append(point[ok])
    out["momentum"].append(np.stack([ptr * np.cos(a), ptr * np.sin(a), ptr * tl[ok]], -1))
    out["path"].append(path0[row][ok] + s[ok] * np.sqrt(1.0 + tl[ok] ** 2))


# -- digitisation and the event ---------------------------------------------------------------
def _noise_points(geometry, n, rng):
    """``n`` uniform points on modules drawn uniformly: (module, local (n, 3))."""
    module = rng.integers(len(geometry), size=n)
    u = np.empty(n)
    v = np.empty(n)
    todo = np.arange(n)
    while len(todo):   # rejection from the bounding rectangle (trapezoids)
        m = module[todo]
        uu = (2 * rng.random(len(todo)) - 1) * np.maximum(geometry.min_hu[m], geometry.max_hu[m])
        vv = (2 * rng.random(len(todo)) - 1) * geometry.hv[m]
        ok = np.abs(uu) <= geometry.half_u(m, vv)
        u[todo[ok]], v[todo[ok]] = uu[ok], vv[ok]
        todo = todo[~ok]
    return module, np.stack([u, v, np.zeros(n)], -1)


def simulate_particles(particles: dict[str, np.ndarray], seed: int,
                       config: SimConfig = SimConfig(), geometry=None,
                       ) -> dict[str, dict[str, np.ndarray]]:
    """The TrackML event (hits, particles, truth) of given particles (``particle_gun`` or
    ``generate_particles`` columns; ``mass`` defaults to the pion's)."""
    if geometry is None:
        geometry = default_geometry(material=config.material)
    particles = dict(particles)
    n = len(particles["px"])
    particles.setdefault("mass", np.full(n, 0.13957039))
    particles.setdefault("particle_type", np.full(n, 211, np.int64))
    root = np.random.SeedSequence([int(seed), 0xDE7EC7])
    s_prop, s_digi = root.spawn(2)
    raw = propagate(geometry, particles, config, np.random.default_rng(s_prop))
    rng = np.random.default_rng(s_digi)
    keep = rng.random(len(raw["particle"])) < config.hit_efficiency
    raw = {k: v[keep] for k, v in raw.items()}
    module = raw["module"]
    local = geometry.to_local(module, raw["position"])
    local[:, 2] = 0.0
    if config.smear:
        local[:, 0] += (rng.random(len(module)) - 0.5) * geometry.pitch_u[module]
        local[:, 1] += (rng.random(len(module)) - 0.5) * geometry.pitch_v[module]
        local[:, 1] = np.clip(local[:, 1], -geometry.hv[module], geometry.hv[module])
        half = geometry.half_u(module, local[:, 1])
        local[:, 0] = np.clip(local[:, 0], -half, half)
    measured = geometry.to_global(module, local)
    n_signal = len(module)
    f = float(config.noise_fraction)
    n_noise = int(round(f / (1.0 - f) * n_signal)) if 0.0 < f < 1.0 else 0
    noise_module, noise_local = _noise_points(geometry, n_noise, rng)
    noise_xyz = geometry.to_global(noise_module, noise_local)
    all_module = np.concatenate([module, noise_module])
    xyz = np.concatenate([measured, noise_xyz])
    pid = np.asarray(particles["particle_id"], np.int64)
    hit_pid = np.concatenate([pid[raw["particle"]], np.zeros(n_noise, np.int64)])
    txyz = np.concatenate([raw["position"], noise_xyz])
    tp = np.concatenate([raw["momentum"], np.zeros((n_noise, 3))])
    # hits sorted by module as the real files, in random order within a module
    order = np.lexsort((rng.permutation(len(all_module)), all_module))
    all_module, xyz, hit_pid, txyz, tp = (a[order] for a in (all_module, xyz, hit_pid, txyz, tp))
    nhits = np.bincount(raw["particle"], minlength=n).astype(np.int64)
    part = {"particle_id": pid,
            "particle_type": np.asarray(particles["particle_type"], np.int64),
            **{k: np.asarray(particles[k], np.float64) for k in ("vx", "vy", "vz", "px", "py",
                                                                 "pz")},
            "q": np.asarray(particles["q"], np.int64), "nhits": nhits}
    hit_id = np.arange(1, len(all_module) + 1, dtype=np.int64)
    hits = {"hit_id": hit_id, "x": xyz[:, 0], "y": xyz[:, 1], "z": xyz[:, 2],
            "volume_id": geometry.volume_id[all_module],
            "layer_id": geometry.layer_id[all_module],
            "module_id": geometry.module_id[all_module]}
    truth = {"hit_id": hit_id, "particle_id": hit_pid, "tx": txyz[:, 0], "ty": txyz[:, 1],
             "tz": txyz[:, 2], "tpx": tp[:, 0], "tpy": tp[:, 1], "tpz": tp[:, 2]}
    truth["weight"] = trackml_weights(hit_pid, truth["tz"], part)
    return {"hits": hits, "particles": part, "truth": truth}


def simulate_event(seed: int, config: SimConfig = SimConfig(), geometry=None,
                   ) -> dict[str, dict[str, np.ndarray]]:
    """One simulated event in the TrackML layout: {'hits', 'particles', 'truth'} -> columns."""
    particles = generate_particles(seed, config)
    return simulate_particles(particles, seed, config, geometry)


def benchmark(mus=(0, 50, 200), seeds=(1, 2, 3), config: SimConfig = SimConfig()):
    """Seconds per event (generation, detector) and sizes for each mu (Pythia initialised
    beforehand)."""
    geometry = default_geometry(material=config.material)
    rows = []
    for mu in mus:
        cfg = dataclasses.replace(config, pileup_mu=float(mu))
        generate_particles(10_000, dataclasses.replace(cfg, pileup_mu=min(mu, 1),
                                                       pileup_poisson=False))   # Pythia init
        t_gen = t_det = 0.0
        n_hits = n_part = 0
        for seed in seeds:
            t0 = time.perf_counter()
            particles = generate_particles(seed, cfg)
            t1 = time.perf_counter()
            event = simulate_particles(particles, seed, cfg, geometry)
            t2 = time.perf_counter()
            t_gen += t1 - t0
            t_det += t2 - t1
            n_hits += len(event["hits"]["hit_id"])
            n_part += len(event["particles"]["particle_id"])
        k = len(seeds)
        rows.append({"mu": mu, "generation_s": t_gen / k, "detector_s": t_det / k,
                     "hits": n_hits / k, "particles": n_part / k})
    return rows
