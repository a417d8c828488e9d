"""The TrackML detector as placed in ``detectors.csv``: modules, layers and a spatial index.

The TrackML detector (Amrouche et al., "The Tracking Machine Learning challenge: accuracy phase",
arXiv:1904.06778; the ACTS generic detector, Ai et al., "A common tracking software project",
Comput. Softw. Big Sci. 6 (2022) 8) is a silicon tracker of 18,728 flat modules in nine volumes:
pixels (barrel volume 8, end caps 7 and 9), short strips (13; 12 and 14) and long strips
(17; 16 and 18). Each row of ``detectors.csv`` gives one module: its centre (cx, cy, cz) [mm],
the rotation matrix ``rot_xu .. rot_zw`` whose columns are the local axes u, v, w in global
coordinates (global = centre + rot @ (u, v, w)), the half thickness ``module_t``, the half
lengths ``module_minhu`` / ``module_maxhu`` along u at v = -hv / v = +hv (trapezoids in the
strip end caps; measured on the real event: no hit has |u| above the half width interpolated
linearly from minhu at v = -hv to maxhu at v = +hv) and ``module_hv`` along v, and the pitches
``pitch_u``, ``pitch_v``. Barrel modules have w nearly radial (tilted by ~8 degrees), v along z;
end-cap modules have w = -z, v radial.

``Geometry`` groups the modules into layers, (volume_id, layer_id): a barrel layer is a cylinder
of modules at a nominal radius (the mean distance of the module centres from the beam), an
end-cap layer a disk at a nominal z (the mean module z; modules alternate a few mm in z around
it). Each layer carries a spatial index: a phi x z grid (barrel) or phi x r grid (end caps) whose
cells list the modules that a trajectory crossing the nominal surface in that cell may hit. A
module is registered in every cell its outline, widened by a padding, overlaps; the padding
covers the distance between the nominal surface and the module plane (a flat barrel module sits
up to ~1.6 mm (pixels) to ~5 mm (strips) off the nominal cylinder, an end-cap module up to
~5.5 mm off the nominal disk) times the steepest trajectory slope the layer can see, so a lookup
at the nominal crossing never misses the module the exact crossing lies on (up to tracks within
~25 degrees of grazing incidence).
"""
from __future__ import annotations

import dataclasses
import os

import numpy as np

__all__ = ["DETECTOR_COLUMNS", "PIXEL_VOLUMES", "SHORT_STRIP_VOLUMES", "LONG_STRIP_VOLUMES",
           "DEFAULT_MATERIAL", "Layer", "Geometry", "read_detectors", "load_geometry"]

DETECTOR_COLUMNS = ("volume_id", "layer_id", "module_id", "cx", "cy", "cz",
                    "rot_xu", "rot_xv", "rot_xw", "rot_yu", "rot_yv", "rot_yw",
                    "rot_zu", "rot_zv", "rot_zw", "module_t", "module_minhu", "module_maxhu",
                    "module_hv", "pitch_u", "pitch_v")
PIXEL_VOLUMES = (7, 8, 9)
SHORT_STRIP_VOLUMES = (12, 13, 14)
LONG_STRIP_VOLUMES = (16, 17, 18)

# Material per layer crossing at normal incidence, in radiation lengths, per volume. Estimated
# from the real TrackML event (event000000001): the polar-angle change of the truth momentum
# between consecutive hits of a particle on adjacent barrel layers, times beta*p/13.6 MeV and
# corrected for the Highland logarithm, gives x/X0 ~ 1.0 % per pixel layer, ~ 1.8 % per
# short-strip layer and ~ 3 % per long-strip layer (the end caps are assumed equal to their
# barrel; their theta changes are dominated by the radial field component of the real field).
DEFAULT_MATERIAL = {7: 0.010, 8: 0.010, 9: 0.010, 12: 0.018, 13: 0.018, 14: 0.018,
                    16: 0.030, 17: 0.030, 18: 0.030}


