"""Calorimeter fast-simulation data: single particles of ``hepjax.sim`` voxelised into a small
CaloGAN-like grid, and the CaloFlow-style preprocessing the generative models learn.

Showers (``CaloDataConfig``)
----------------------------
One particle type per dataset (default photons, pdg 22) at normal incidence, entering the centre
of CE-E cell (40, 40) (x = y = 0.5 cm, the centre of a 1 cm cell), with an energy log-uniform in
[10, 100] GeV, simulated with the default ``hepjax.sim.SimConfig`` (Grindhammer-Peters showers,
sampling fluctuations, 0.15 MIP noise, zero suppression at 0.5 MIP). Shower i of a seed uses
``hepjax.sim.event_rng(seed, i)`` for its energy and its simulation, so a dataset does not depend
on the number of worker processes.

Voxels: the 28 CE-E layers (1 cm cells, 0.886 X0 each) are summed in ``groups`` of consecutive
layers (default four groups of 7 layers = 6.2 X0 each) and, transversely, over a ``grid`` x
``grid`` window of cells centred on the cell the particle enters (default 5 x 5 cells, +-2.5 cm,
2.2 Moliere radii). Hit energies (GeV, EM scale, noise included; noise-only hits inside the window
count as in data) are summed per voxel. Energy outside the window and in CE-H is not part of the
shower image (about 5 % for photons: the response E_dep / E_inc of the images is ~0.95).

Preprocessing (``CaloPreprocessor``, after CaloFlow, Krause & Shih arXiv:2106.05285, sec. 3)
--------------------------------------------------------------------------------------------
1. dequantisation of the zero-suppressed read-out (``dequantise="zeros_log"``, the default):
   a voxel with energy is left as it is (it holds at least the threshold ``noise``, 0.5 MIP of
   CE-E = 5.34 MeV, since each of its cells passed zero suppression) and a zero voxel is
   replaced by a value drawn log-uniformly in [t e^-2, t e^-1] (``box``), below the threshold t
   with an empty gap of one e-fold; the inverse's cut in the middle of the gap, t e^-0.5, then
   gives back exactly the zero voxels, and the voxels with energy exactly. The gap keeps the
   model's smoothing of the box's upper edge from turning zero voxels into spurious hits just
   above the threshold (with a gap of 0.02 instead, a flow made the outer cells 1-3 % too
   often non-zero). (``dequantise="uniform"``, CaloFlow's choice and this
   module's first one, adds uniform noise in [0, t) to every voxel: it biases each voxel with
   energy by t/2 on average, +0.5 % on E_tot here, which the band test of the response sees.
   The log-uniform box also keeps a zero voxel's logit within one unit below the threshold
   instead of a long tail towards -inf, which a flow learns more easily.)
   ``transform`` draws the noise with a numpy generator (one draw for a data set);
   ``transform_jax`` is the same map in JAX with the noise drawn from a key, so that a training
   loss can redraw it at every step (``flows.dequantised_flow_loss``: a flow trained on one
   draw memorises it; measured in experiments/generative/README.md). A wider gap
   (``box=(4, 3)``: three e-folds) was tried and made the flow worse.
2. L layer variables: u_0 = ln(E_tot / E_inc) and u_k = E_k / (E_k + ... + E_{L-1}) for
   k = 0 .. L-2 (the latter through logit(alpha + (1 - 2 alpha) u), alpha = 1e-6);
3. normalised shapes: v = E_voxel / E_layer (each layer's shape sums to 1), through the same
   logit;
4. each of the L + L G^2 coordinates standardised with the training set's mean and std.

The inverse (generated vectors to voxels) undoes 4-2, renormalises each layer's shape to sum to
1 (the models do not enforce it), multiplies by the layer energies and sets voxels below the
cut to zero (CaloFlow does the same with its 1 keV cut); the energy of the zero voxels' boxes
(at most 25 t per layer) leaves with them, so the layer and total energies are those of the
voxels with energy, as in the simulation. The condition is
c = 2 (ln E_inc - ln E_min) / (ln E_max - ln E_min) - 1 in [-1, 1].

Calibrations after training (fitted on the training showers only, from the model's own showers
generated at the training energies; numpy, applied in ``inverse``, no cost on the sampler):
``ZeroCalibration`` replaces the fixed cut by per-voxel read-out thresholds in cells of
(E_inc, layer energy) chosen so that every voxel's zero fraction matches the training showers'
(quantile matching); ``LayerCalibration`` maps the L layer-energy coordinates of the vectors
onto the training showers' quantiles per E_inc bin (an energy calibration per layer).
"""
from __future__ import annotations

