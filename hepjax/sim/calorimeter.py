"""A parametrised high-granularity sampling calorimeter: particles in, hits with truth out.

The detector (``hepjax.sim.geometry``): a CMS-HGCAL-like endcap calorimeter in a planar
geometry. Particles enter the front face z = 0 at a transverse position (x, y) with a direction
(any u_z > 0; small angles are the intended use). Default sections: CE-E, 28 layers of W/Cu
absorber + 300 um silicon, 1 cm x 1 cm cells (24.8 X0, 1.03 lambda_int, R_M = 1.12 cm,
E_c = 9.2 MeV); CE-H, 12 layers of 8 cm steel + 3 mm scintillator, 4 cm x 4 cm cells
(5.8 lambda_int); +-40 cm in x and y. ``Geometry().describe()`` prints every derived number.

The showers (``hepjax.sim.showers``, with the papers): electrons, positrons and photons shower
after Grindhammer & Peters (per-shower gamma profiles with correlated (ln T, ln alpha)
fluctuations, core + tail radial profiles, energy spots; photons convert first); pions, kaons,
protons, neutrons and other hadrons by a two-component model (MIP track up to an exponentially
distributed first interaction, a fluctuating electromagnetic fraction f_em after Gabriel, Groom
et al., Bock et al.'s longitudinal shapes in X0 and lambda_int, a wide lateral profile,
non-compensation e/h calibrated out on average); muons as MIP tracks. Sampling fluctuations give
each spot a Gamma-distributed energy of variance a^2 e (a the section's stochastic term for EM
or hadronic deposits), and each shower a constant-term factor (1 + b N(0, 1)).

Digitisation (``simulate_event``): spots are summed per cell and per particle; every cell gets
Gaussian electronic noise of ``noise_mip`` MIPs and is read out if its energy exceeds
``threshold_mip`` MIPs (zero suppression); cells without any particle's energy pass by noise
alone with the Gaussian tail probability, and become hits with the noise flag. Hit energies are
in GeV on the EM scale (the sensor signal divided by the section's electron sampling fraction,
so that the summed response to an electron or photon equals its energy; hadron showers are
calibrated to the same mean).

Truth
-----
Per hit: ``signal_energy`` (GeV, the particles' energy in the cell before noise: the hit's
``energy`` minus its noise), the fraction of ``signal_energy`` from each particle
(contributions; they sum to 1 over the particles of every signal hit), ``dominant`` (the particle
with the largest share) and ``noise``: True for a hit made by noise alone, which has no
contributions, ``signal_energy`` 0 and ``dominant`` -1. (A signal cell's noise is in its
``energy`` and not in its fractions.) Per particle: ``pdg``, ``charge``, true ``energy`` (GeV),
``position`` (x, y, 0) where it enters [cm], unit ``direction``, ``deposited`` (its energy in
all cells, before noise and zero suppression, EM scale), ``visible`` (its share of the hits that
were read out) and ``shower_start`` (z [cm] of the photon conversion or first nuclear
interaction, 0 for e+-, -1 if there is none: muons, punch-through, a photon converting behind).

Events
------
``simulate_event(particles, rng, config)`` simulates given particles (``make_particles`` builds
them: any pdg ids, energies, positions and directions, down to showers a cell apart);
``random_gun`` draws the experiment's events (2-10 particles of e+-, photons, pi+- with 10-200
GeV, entering a +-10 cm square, pointing back to a vertex 320 cm in front, so that showers
overlap); ``jet_particles`` takes the stable particles of Pythia 8 jets (``hepjax.data
.generation``) onto the calorimeter face. Event i of a seed draws everything from
``event_rng(seed, i)`` (``SeedSequence(seed, spawn_key=(i,))``): an event never depends on
how events are chunked or on the number of worker processes.

``generate(n_events, seed, out, ...)`` writes a file in the layout of ``hepjax.sim.io`` (HDF5,
hits as flat arrays with per-event offsets, readers to padded arrays or per-event views);
``add_arguments``/``run_cli`` are the ``hepjax generate calorimeter`` verb.

Speed: per-shower work is vectorised numpy over the shower's spots (a 100 GeV electron makes
~4,000 spots); ``generate`` reports events/s and showers/s. Measured 2026-12-06 on one core of
a 2-core machine busy with another benchmark (nice 19): 2,000 default gun events (11,914
showers, 1,900 hits per event, 84 MB with lzf) in 40 s, ~300 showers/s or ~50 events/s, so
10^5 showers take ~6 minutes of one core.
"""
from __future__ import annotations