def read_detectors(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Columns of a TrackML ``detectors.csv`` (gzipped or not) as numpy arrays.

    A small private reader so that the geometry does not depend on ``hepjax.tracking.trackml``;
    ``Geometry(columns)`` accepts the columns of any reader with the TrackML names."""
    import pandas as pd

    frame = pd.read_csv(path)
    missing = [c for c in DETECTOR_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"{path}: missing detector columns {missing}")
    return {c: frame[c].to_numpy() for c in DETECTOR_COLUMNS}


@dataclasses.dataclass(frozen=True, eq=False)
class Layer:
    """One detector layer and its spatial index.

    ``barrel``: cylinder at radius ``position`` (else a disk at z = ``position``), in mm.
    ``r_range`` / ``z_range``: extent of the module surfaces (mid-planes) of the layer.
    ``modules``: indices into the ``Geometry`` module arrays. Index: cell (i_phi, i_other) with
    i_phi = floor(phi / (2 pi) * n_phi) mod n_phi and i_other = floor((z or r - other_lo) /
    other_width), clipped; ``table[i_phi * n_other + i_other]`` lists candidate modules, padded
    with -1. ``x_x0``: material per crossing at normal incidence [radiation lengths].
    """
    volume_id: int
    layer_id: int
    barrel: bool
    position: float
    r_range: tuple[float, float]
    z_range: tuple[float, float]
    modules: np.ndarray
    pad: float
    n_phi: int
    other_lo: float
    other_width: float
    n_other: int
    table: np.ndarray
    x_x0: float

    def cell(self, phi: np.ndarray, other: np.ndarray) -> np.ndarray:
        """Index-table row of the points (phi, z) (barrel) or (phi, r) (end cap)."""
        i_phi = np.floor(np.mod(phi, 2 * np.pi) * (self.n_phi / (2 * np.pi))).astype(np.int64)
        i_phi = np.minimum(i_phi, self.n_phi - 1)
        i_other = np.floor((other - self.other_lo) / self.other_width).astype(np.int64)
        i_other = np.clip(i_other, 0, self.n_other - 1)
        return i_phi * self.n_other + i_other

    def candidates(self, phi: np.ndarray, other: np.ndarray) -> np.ndarray:
        """(N, K) module indices (-1 padded) a trajectory crossing the nominal surface at
        (phi, z or r) may hit."""
        return self.table[self.cell(phi, other)]


def _module_outline(centre, rot, minhu, maxhu, hv, n=5):
    """(M, n*n, 3) global points on a grid over each module's (trapezoidal) surface."""
    f = np.linspace(-1.0, 1.0, n)
    fu, fv = np.meshgrid(f, f, indexing="ij")
    fu, fv = fu.ravel(), fv.ravel()
    v = fv[None, :] * hv[:, None]
    half_u = minhu[:, None] + (maxhu - minhu)[:, None] * (v + hv[:, None]) / (2 * hv[:, None])
    u = fu[None, :] * half_u
    local = np.stack([u, v, np.zeros_like(u)], -1)
    return centre[:, None, :] + np.einsum("mij,mkj->mki", rot, local)


class Geometry:
    """Modules (arrays over M modules) and layers of a TrackML detector.

    Attributes: ``volume_id``, ``layer_id``, ``module_id`` (M,) int; ``centre`` (M, 3) [mm];
    ``rot`` (M, 3, 3) local (u, v, w) -> global; ``normal`` (M, 3) = the w axis;
    ``half_thickness``, ``min_hu``, ``max_hu``, ``hv``, ``pitch_u``, ``pitch_v`` (M,) [mm];
    ``layer_of_module`` (M,) index into ``layers``; ``layers`` list of ``Layer`` sorted by
    (volume_id, layer_id); ``x_x0`` (M,) the material of each module's layer.
    ``material`` maps volume_id -> x/X0 per layer crossing (``DEFAULT_MATERIAL``).
    """

    def __init__(self, columns: dict[str, np.ndarray], material: dict[int, float] | None = None):
        missing = [c for c in DETECTOR_COLUMNS if c not in columns]
        if missing:
            raise ValueError(f"detector columns missing: {missing}")
        material = dict(DEFAULT_MATERIAL if material is None else material)
        col = {c: np.asarray(columns[c]) for c in DETECTOR_COLUMNS}
        self.volume_id = col["volume_id"].astype(np.int64)
        self.layer_id = col["layer_id"].astype(np.int64)
        self.module_id = col["module_id"].astype(np.int64)
        self.centre = np.stack([col["cx"], col["cy"], col["cz"]], -1).astype(np.float64)
        self.rot = np.stack([col[f"rot_{a}{b}"] for a in "xyz" for b in "uvw"], -1).reshape(
            -1, 3, 3).astype(np.float64)
        self.normal = self.rot[:, :, 2].copy()
        self.half_thickness = col["module_t"].astype(np.float64)
        self.min_hu = col["module_minhu"].astype(np.float64)
        self.max_hu = col["module_maxhu"].astype(np.float64)
        self.hv = col["module_hv"].astype(np.float64)
        self.pitch_u = col["pitch_u"].astype(np.float64)
        self.pitch_v = col["pitch_v"].astype(np.float64)
        self.material = material
        unknown = sorted(set(np.unique(self.volume_id).tolist()) - set(material))
        if unknown:
            raise ValueError(f"no material given for volumes {unknown}")
        self._key = {(int(v), int(l), int(m)): i for i, (v, l, m) in
                     enumerate(zip(self.volume_id, self.layer_id, self.module_id))}
        self.layers = []
        self.layer_of_module = np.full(len(self.volume_id), -1, np.int64)
        pairs = sorted(set(zip(self.volume_id.tolist(), self.layer_id.tolist())))
        for k, (vol, lay) in enumerate(pairs):
            modules = np.flatnonzero((self.volume_id == vol) & (self.layer_id == lay))
            self.layer_of_module[modules] = k
            self.layers.append(self._build_layer(vol, lay, modules, material[vol]))
        self.x_x0 = np.array([self.layers[k].x_x0 for k in self.layer_of_module])
        self.layer_pairs = tuple(pairs)

    # -- construction -----------------------------------------------------------------------
    def _build_layer(self, vol, lay, modules, x_x0):
        centre, rot = self.centre[modules], self.rot[modules]
        points = _module_outline(centre, rot, self.min_hu[modules], self.max_hu[modules],
                                 self.hv[modules])
        r = np.hypot(points[..., 0], points[..., 1])
        z = points[..., 2]
        barrel = bool(np.abs(self.normal[modules, 2]).mean() < 0.5)
        r_range = (float(r.min()), float(r.max()))
        z_range = (float(z.min()), float(z.max()))
        phi_c = np.arctan2(centre[:, 1], centre[:, 0])
        dphi = np.angle(np.exp(1j * (np.arctan2(points[..., 1], points[..., 0])
                                     - phi_c[:, None])))
        phi_lo, phi_hi = phi_c + dphi.min(1), phi_c + dphi.max(1)
        if barrel:
            position = float(np.hypot(centre[:, 0], centre[:, 1]).mean())
            # the module planes lie up to dr off the nominal cylinder; a trajectory with slope
            # dz/dr <= cot_max (vertices within |z| < 300 mm) and transverse incidence within
            # ~63 degrees of the normal lands within dr * cot_max in z and 2 dr in r*phi
            dr = max(r_range[1] - position, position - r_range[0])
            cot_max = (max(abs(z_range[0]), abs(z_range[1])) + 300.0) / r_range[0]
            pad_other = dr * cot_max + 1.0
            pad_rphi = 2.0 * dr + 1.0
            other_lo_m, other_hi_m = z.min(1), z.max(1)
            extent = (z_range[0] - pad_other, z_range[1] + pad_other)
            other_size = np.min(other_hi_m - other_lo_m)
            r_ref = r_range[0]
        else:
            position = float(centre[:, 2].mean())
            dz = float(np.max(np.abs(centre[:, 2] - position)))
            tan_max = r_range[1] / max(abs(position) - 300.0, 100.0)
            pad_other = dz * tan_max + 1.0
            pad_rphi = pad_other
            other_lo_m, other_hi_m = r.min(1), r.max(1)
            extent = (r_range[0] - pad_other, r_range[1] + pad_other)
            other_size = np.min(other_hi_m - other_lo_m)
            r_ref = r.min(1)
        width_phi = float(np.min(phi_hi - phi_lo))
        n_phi = int(np.ceil(2 * np.pi / (0.5 * width_phi)))
        other_width = 0.5 * float(other_size)
        n_other = int(np.ceil((extent[1] - extent[0]) / other_width))
        lo_phi = phi_lo - pad_rphi / r_ref
        hi_phi = phi_hi + pad_rphi / r_ref
        lo_o, hi_o = other_lo_m - pad_other, other_hi_m + pad_other
        cells = [[] for _ in range(n_phi * n_other)]
        scale = n_phi / (2 * np.pi)
        for m in range(len(modules)):
            i0, i1 = int(np.floor(lo_phi[m] * scale)), int(np.floor(hi_phi[m] * scale))
            j0 = max(int(np.floor((lo_o[m] - extent[0]) / other_width)), 0)
            j1 = min(int(np.floor((hi_o[m] - extent[0]) / other_width)), n_other - 1)
            for i in range(i0, i1 + 1):
                row = (i % n_phi) * n_other
                for j in range(j0, j1 + 1):
                    cells[row + j].append(modules[m])
        k = max(len(c) for c in cells)
        table = np.full((len(cells), k), -1, np.int64)
        for i, c in enumerate(cells):
            table[i, :len(c)] = c
        return Layer(volume_id=int(vol), layer_id=int(lay), barrel=barrel, position=position,
                     r_range=r_range, z_range=z_range, modules=modules, pad=float(pad_other),
                     n_phi=n_phi, other_lo=float(extent[0]), other_width=other_width,
                     n_other=n_other, table=table, x_x0=float(x_x0))

    # -- queries ----------------------------------------------------------------------------
    def __len__(self):
        return len(self.volume_id)

    def module_index(self, volume_id, layer_id, module_id) -> np.ndarray:
        """Module indices of (volume_id, layer_id, module_id) triples (-1 where unknown)."""
        v, l, m = (np.atleast_1d(np.asarray(a, np.int64)) for a in (volume_id, layer_id,
                                                                     module_id))
        return np.array([self._key.get((int(a), int(b), int(c)), -1)
                         for a, b, c in zip(v, l, m)], np.int64)

    def to_local(self, module: np.ndarray, xyz: np.ndarray) -> np.ndarray:
        """(N, 3) local (u, v, w) of global points ``xyz`` (N, 3) on modules ``module`` (N,)."""
        return np.einsum("nji,nj->ni", self.rot[module], xyz - self.centre[module])

    def to_global(self, module: np.ndarray, uvw: np.ndarray) -> np.ndarray:
        """(N, 3) global points of local (u, v, w) ``uvw`` (N, 3) on modules ``module``."""
        return self.centre[module] + np.einsum("nij,nj->ni", self.rot[module], uvw)

    def half_u(self, module: np.ndarray, v: np.ndarray) -> np.ndarray:
        """Half width along u of each module at local v (trapezoids: minhu at v = -hv)."""
        hv = self.hv[module]
        return self.min_hu[module] + (self.max_hu[module] - self.min_hu[module]) * (
            (v + hv) / (2 * hv))

    def inside(self, module: np.ndarray, u: np.ndarray, v: np.ndarray,
               tolerance: float = 0.0) -> np.ndarray:
        """Whether local (u, v) lies within the module bounds (widened by ``tolerance`` mm)."""
        return ((np.abs(v) <= self.hv[module] + tolerance)
                & (np.abs(u) <= self.half_u(module, v) + tolerance))


def load_geometry(path: str | os.PathLike, material: dict[int, float] | None = None) -> Geometry:
    """``Geometry`` of a TrackML ``detectors.csv`` (gzipped or not)."""
    return Geometry(read_detectors(path), material)