import concurrent.futures
import dataclasses
import math
import time

import numpy as np

from hepjax.sim import SimConfig, event_rng, make_particles, simulate_event

__all__ = ["CaloDataConfig", "voxelise", "simulate_showers", "CaloPreprocessor",
           "ZeroCalibration", "LayerCalibration", "N_CEE"]

N_CEE = 28          # CE-E layers of the default geometry


@dataclasses.dataclass(frozen=True)
class CaloDataConfig:
    pdg: int = 22
    energy: tuple[float, float] = (10.0, 100.0)     # GeV, log-uniform
    entry: tuple[float, float] = (0.5, 0.5)         # cm, x and y of the entry point (z = 0)
    groups: tuple[tuple[int, int], ...] = ((0, 7), (7, 14), (14, 21), (21, 28))
    grid: int = 5

    def __post_init__(self):
        if self.grid < 1 or self.grid % 2 == 0:
            raise ValueError(f"grid={self.grid}: use an odd number of cells (centred on the axis)")
        for a, b in self.groups:
            if not 0 <= a < b <= N_CEE:
                raise ValueError(f"group {(a, b)}: layers must lie in [0, {N_CEE})")
        if not 0 < self.energy[0] <= self.energy[1]:
            raise ValueError(f"energy={self.energy}")

    @property
    def shape(self) -> tuple[int, int, int]:
        return (len(self.groups), self.grid, self.grid)

    def centre_cell(self, sim: SimConfig = SimConfig()) -> tuple[int, int]:
        geo = sim.geometry
        size = geo.sections[0].cell_size
        return tuple(int(np.floor((c + geo.half_width) / size)) for c in self.entry)

    def describe(self, sim: SimConfig = SimConfig()) -> str:
        s = sim.geometry.sections[0]
        groups = ", ".join(f"{a}-{b - 1}" for a, b in self.groups)
        return (f"pdg {self.pdg}, E_inc log-uniform in {self.energy} GeV, normal incidence at "
                f"(x, y) = {self.entry} cm; voxels: CE-E layers grouped as [{groups}] "
                f"({s.layer_x0 * (self.groups[0][1] - self.groups[0][0]):.1f} X0 per group of "
                f"{self.groups[0][1] - self.groups[0][0]}) x {self.grid} x {self.grid} cells of "
                f"{s.cell_size} cm around the entry cell")


def voxelise(event: dict, config: CaloDataConfig, centre: tuple[int, int]) -> np.ndarray:
    """(L, G, G) float32 voxel energies [GeV] of one ``simulate_event`` output."""
    half = config.grid // 2
    layer = event["hit_layer"].astype(np.int64)
    ix = event["hit_ix"].astype(np.int64) - (centre[0] - half)
    iy = event["hit_iy"].astype(np.int64) - (centre[1] - half)
    group = np.full(N_CEE + 64, -1, np.int64)
    for g, (a, b) in enumerate(config.groups):
        group[a:b] = g
    gl = np.where(layer < len(group), group[np.minimum(layer, len(group) - 1)], -1)
    keep = (gl >= 0) & (ix >= 0) & (ix < config.grid) & (iy >= 0) & (iy < config.grid)
    out = np.zeros(config.shape, np.float64)
    np.add.at(out, (gl[keep], ix[keep], iy[keep]), event["hit_energy"][keep])
    return out.astype(np.float32)


def _simulate_range(args):
    config, sim, seed, start, stop = args
    centre = config.centre_cell(sim)
    lo, hi = np.log(config.energy[0]), np.log(config.energy[1])
    vox = np.zeros((stop - start,) + config.shape, np.float32)
    e_inc = np.zeros(stop - start, np.float32)
    t0 = time.perf_counter()
    for k, i in enumerate(range(start, stop)):
        rng = event_rng(seed, i)
        e = float(np.exp(rng.uniform(lo, hi)))
        ev = simulate_event(make_particles(config.pdg, e, config.entry[0], config.entry[1]),
                            rng, sim)
        vox[k] = voxelise(ev, config, centre)
        e_inc[k] = e
    return vox, e_inc, time.perf_counter() - t0