import concurrent.futures
import dataclasses
import math
import multiprocessing
import pathlib
import time
from typing import Callable, Sequence

import numpy as np

from hepjax.sim import showers
from hepjax.sim.geometry import Geometry
from hepjax.sim.showers import HadronParams

__all__ = ["SimConfig", "GunConfig", "JetConfig", "simulate_event", "make_particles",
           "random_gun", "jet_particles", "event_rng", "simulate_events", "generate",
           "add_arguments", "run_cli", "classify", "PARTICLE_CHARGE"]

# charge of the particle (positive pdg id); the antiparticle has the opposite one
# (a pi0 is not a calorimeter particle: it decays to two photons before it gets there)
PARTICLE_CHARGE = {11: -1, 13: -1, 22: 0, 12: 0, 14: 0, 16: 0, 130: 0, 310: 0,
                   211: 1, 321: 1, 2212: 1, 2112: 0, 3122: 0, 3112: -1, 3222: 1, 3212: 0,
                   3312: -1, 3322: 0, 3334: -1}
EM, MUON, HADRON, INVISIBLE = "em", "muon", "hadron", "invisible"


@dataclasses.dataclass(frozen=True)
class SimConfig:
    """Everything the simulation of an event depends on besides its particles and seed.

    ``em_constant``/``had_constant``: constant terms b (one Gaussian response factor per EM /
    hadron shower). ``noise_mip``: Gaussian noise per cell, ``threshold_mip``: zero-suppression
    threshold, both in MIPs of the cell's section (one MIP = ``Section.mip_energy`` GeV).
    ``em_profile``: "homogeneous" (default) or "sampling" (Grindhammer-Peters' visible-profile
    terms, ``hepjax.sim.showers``). ``mip_landau_width``: scale of the Moyal factor of MIP
    signals."""
    geometry: Geometry = Geometry()
    em_constant: float = 0.01
    had_constant: float = 0.03
    hadron: HadronParams = HadronParams()
    em_profile: str = "homogeneous"
    noise_mip: float = 0.15
    threshold_mip: float = 0.5
    mip_landau_width: float = 0.06

    def __post_init__(self):
        if self.em_profile not in ("homogeneous", "sampling"):
            raise ValueError(f"em_profile={self.em_profile!r}: use 'homogeneous' or 'sampling'")
        for name in ("em_constant", "had_constant", "noise_mip", "threshold_mip",
                     "mip_landau_width"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name}={value}: must be a finite number >= 0")

    def to_dict(self) -> dict:
        return {"geometry": self.geometry.to_dict(), "em_constant": self.em_constant,
                "had_constant": self.had_constant, "hadron": dataclasses.asdict(self.hadron),
                "em_profile": self.em_profile, "noise_mip": self.noise_mip,
                "threshold_mip": self.threshold_mip, "mip_landau_width": self.mip_landau_width}

    @classmethod
    def from_dict(cls, d: dict) -> "SimConfig":
        d = dict(d)
        d["geometry"] = Geometry.from_dict(d["geometry"])
        d["hadron"] = HadronParams(**d["hadron"])
        return cls(**d)


def event_rng(seed: int, index: int) -> np.random.Generator:
    """The generator of event ``index`` of ``seed``: ``SeedSequence(seed, spawn_key=(index,))``,
    the index-th child of ``SeedSequence(seed).spawn(...)``."""
    return np.random.default_rng(np.random.SeedSequence(int(seed), spawn_key=(int(index),)))


# ---------------------------------------------------------------------------------------------
# particles

def classify(pdg: int) -> str:
    """"em" (e+-, photons), "muon", "invisible" (neutrinos) or "hadron" (anything else)."""
    a = abs(int(pdg))
    if a in (11, 22):
        return EM
    if a == 13:
        return MUON
    if a in (12, 14, 16):
        return INVISIBLE
    return HADRON


def _charge_of(pdg: int) -> int:
    a = abs(int(pdg))
    if a not in PARTICLE_CHARGE:
        raise ValueError(f"pdg id {pdg}: unknown charge; give 'charge' with the particles (known: "
                         f"{sorted(PARTICLE_CHARGE)} and their antiparticles)")
    return PARTICLE_CHARGE[a] * (1 if pdg > 0 else -1)


def make_particles(pdg, energy, x=0.0, y=0.0, direction=None, theta=0.0, phi=0.0,
                   charge=None) -> dict[str, np.ndarray]:
    """Particles entering the calorimeter, broadcast to a common length P: ``pdg`` ids,
    ``energy`` [GeV], entry point (``x``, ``y``) [cm] at z = 0, and a direction given either as
    ``direction`` (P, 3) (normalised here) or by polar angle ``theta`` to the z axis and azimuth
    ``phi`` [rad]. ``charge`` defaults to the charge of the pdg id (``PARTICLE_CHARGE``).
    Returns ``pdg`` (P,) int32, ``energy`` (P,) float64, ``position`` (P, 3), ``direction``
    (P, 3) and ``charge`` (P,) int8."""
    pdg, energy, x, y, theta, phi = np.broadcast_arrays(
        np.atleast_1d(np.asarray(pdg, np.int64)), np.atleast_1d(np.asarray(energy, np.float64)),
        np.atleast_1d(np.asarray(x, np.float64)), np.atleast_1d(np.asarray(y, np.float64)),
        np.atleast_1d(np.asarray(theta, np.float64)), np.atleast_1d(np.asarray(phi, np.float64)))
    n = len(pdg)
    if direction is None:
        direction = np.stack([np.sin(theta) * np.cos(phi), np.sin(theta) * np.sin(phi),
                              np.cos(theta)], -1)
    direction = np.broadcast_to(np.asarray(direction, np.float64), (n, 3)).copy()
    norm = np.linalg.norm(direction, axis=1, keepdims=True)
    direction = np.divide(direction, norm, out=np.full_like(direction, np.nan), where=norm > 0)
    if charge is None:
        charge = [_charge_of(p) for p in pdg]
    return {"pdg": pdg.astype(np.int32), "energy": energy.copy(),
            "position": np.stack([x, y, np.zeros(n)], -1),
            "direction": direction, "charge": np.broadcast_to(np.asarray(charge), (n,))
            .astype(np.int8)}


def _checked_particles(particles: dict) -> dict[str, np.ndarray]:
    for key in ("pdg", "energy", "position", "direction"):
        if key not in particles:
            raise ValueError(f"particles: missing field {key!r} (make_particles builds them)")
    pdg = np.asarray(particles["pdg"]).astype(np.int32).reshape(-1)
    n = len(pdg)
    energy = np.asarray(particles["energy"], np.float64).reshape(-1)
    pos = np.asarray(particles["position"], np.float64)
    if pos.shape == (n, 2):
        pos = np.concatenate([pos, np.zeros((n, 1))], 1)
    direction = np.asarray(particles["direction"], np.float64)
    if energy.shape != (n,) or pos.shape != (n, 3) or direction.shape != (n, 3):
        raise ValueError(f"particles: shapes pdg {pdg.shape}, energy {energy.shape}, position "
                         f"{pos.shape}, direction {direction.shape}; expected ({n},), ({n},), "
                         f"({n}, 2 or 3), ({n}, 3)")
    for name, v in (("energy", energy), ("position", pos), ("direction", direction)):
        bad = ~np.isfinite(v.reshape(n, -1) if n else v.reshape(0, 1)).all(1)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise ValueError(f"particles: field {name!r} of particle {i} is not finite ({v[i]})")
    if (energy <= 0).any():
        i = int(np.flatnonzero(energy <= 0)[0])
        raise ValueError(f"particles: field 'energy' of particle {i} is {energy[i]}; must be > 0")
    norm = np.linalg.norm(direction, axis=1, keepdims=True)
    if (norm <= 0).any():
        i = int(np.flatnonzero(norm[:, 0] <= 0)[0])
        raise ValueError(f"particles: field 'direction' of particle {i} is the zero vector")
    direction = direction / norm
    if (direction[:, 2] <= 0).any():
        i = int(np.flatnonzero(direction[:, 2] <= 0)[0])
        raise ValueError(f"particles: field 'direction' of particle {i} is {direction[i]}; it must "
                         "point into the calorimeter (u_z > 0)")
    charge = (np.asarray(particles["charge"]).astype(np.int8).reshape(-1) if "charge" in particles
              else np.array([_charge_of(p) if classify(p) != INVISIBLE else 0 for p in pdg],
                            np.int8))
    return {"pdg": pdg, "energy": energy, "position": pos, "direction": direction,
            "charge": charge}


# ---------------------------------------------------------------------------------------------
# one event

def _gaussian_tail(rng, a: float, n: int) -> np.ndarray:
    """n draws of a standard normal conditioned on x > a (a >= 0), by Robert's exponential
    rejection sampler (C. P. Robert, "Simulation of truncated normal variables", Statistics and
    Computing 5 (1995) 121)."""
    alpha = 0.5 * (a + math.sqrt(a * a + 4.0))
    out = np.empty(n)
    todo = np.arange(n)
    while len(todo):
        z = a + rng.exponential(1.0 / alpha, len(todo))
        ok = rng.uniform(size=len(todo)) <= np.exp(-0.5 * (z - alpha) ** 2)
        out[todo[ok]] = z[ok]
        todo = todo[~ok]
    return out