def simulate_showers(n: int, seed: int, config: CaloDataConfig = CaloDataConfig(),
                     sim: SimConfig = SimConfig(), workers: int = 1, chunk: int = 500) -> dict:
    """``n`` showers of ``seed``: {"voxels" (n, L, G, G) float32 GeV, "e_inc" (n,) float32 GeV,
    "sim_s_per_shower": simulation + voxelisation time per shower on one core}."""
    jobs = [(config, sim, seed, a, min(a + chunk, n)) for a in range(0, n, chunk)]
    if workers > 1 and len(jobs) > 1:
        with concurrent.futures.ProcessPoolExecutor(workers) as pool:
            parts = list(pool.map(_simulate_range, jobs))
    else:
        parts = [_simulate_range(j) for j in jobs]
    vox = np.concatenate([p[0] for p in parts]) if parts else np.zeros((0,) + config.shape)
    e_inc = np.concatenate([p[1] for p in parts]) if parts else np.zeros(0)
    busy = sum(p[2] for p in parts)
    return {"voxels": vox, "e_inc": e_inc, "sim_s_per_shower": busy / max(n, 1)}


@dataclasses.dataclass
class CaloPreprocessor:
    """The CaloFlow-style map between voxels (N, L, G, G) and model vectors (N, L + L G^2)
    (module docstring). ``fit`` sets the standardisation from training showers."""
    energy: tuple[float, float] = (10.0, 100.0)
    # GeV: the zero-suppression threshold, 0.5 MIP of CE-E on the EM scale (SimConfig's default)
    noise: float = 0.5 * SimConfig().geometry.sections[0].mip_energy
    alpha: float = 1e-6
    dequantise: str = "zeros_log"      # or "uniform" (module docstring)
    box: tuple[float, float] = (2.0, 1.0)    # zeros_log: log-uniform in [t e^-box0, t e^-box1]
    mean: np.ndarray | None = None
    std: np.ndarray | None = None

    def __post_init__(self):
        if self.dequantise not in ("zeros_log", "uniform"):
            raise ValueError(f"CaloPreprocessor.dequantise={self.dequantise!r}: use 'zeros_log' "
                             f"or 'uniform'")
        if not 0 < self.box[1] < self.box[0]:
            raise ValueError(f"CaloPreprocessor.box={self.box}: need 0 < box[1] < box[0]")

    @property
    def cut(self) -> float:
        """Generated voxels below this energy [GeV] are set to zero by ``inverse``."""
        if self.dequantise == "zeros_log":
            return self.noise * float(np.exp(-0.5 * self.box[1]))
        return self.noise

    def condition(self, e_inc) -> np.ndarray:
        lo, hi = np.log(self.energy[0]), np.log(self.energy[1])
        return (2.0 * (np.log(np.asarray(e_inc, np.float64)) - lo) / (hi - lo) - 1.0)[:, None] \
            .astype(np.float32)

    def _logit(self, u, xp=np):
        u = self.alpha + (1.0 - 2.0 * self.alpha) * u
        return xp.log(u) - xp.log1p(-u)

    def _expit(self, y):
        u = 1.0 / (1.0 + np.exp(-np.clip(y, -50, 50)))
        return np.clip((u - self.alpha) / (1.0 - 2.0 * self.alpha), 0.0, 1.0)

    def _vectors(self, v, e_inc, xp):
        """Steps 2-3 on dequantised voxels v (N, L, G^2) with the array module ``xp`` (numpy in
        float64 for ``raw``, jax.numpy for ``transform_jax``): the same formulas for both."""
        n, L = v.shape[:2]
        e_layer = v.sum(-1)
        e_tot = e_layer.sum(-1)
        tail = xp.cumsum(e_layer[:, ::-1], -1)[:, ::-1]           # E_k + ... + E_{L-1}
        u = [xp.log(e_tot / e_inc)[:, None]]
        if L > 1:
            u.append(self._logit(e_layer[:, :-1] / tail[:, :-1], xp))
        shapes = self._logit(v / xp.maximum(e_layer[..., None], 1e-30), xp)
        return xp.concatenate(u + [shapes.reshape(n, -1)], -1)

    def raw(self, voxels, e_inc, rng: np.random.Generator | None) -> np.ndarray:
        """Steps 1-3 (before standardisation), float64 (N, L + L G^2)."""
        v = np.asarray(voxels, np.float64)
        n, L = v.shape[:2]
        v = v.reshape(n, L, -1)
        if rng is not None and self.noise > 0 and self.dequantise == "uniform":
            v = v + rng.uniform(0.0, self.noise, v.shape)
        elif rng is not None and self.noise > 0:
            lo, hi = self.box
            fill = self.noise * np.exp(-rng.uniform(hi, lo, v.shape))
            v = np.where(v > 0, v, fill)
        return self._vectors(v, np.asarray(e_inc, np.float64), np)

    def dequantise_jax(self, voxels, key):
        """Step 1 in JAX, drawn from ``key`` (jit-able; used inside a training loss so that the
        noise is redrawn at every step instead of once for the training set): voxels (N, ...)
        >= 0 -> dequantised voxels of the same shape, float32."""
        import jax
        import jax.numpy as jnp
        v = jnp.asarray(voxels, jnp.float32)
        if self.noise <= 0:
            return v
        if self.dequantise == "uniform":
            return v + jax.random.uniform(key, v.shape, jnp.float32, 0.0, self.noise)
        lo, hi = self.box
        fill = self.noise * jnp.exp(-jax.random.uniform(key, v.shape, jnp.float32, hi, lo))
        return jnp.where(v > 0, v, fill)

    def transform_jax(self, voxels, e_inc, key):
        """``transform`` in JAX (float32) with the dequantisation drawn from ``key``: voxels
        (N, L, G, G), e_inc (N,) -> standardised vectors (N, L + L G^2). The
        standardisation is the one ``fit`` set (numpy, float64, one dequantisation draw)."""
        import jax.numpy as jnp
        if self.mean is None:
            raise ValueError("CaloPreprocessor: call fit first")
        v = self.dequantise_jax(voxels, key)
        if v.ndim < 3 or v.shape[1] * (1 + math.prod(v.shape[2:])) != len(self.mean):
            raise ValueError(f"CaloPreprocessor.transform_jax: voxels of shape {v.shape}, "
                             f"expected (N, L, G, G) with L (1 + G^2) = {len(self.mean)}")
        x = self._vectors(v.reshape(v.shape[0], v.shape[1], -1),
                          jnp.asarray(e_inc, jnp.float32), jnp)
        return (x - jnp.asarray(self.mean, jnp.float32)) / jnp.asarray(self.std, jnp.float32)

    def fit(self, voxels, e_inc, rng: np.random.Generator) -> "CaloPreprocessor":
        x = self.raw(voxels, e_inc, rng)
        self.mean, self.std = x.mean(0), np.maximum(x.std(0), 1e-6)
        return self

    def transform(self, voxels, e_inc, rng: np.random.Generator | None) -> np.ndarray:
        if self.mean is None:
            raise ValueError("CaloPreprocessor: call fit first")
        return ((self.raw(voxels, e_inc, rng) - self.mean) / self.std).astype(np.float32)

    def inverse(self, x, e_inc, shape: tuple[int, int, int],
                calibration: "ZeroCalibration | None" = None) -> np.ndarray:
        """Model vectors -> voxels (N, L, G, G) float32 GeV (non-finite rows become zeros).
        The voxels below ``cut`` are set to zero or, with a fitted ``calibration``
        (``ZeroCalibration``), those below its per-voxel thresholds of the shower's cell."""
        v = self.inverse_uncut(x, e_inc, shape)
        if calibration is not None:
            v = calibration.apply(v, e_inc)
        else:
            v = np.where(v >= self.cut, v, 0.0)
        return v.astype(np.float32)

    def inverse_uncut(self, x, e_inc, shape: tuple[int, int, int]) -> np.ndarray:
        """Steps 4-2 of the inverse without the cut: (N, L, G, G) float64 voxel values [GeV]
        before the decision "empty or read out" (``inverse`` applies it)."""
        L = shape[0]
        x = np.asarray(x, np.float64) * self.std + self.mean
        x = np.where(np.isfinite(x), x, -50.0)
        n = x.shape[0]
        e_tot = np.asarray(e_inc, np.float64) * np.exp(np.clip(x[:, 0], -10.0, 2.0))
        e_layer = np.zeros((n, L))
        rest = e_tot.copy()
        for k in range(L - 1):
            e_layer[:, k] = self._expit(x[:, 1 + k]) * rest
            rest = rest - e_layer[:, k]
        e_layer[:, L - 1] = rest
        shapes = self._expit(x[:, L:]).reshape(n, L, -1)
        shapes = shapes / np.maximum(shapes.sum(-1, keepdims=True), 1e-30)
        v = shapes * e_layer[..., None]
        return v.reshape((n,) + tuple(shape))