def _layer_of_cell(t, cell: np.ndarray) -> np.ndarray:
    return np.searchsorted(t.cell_offset, cell, side="right") - 1


def _normal_sf(x: float) -> float:
    return 0.5 * math.erfc(x / math.sqrt(2.0))


def _particle_spots(geo, rng, config: SimConfig, kind: str, pdg: int, charge: int, energy: float,
                    origin, u) -> tuple[showers.Spots, float]:
    """Spots of one particle and its shower start z (-1: none). A shower's spots get one
    constant-term factor (1 + b N(0, 1)); MIP tracks do not."""
    track = showers.Spots.empty()
    if kind == EM:
        spots, z0 = showers.em_shower(geo, rng, energy, origin, u, photon=abs(pdg) == 22,
                                      profile=config.em_profile)
        b = config.em_constant
    elif kind == HADRON:
        spots, z0, track = showers.hadron_shower(
            geo, rng, energy, origin, u, charged=charge != 0, baryon=1000 <= abs(pdg) < 10000,
            params=config.hadron, profile=config.em_profile, landau_width=config.mip_landau_width)
        b = config.had_constant
    elif kind == MUON:
        spots, _ = showers.mip_track(geo, rng, energy, origin, u, 0.0, math.inf,
                                     config.mip_landau_width)
        return spots, -1.0
    else:
        return showers.Spots.empty(), -1.0
    spots.e = spots.e * max(1.0 + b * rng.standard_normal(), 0.0)
    return showers.Spots.concatenate([track, spots]), (z0 if math.isfinite(z0) else -1.0)


def simulate_event(particles: dict, rng: np.random.Generator,
                   config: SimConfig = SimConfig()) -> dict[str, np.ndarray]:
    """Simulates the particles (``make_particles``) entering the calorimeter together and
    returns one event: hits (H), contributions (C) and particles (P) as numpy arrays.

    Hits, sorted by cell (layer, ix, iy): ``hit_layer``, ``hit_ix``, ``hit_iy`` (int16),
    ``hit_position`` (H, 3) float32 cell centre [cm], ``hit_energy`` float32 [GeV, EM scale],
    ``hit_signal_energy`` float32 [GeV], ``hit_noise`` bool, ``hit_dominant`` int32 (particle
    index, -1 for noise). Contributions (the truth fractions, sparse): ``contrib_hit``,
    ``contrib_particle`` (int32 indices into the event's hits and particles) and
    ``contrib_fraction`` float32, summing to 1 over each signal hit. Particles:
    ``particle_pdg`` int32, ``particle_charge`` int8, ``particle_energy``,
    ``particle_position`` (P, 3), ``particle_direction`` (P, 3), ``particle_deposited``,
    ``particle_visible``, ``particle_shower_start`` (float32; module docstring)."""
    p = _checked_particles(particles)
    geo = config.geometry
    t = geo.tables
    n_part = len(p["pdg"])
    parts, owner, starts = [], [], np.full(n_part, -1.0)
    for i in range(n_part):
        spots, z0 = _particle_spots(geo, rng, config, classify(p["pdg"][i]), int(p["pdg"][i]),
                                    int(p["charge"][i]), float(p["energy"][i]),
                                    p["position"][i], p["direction"][i])
        parts.append(spots)
        owner.append(np.full(len(spots), i, np.int64))
        starts[i] = z0
    spots = showers.Spots.concatenate(parts)
    owner = np.concatenate(owner) if owner else np.zeros(0, np.int64)

    # spots -> cells
    z_end = t.z_bound[-1]
    inside = np.isfinite(spots.z) & (spots.z < z_end)
    layer = showers._layer_of(geo, np.where(inside, spots.z, 0.0))
    size, n_cells = t.cell_size[layer], t.n_cells[layer]
    ix = np.floor((spots.x + geo.half_width) / size).astype(np.int64)
    iy = np.floor((spots.y + geo.half_width) / size).astype(np.int64)
    inside &= (ix >= 0) & (ix < n_cells) & (iy >= 0) & (iy < n_cells)
    stochastic = t.stochastic[layer, np.minimum(spots.kind, 1)]
    energy = showers.sample_fluctuations(rng, stochastic, spots.kind, spots.e)
    keep = inside & (energy > 0)
    cell = (t.cell_offset[layer] + ix * n_cells + iy)[keep]
    energy, owner = energy[keep], owner[keep]

    # (cell, particle) contributions, sorted by cell then particle
    key, inverse = np.unique(cell * max(n_part, 1) + owner, return_inverse=True)
    c_energy = np.bincount(inverse, weights=energy, minlength=len(key))
    c_cell, c_part = key // max(n_part, 1), key % max(n_part, 1)
    deposited = np.bincount(c_part, weights=c_energy, minlength=n_part)
    first = np.flatnonzero(np.r_[True, c_cell[1:] != c_cell[:-1]]) if len(key) else \
        np.zeros(0, np.int64)
    s_cell = c_cell[first]
    s_energy = np.add.reduceat(c_energy, first) if len(first) else np.zeros(0)
    s_layer = _layer_of_cell(t, s_cell) if len(s_cell) else np.zeros(0, np.int64)

    # noise and zero suppression
    mip = t.mip_energy[s_layer]
    measured = s_energy + (config.noise_mip * mip * rng.standard_normal(len(s_cell))
                           if config.noise_mip > 0 else 0.0)
    read = (measured > config.threshold_mip * mip) & (measured > 0)
    n_total = int(t.cell_offset[-1])
    n_noise = 0
    if config.noise_mip > 0:
        a = config.threshold_mip / config.noise_mip
        n_noise = int(rng.binomial(n_total - len(s_cell), _normal_sf(a)))
    if n_noise:
        pick = rng.choice(n_total, size=min(n_total, n_noise + len(s_cell)), replace=False)
        noise_cell = pick[~np.isin(pick, s_cell, assume_unique=True)][:n_noise]
        noise_layer = _layer_of_cell(t, noise_cell)
        noise_energy = (config.noise_mip * t.mip_energy[noise_layer]
                        * _gaussian_tail(rng, config.threshold_mip / config.noise_mip, n_noise))
    else:
        noise_cell = np.zeros(0, np.int64)
        noise_energy = np.zeros(0)

    # hits: read-out signal cells and noise cells, sorted by cell
    hit_cell = np.concatenate([s_cell[read], noise_cell])
    order = np.argsort(hit_cell, kind="stable")
    hit_cell = hit_cell[order]
    hit_energy = np.concatenate([measured[read], noise_energy])[order]
    hit_signal = np.concatenate([s_energy[read], np.zeros(len(noise_cell))])[order]
    hit_noise = np.concatenate([np.zeros(read.sum(), bool), np.ones(len(noise_cell), bool)])[order]
    # contributions of read-out signal cells, re-indexed to hits
    signal_index = np.full(len(s_cell), -1, np.int64)
    signal_index[np.flatnonzero(read)] = np.flatnonzero(~hit_noise)  # both sorted by cell
    c_signal = np.repeat(np.arange(len(first)), np.diff(np.r_[first, len(key)]))
    c_hit = signal_index[c_signal]
    c_keep = c_hit >= 0
    c_hit, c_part_k, c_e = c_hit[c_keep], c_part[c_keep], c_energy[c_keep]
    c_fraction = c_e / hit_signal[c_hit] if len(c_hit) else np.zeros(0)
    dominant = np.full(len(hit_cell), -1, np.int64)
    if len(c_hit):
        best = np.lexsort((-c_e, c_hit))
        head = best[np.r_[True, c_hit[best][1:] != c_hit[best][:-1]]]
        dominant[c_hit[head]] = c_part_k[head]
    visible = np.bincount(c_part_k, weights=c_e, minlength=n_part)
    h_layer = _layer_of_cell(t, hit_cell) if len(hit_cell) else np.zeros(0, np.int64)
    local = hit_cell - t.cell_offset[h_layer]
    h_ix, h_iy = local // t.n_cells[h_layer], local % t.n_cells[h_layer]
    return {
        "hit_layer": h_layer.astype(np.int16), "hit_ix": h_ix.astype(np.int16),
        "hit_iy": h_iy.astype(np.int16),
        "hit_position": geo.cell_centres(h_layer, h_ix, h_iy).astype(np.float32),
        "hit_energy": hit_energy.astype(np.float32),
        "hit_signal_energy": hit_signal.astype(np.float32),
        "hit_noise": hit_noise, "hit_dominant": dominant.astype(np.int32),
        "contrib_hit": c_hit.astype(np.int32), "contrib_particle": c_part_k.astype(np.int32),
        "contrib_fraction": c_fraction.astype(np.float32),
        "particle_pdg": p["pdg"].astype(np.int32), "particle_charge": p["charge"],
        "particle_energy": p["energy"].astype(np.float32),
        "particle_position": p["position"].astype(np.float32),
        "particle_direction": p["direction"].astype(np.float32),
        "particle_deposited": deposited.astype(np.float32),
        "particle_visible": visible.astype(np.float32),
        "particle_shower_start": starts.astype(np.float32),
    }