def _log_energy_edges(e_train, n_bins: int) -> np.ndarray:
    """(n_bins + 1,) edges of ln E_inc with equal training populations (outer ones -inf, +inf)."""
    edges = np.quantile(np.log(np.asarray(e_train, np.float64)),
                        np.linspace(0.0, 1.0, n_bins + 1))
    edges[0], edges[-1] = -np.inf, np.inf
    return edges


def _log_energy_bin(edges, e_inc) -> np.ndarray:
    """Bin index of each incident energy for ``_log_energy_edges``."""
    return np.searchsorted(edges[1:-1], np.log(np.asarray(e_inc, np.float64)), side="right")


def _rank_bins(values, n_bins):
    """Bin index 0 .. n_bins - 1 of each value by its rank (equal populations; ties broken by
    position), and the n_bins + 1 edges between the bins (midpoints of the neighbouring sorted
    values; the outer ones -inf, +inf) that put new values into the same bins."""
    n = len(values)
    order = np.argsort(values, kind="stable")
    bins = np.empty(n, np.int64)
    bins[order] = (np.arange(n) * n_bins) // max(n, 1)
    s = values[order]
    cuts = [(i * n + n_bins - 1) // n_bins for i in range(1, n_bins)]     # first rank of bin i
    inner = [0.5 * (s[c - 1] + s[c]) for c in cuts]
    return bins, np.array([-np.inf] + inner + [np.inf])


@dataclasses.dataclass
class ZeroCalibration:
    """Per-voxel read-out thresholds calibrated on the training showers (quantile matching): a
    calibration step after training, like an energy calibration.

    A generative model learns the zero / non-zero switch of each voxel only approximately (the
    flows of experiments/generative leave the first layer's central cell empty in 0.6 % of the
    showers instead of 2.3 %). ``fit`` takes the model's showers generated *at the training
    showers' incident energies*, before the cut (``CaloPreprocessor.inverse_uncut``), and the
    training showers themselves, and sets, per cell of the calibration table and per voxel j,
    the threshold below which a generated voxel is read as empty so that the generated zero
    fraction of voxel j in that cell equals the training showers' one: exactly on the fitting
    sample when it has the training energies (each cell then holds the same number of generated
    and training showers). Where the model's own cut already gives the training fraction, the
    threshold is that cut; otherwise it is the (geometric) middle between the two generated
    values the fraction falls between.

    The cells: ``n_bins`` bins of ln E_inc (equal training populations) and, within each, for
    the voxels of layer k, ``n_layer_bins`` bins of the layer's energy E_k / E_inc (before the
    cut), by rank: the lowest 1 / n_layer_bins of the generated showers are matched to the
    lowest 1 / n_layer_bins of the training showers, and so on (the generated sample's bin edges
    are stored for ``apply``). Per-voxel zero fractions alone do not carry how the empty voxels
    of a shower go together (a late-starting shower has a nearly empty first layer); matching
    them per bin of the layer energy carries the correlation of the occupancy with the layer
    energy over from the training showers.

    ``apply`` is a table look-up per shower and layer and a comparison per voxel (no cost on
    the sampler). Only training showers may be used to fit it (never the showers a model is
    evaluated against). ``floor``: a voxel kept although it lies below this value [GeV] (a
    threshold lowered into the dequantisation box of the zero voxels) is raised to it; 0 keeps
    the value (default)."""
    edges: np.ndarray                    # (B + 1,) ln E_inc bin edges (the outer ones unused)
    thresholds: np.ndarray               # (B, BL, L, G, G) GeV
    layer_edges: np.ndarray | None = None    # (B, L, BL + 1) edges of E_k / E_inc (generated)
    floor: float = 0.0

    @property
    def n_bins(self) -> int:
        return len(self.edges) - 1

    @property
    def n_layer_bins(self) -> int:
        return self.thresholds.shape[1]

    def bin_of(self, e_inc) -> np.ndarray:
        return _log_energy_bin(self.edges, e_inc)

    @staticmethod
    def _layer_fraction(v, e_inc):
        return v.reshape(v.shape[0], v.shape[1], -1).sum(-1) / np.asarray(
            e_inc, np.float64)[:, None]

    def layer_bins_of(self, voxels, e_inc) -> np.ndarray:
        """(N, L) layer-energy bin of each shower and layer (uncut voxels)."""
        v = np.asarray(voxels, np.float64)
        if self.layer_edges is None or self.n_layer_bins == 1:
            return np.zeros(v.shape[:2], np.int64)
        r = self._layer_fraction(v, e_inc)                              # (N, L)
        inner = self.layer_edges[self.bin_of(e_inc)][..., 1:-1]        # (N, L, BL - 1)
        return (r[..., None] >= inner).sum(-1)

    @classmethod
    def fit(cls, generated, e_generated, train_voxels, e_train, *, default_cut: float,
            n_bins: int = 10, n_layer_bins: int = 1, floor: float = 0.0) -> "ZeroCalibration":
        """``generated`` (N, L, G, G) uncut voxels of the model at energies ``e_generated``
        (the training energies for an exact match); ``train_voxels`` (M, L, G, G) the training
        showers at ``e_train``. In a cell with N_c generated and M_c training showers, voxel j
        gets the threshold that leaves round(N_c z_cj) generated values below it, z_cj the
        training zero fraction."""
        gen = np.asarray(generated, np.float64)
        train = np.asarray(train_voxels, np.float64)
        if gen.shape[1:] != train.shape[1:]:
            raise ValueError(f"ZeroCalibration.fit: generated {gen.shape} and training "
                             f"{train.shape} voxels differ in shape")
        L = gen.shape[1]
        cal = cls(edges=_log_energy_edges(e_train, n_bins),
                  thresholds=np.zeros((n_bins, n_layer_bins) + gen.shape[1:]),
                  layer_edges=np.zeros((n_bins, L, n_layer_bins + 1)), floor=floor)
        b_gen, b_train = cal.bin_of(e_generated), cal.bin_of(e_train)
        r_gen = cls._layer_fraction(gen, e_generated)
        r_train = cls._layer_fraction(train, e_train)
        for b in range(n_bins):
            sg, st = b_gen == b, b_train == b
            n, m = int(sg.sum()), int(st.sum())
            if n < n_layer_bins or m < n_layer_bins:
                raise ValueError(f"ZeroCalibration.fit: energy bin {b} has {n} generated and "
                                 f"{m} training showers; use fewer bins")
            for k in range(L):
                lb_g, cal.layer_edges[b, k] = _rank_bins(r_gen[sg, k], n_layer_bins)
                lb_t, _ = _rank_bins(r_train[st, k], n_layer_bins)
                for c in range(n_layer_bins):
                    cal.thresholds[b, c, k] = cls._match(
                        gen[sg, k][lb_g == c], train[st, k][lb_t == c], default_cut)
        return cal

    @staticmethod
    def _match(gen, train, default_cut):
        """Thresholds (voxel shape) leaving round(N z_j) of the N generated values of voxel j
        below them, z_j the zero fraction of the training voxels."""
        shape = gen.shape[1:]
        n = len(gen)
        g = np.sort(gen.reshape(n, -1), axis=0)
        k = np.rint(n * (train.reshape(len(train), -1) == 0).mean(0)).astype(np.int64)
        cols = np.arange(g.shape[1])
        lo = np.where(k > 0, g[np.maximum(k - 1, 0), cols], 0.0)    # must be cut
        hi = np.where(k < n, g[np.minimum(k, n - 1), cols], np.inf)  # must be kept
        ok = (lo < default_cut) & (default_cut <= hi)
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
            mid = np.where(lo <= 0, 0.5 * hi, np.where(np.isinf(hi), 2.0 * lo,
                                                        np.sqrt(lo * hi)))
        mid = np.where((mid > lo) & (mid <= hi), mid, hi)     # rounding at ties: keep hi
        return np.where(ok, default_cut, mid).reshape(shape)

    def apply(self, voxels, e_inc) -> np.ndarray:
        """Uncut voxels (N, L, G, G) -> voxels with the calibrated empty pattern (float64)."""
        v = np.asarray(voxels, np.float64)
        b = self.bin_of(e_inc)
        lb = self.layer_bins_of(v, e_inc)                                # (N, L)
        thr = self.thresholds[b[:, None], lb, np.arange(v.shape[1])[None]]  # (N, L, G, G)
        keep = v >= thr
        if self.floor > 0:
            v = np.maximum(v, self.floor)
        return np.where(keep, v, 0.0)

    def to_dict(self) -> dict:
        d = {"edges": np.asarray(self.edges), "thresholds": np.asarray(self.thresholds),
             "floor": np.asarray(self.floor)}
        if self.layer_edges is not None:
            d["layer_edges"] = np.asarray(self.layer_edges)
        return d

    @classmethod
    def from_dict(cls, d) -> "ZeroCalibration":
        le = d["layer_edges"] if "layer_edges" in d else None
        return cls(edges=np.asarray(d["edges"], np.float64),
                   thresholds=np.asarray(d["thresholds"], np.float64),
                   layer_edges=None if le is None else np.asarray(le, np.float64),
                   floor=float(d["floor"]))


@dataclasses.dataclass
class LayerCalibration:
    """Quantile mapping of the L layer-energy coordinates of the model vectors (u_0 = ln(E_tot /
    E_inc) and the logits of E_k / (E_k + ... + E_{L-1}), standardised) per bin of ln E_inc,
    calibrated on the training showers: an energy calibration per layer after training.

    ``fit`` takes the model's vectors generated at the training energies and the training
    showers' vectors (``CaloPreprocessor.transform`` with one dequantisation draw) and stores,
    per bin (``n_bins`` of equal training population) and coordinate, ``n_quantiles`` quantiles
    of both; ``apply`` maps each generated coordinate through F_train^-1(F_gen(x)) (linear
    interpolation between the stored quantiles; beyond the outer ones, the training sample's
    extremes in that bin). The shape coordinates are left alone. A model whose conditional
    layer-energy distributions are right is left (nearly) unchanged. Only training showers may
    be used to fit it."""
    edges: np.ndarray            # (B + 1,) ln E_inc bin edges (the outer ones unused)
    q_gen: np.ndarray            # (B, L, Q)
    q_train: np.ndarray          # (B, L, Q)

    def bin_of(self, e_inc) -> np.ndarray:
        return _log_energy_bin(self.edges, e_inc)

    @classmethod
    def fit(cls, generated, e_generated, train_vectors, e_train, *, n_layers: int,
            n_bins: int = 5, n_quantiles: int = 101) -> "LayerCalibration":
        gen = np.asarray(generated, np.float64)
        tr = np.asarray(train_vectors, np.float64)
        cal = cls(edges=_log_energy_edges(e_train, n_bins),
                  q_gen=np.zeros((n_bins, n_layers, n_quantiles)),
                  q_train=np.zeros((n_bins, n_layers, n_quantiles)))
        b_gen, b_tr = cal.bin_of(e_generated), cal.bin_of(e_train)
        qs = np.linspace(0.0, 1.0, n_quantiles)
        for b in range(n_bins):
            g, t = gen[b_gen == b, :n_layers], tr[b_tr == b, :n_layers]
            if len(g) < 2 or len(t) < 2:
                raise ValueError(f"LayerCalibration.fit: energy bin {b} has {len(g)} generated "
                                 f"and {len(t)} training showers; use fewer bins")
            cal.q_gen[b] = np.quantile(np.where(np.isfinite(g), g, -50.0), qs, axis=0).T
            cal.q_train[b] = np.quantile(t, qs, axis=0).T
        return cal

    def apply(self, x, e_inc) -> np.ndarray:
        """Model vectors (N, D) -> the same with the first L coordinates mapped."""
        x = np.array(x, np.float64)
        b = self.bin_of(e_inc)
        for k in range(self.q_gen.shape[0]):
            s = b == k
            for j in range(self.q_gen.shape[1]):
                x[s, j] = np.interp(x[s, j], self.q_gen[k, j], self.q_train[k, j])
        return x

    def to_dict(self) -> dict:
        return {"edges": np.asarray(self.edges), "q_gen": np.asarray(self.q_gen),
                "q_train": np.asarray(self.q_train)}

    @classmethod
    def from_dict(cls, d) -> "LayerCalibration":
        return cls(**{k: np.asarray(d[k], np.float64) for k in ("edges", "q_gen", "q_train")})