# ---------------------------------------------------------------------------------------------
# event sources

@dataclasses.dataclass(frozen=True)
class GunConfig:
    """The random particle gun of the experiment: per event a number of particles uniform in
    ``n_particles`` (inclusive), each of a pdg id drawn uniformly from ``pdgs``, an energy
    uniform in ``energy`` [GeV], entering uniformly in the square |x|, |y| <= ``spread`` cm and
    pointing back to a vertex ``vertex_distance`` cm in front of the calorimeter (projective, as
    from the collision point; 0 gives normal incidence)."""
    n_particles: tuple[int, int] = (2, 10)
    energy: tuple[float, float] = (10.0, 200.0)
    pdgs: tuple[int, ...] = (11, -11, 22, 211, -211)
    spread: float = 10.0
    vertex_distance: float = 320.0

    def __post_init__(self):
        lo, hi = self.n_particles
        if not 1 <= lo <= hi:
            raise ValueError(f"n_particles={self.n_particles}: need 1 <= min <= max")
        if not 0 < self.energy[0] <= self.energy[1]:
            raise ValueError(f"energy={self.energy}: need 0 < min <= max [GeV]")
        if not self.pdgs:
            raise ValueError("pdgs: give at least one pdg id")
        for pdg in self.pdgs:
            _charge_of(pdg)
        if self.spread < 0 or self.vertex_distance < 0:
            raise ValueError("spread and vertex_distance must be >= 0")


def random_gun(rng: np.random.Generator, gun: GunConfig = GunConfig()) -> dict[str, np.ndarray]:
    """One event of ``gun``'s particles (``make_particles`` layout)."""
    n = int(rng.integers(gun.n_particles[0], gun.n_particles[1] + 1))
    pdg = np.asarray(gun.pdgs)[rng.integers(0, len(gun.pdgs), n)]
    energy = rng.uniform(gun.energy[0], gun.energy[1], n)
    x, y = rng.uniform(-gun.spread, gun.spread, (2, n))
    if gun.vertex_distance > 0:
        direction = np.stack([x, y, np.full(n, gun.vertex_distance)], -1)
    else:
        direction = np.tile([0.0, 0.0, 1.0], (n, 1))
    return make_particles(pdg, energy, x, y, direction=direction)


@dataclasses.dataclass(frozen=True)
class JetConfig:
    """Pythia 8 jets (``hepjax.data.generation``, task ``task``, process ``process`` = its class
    index, no detector) onto the calorimeter: the face is the plane perpendicular to the jet axis
    at ``face_distance`` cm from the collision point; a particle enters where its straight line
    from the collision point crosses it, with its direction in that frame (the calorimeter z axis
    is the jet axis). Particles that miss the face (+- half_width) or have less than
    ``min_energy`` GeV are left out; neutrinos are never simulated. ``events_per_chunk`` Pythia
    events per seeded chunk (as in ``generation.generate``)."""
    task: str = "quark-gluon"
    process: int = 1
    face_distance: float = 320.0
    min_energy: float = 0.0
    events_per_chunk: int = 50


def jets_to_particles(p4: np.ndarray, pid: np.ndarray, charge: np.ndarray, jet_p4: np.ndarray,
                      face_distance: float, half_width: float, min_energy: float = 0.0) -> dict:
    """The particles of one jet (constituents ``p4`` (n, 4) (E, px, py, pz) GeV, ``pid``,
    ``charge``; axis from ``jet_p4``) on the calorimeter face (``JetConfig``)."""
    axis = jet_p4[1:4] / np.linalg.norm(jet_p4[1:4])
    e1 = np.array([-axis[1], axis[0], 0.0])            # along increasing phi
    e1 /= np.linalg.norm(e1)
    e2 = np.cross(axis, e1)
    mom = p4[:, 1:4].astype(np.float64)
    norm = np.linalg.norm(mom, axis=1)
    ok = norm > 0
    unit = np.divide(mom, norm[:, None], out=np.zeros_like(mom), where=ok[:, None])
    along = unit @ axis
    ok &= along > 1e-3
    u = np.stack([unit @ e1, unit @ e2, along], -1)
    x = face_distance * np.divide(u[:, 0], along, out=np.zeros_like(along), where=ok)
    y = face_distance * np.divide(u[:, 1], along, out=np.zeros_like(along), where=ok)
    ok &= (np.abs(x) < half_width) & (np.abs(y) < half_width) & (p4[:, 0] > min_energy)
    ok &= np.array([classify(q) != INVISIBLE for q in pid], bool) if len(pid) else ok
    return make_particles(pid[ok], p4[ok, 0].astype(np.float64), x[ok], y[ok], direction=u[ok],
                          charge=charge[ok])


def jet_particles(n_events: int, seed: int, jets: JetConfig = JetConfig(),
                  half_width: float = 40.0) -> list[dict]:
    """``n_events`` particle lists, one per Pythia jet (``JetConfig``); needs pythia8mc and
    fastjet (``hepjax[gen]``). The jets of chunk c come from ``generation.chunk_seed(seed,
    process, c)``; events take them in order."""
    from hepjax.data import generation

    generation.require_generators()
    out, chunk = [], 0
    while len(out) < n_events:
        got = generation.simulate_chunk(jets.task, jets.process, seed, chunk, detector="none",
                                        events_per_chunk=jets.events_per_chunk)
        chunk += 1
        for j in range(len(got["jet_p4"])):
            n = int(got["n_constituents"][j])
            out.append(jets_to_particles(got["p4"][j, :n], got["pid"][j, :n],
                                         got["charge"][j, :n], got["jet_p4"][j].astype(np.float64),
                                         jets.face_distance, half_width, jets.min_energy))
            if len(out) == n_events:
                break
        if chunk > 1000 and not out:
            raise RuntimeError("no jets passed the selection in 1000 chunks")
    return out


# ---------------------------------------------------------------------------------------------
# many events

def simulate_events(seed: int, indices: Sequence[int], config: SimConfig = SimConfig(),
                    gun: GunConfig = GunConfig(), particles: Sequence[dict] | None = None
                    ) -> list[dict]:
    """Events ``indices`` of ``seed``: each draws from ``event_rng(seed, index)`` its gun
    particles (or simulates ``particles[k]`` for the k-th index, when given)."""
    events = []
    for k, index in enumerate(indices):
        rng = event_rng(seed, index)
        parts = random_gun(rng, gun) if particles is None else particles[k]
        events.append(simulate_event(parts, rng, config))
    return events


def _job(args):
    return simulate_events(*args)


def generate(n_events: int, seed: int, out: str | pathlib.Path, *,
             config: SimConfig = SimConfig(), gun: GunConfig = GunConfig(),
             source: str = "gun", jets: JetConfig = JetConfig(), workers: int = 1,
             chunk_events: int = 50, compression: str | None = "lzf",
             progress: Callable[[int], None] | None = None) -> dict:
    """Writes ``n_events`` events of ``source`` ("gun": ``gun``; "jets": Pythia jets,
    ``jets``) to the HDF5 file ``out`` (``hepjax.sim.io``); identical for any ``workers`` and
    ``chunk_events``. Returns a summary: events, particles (showers), hits, seconds, events/s,
    showers/s."""
    from hepjax.sim import io

    n_events = int(n_events)
    if n_events < 0:
        raise ValueError(f"n_events={n_events}: must be >= 0")
    if source not in ("gun", "jets"):
        raise ValueError(f"source={source!r}: use 'gun' or 'jets'")
    if workers < 1 or chunk_events < 1:
        raise ValueError("workers and chunk_events must be >= 1")
    start = time.perf_counter()
    particles = (jet_particles(n_events, seed, jets, config.geometry.half_width)
                 if source == "jets" else None)
    meta = {"seed": int(seed), "n_events": n_events, "source": source,
            "gun": dataclasses.asdict(gun) if source == "gun" else None,
            "jets": dataclasses.asdict(jets) if source == "jets" else None}
    chunks = [list(range(a, min(a + chunk_events, n_events)))
              for a in range(0, n_events, chunk_events)]
    args = [(seed, c, config, gun, None if particles is None else particles[c[0]:c[-1] + 1])
            for c in chunks]
    n_particles = n_hits = 0
    with io.CalorimeterWriter(out, config, meta, compression=compression) as writer:
        def take(events):
            nonlocal n_particles, n_hits
            writer.append(events)
            n_particles += sum(len(e["particle_pdg"]) for e in events)
            n_hits += sum(len(e["hit_energy"]) for e in events)
            if progress is not None:
                progress(len(events))

        if workers <= 1:
            for a in args:
                take(_job(a))
        else:
            context = multiprocessing.get_context("spawn")
            with concurrent.futures.ProcessPoolExecutor(int(workers), mp_context=context) as pool:
                pending, todo = [], list(args)
                while pending or todo:   # at most 2 chunks per worker in flight, in order
                    while todo and len(pending) < 2 * workers:
                        pending.append(pool.submit(_job, todo.pop(0)))
                    take(pending.pop(0).result())
    seconds = time.perf_counter() - start
    return {"out": str(out), "n_events": n_events, "n_particles": n_particles,
            "n_hits": n_hits, "seconds": round(seconds, 2),
            "events_per_s": round(n_events / seconds, 2) if seconds > 0 else None,
            "showers_per_s": round(n_particles / seconds, 2) if seconds > 0 else None,
            "workers": int(workers)}


# ---------------------------------------------------------------------------------------------
# command line: hepjax generate calorimeter

def _int_range(text: str) -> tuple[int, int]:
    parts = text.replace(",", "-").split("-")
    try:
        lo, hi = (int(parts[0]), int(parts[-1])) if len(parts) in (1, 2) else (None, None)
    except ValueError:
        lo = hi = None
    if lo is None:
        raise ValueError(f"--particles {text!r}: give N or MIN-MAX")
    return lo, hi


def _float_pair(text: str, name: str) -> tuple[float, float]:
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        values = []
    if len(values) not in (1, 2):
        raise ValueError(f"{name} {text!r}: give E or MIN,MAX in GeV")
    return values[0], values[-1]


def add_arguments(parser) -> None:
    """The options of ``hepjax generate calorimeter`` on an argparse parser."""
    parser.add_argument("--n-events", type=int, required=True)
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--out", required=True, help="output HDF5 file (hepjax.sim.io layout)")
    parser.add_argument("--source", choices=("gun", "jets"), default="gun",
                        help="random particle gun (default) or Pythia 8 jets (needs hepjax[gen])")
    parser.add_argument("--particles", default="2-10", help="particles per event, N or MIN-MAX")
    parser.add_argument("--energy", default="10,200", help="particle energy MIN,MAX [GeV], uniform")
    parser.add_argument("--pdgs", default="11,-11,22,211,-211", help="pdg ids drawn uniformly")
    parser.add_argument("--spread", type=float, default=10.0,
                        help="particles enter in |x|,|y| <= SPREAD cm")
    parser.add_argument("--vertex-distance", type=float, default=320.0,
                        help="directions point back to a vertex this far in front [cm]; 0: normal")
    parser.add_argument("--noise-mip", type=float, default=0.15, help="cell noise [MIP]")
    parser.add_argument("--threshold-mip", type=float, default=0.5,
                        help="zero-suppression threshold [MIP]")
    parser.add_argument("--em-profile", choices=("homogeneous", "sampling"), default="homogeneous")
    parser.add_argument("--jet-task", choices=("quark-gluon", "top-tagging"), default="quark-gluon")
    parser.add_argument("--jet-process", type=int, default=1,
                        help="class index of the jet task's process "
                             "(quark-gluon: 0 gluon, 1 quark)")
    parser.add_argument("--face-distance", type=float, default=320.0,
                        help="jets: calorimeter face distance from the collision [cm]")
    parser.add_argument("--workers", type=int, default=1, help="worker processes")
    parser.add_argument("--chunk-events", type=int, default=50,
                        help="events per job and per write (does not change the events)")


def run_cli(args) -> dict:
    """Runs ``hepjax generate calorimeter`` from parsed ``add_arguments`` options; returns the
    summary of ``generate``."""
    try:
        pdgs = tuple(int(v) for v in args.pdgs.split(","))
    except ValueError:
        raise ValueError(f"--pdgs {args.pdgs!r}: give comma-separated integers") from None
    gun = GunConfig(n_particles=_int_range(args.particles),
                    energy=_float_pair(args.energy, "--energy"), pdgs=pdgs, spread=args.spread,
                    vertex_distance=args.vertex_distance)
    config = SimConfig(noise_mip=args.noise_mip, threshold_mip=args.threshold_mip,
                       em_profile=args.em_profile)
    jets = JetConfig(task=args.jet_task, process=args.jet_process,
                     face_distance=args.face_distance)
    out = pathlib.Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    return generate(args.n_events, args.seed, out, config=config, gun=gun, source=args.source,
                    jets=jets, workers=args.workers, chunk_events=args.chunk_events)
