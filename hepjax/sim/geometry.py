"""Materials and the planar geometry of the sampling calorimeter (``hepjax.sim.calorimeter``).

Units: lengths in cm, energies in GeV (the material table's critical energies and MIP losses
too), angles in radians.

Materials carry their PDG values ("Atomic and nuclear properties of materials", Particle Data
Group, Review of Particle Physics; the same numbers are summarised in the PDG review "Passage of
particles through matter"): radiation length X0, nuclear interaction length lambda_int, Moliere
radius R_M, critical energy E_c (Rossi's definition, for electrons), density, atomic number and
the minimum-ionisation loss dE/dx|min.

A *layer* is a slab of absorbers followed by an active sensor (silicon or scintillator) at its
back; the calorimeter is a stack of *sections*, each ``n_layers`` identical layers with its own
square cell grid. Every layer is treated as one effective medium with the mixture rules of the
PDG and of Grindhammer & Peters ("The parameterized simulation of electromagnetic showers in
homogeneous and sampling calorimeters", arXiv:hep-ex/0001020, section 3), with thickness
fractions f_i = d_i / d and mass fractions w_i:

* X0:        d / X0 = sum_i d_i / X0_i                 (radiation lengths add along the path)
* lambda:    d / lambda = sum_i d_i / lambda_i
* R_M:       1 / R_M = sum_i f_i / R_M,i               (the PDG's mixture rule, in lengths)
* E_c:       E_c = X0 * sum_i f_i E_c,i / X0_i          (consistent with R_M = E_s X0 / E_c)
* Z:         Z_eff = sum_i w_i Z_i
* e/mip:     e_hat = 1 / (1 + 0.007 (Z_passive - Z_active))   (Grindhammer & Peters' fit of the
             electron response relative to a minimum-ionising particle: the "transition
             effect", soft shower electrons and photons are absorbed in high-Z absorber)
* MIP sampling fraction  f_mip = dE_active / dE_layer for a minimum-ionising particle, and the
  electron sampling fraction f_samp = e_hat * f_mip: the share of an electromagnetic shower's
  energy seen by the sensors. Hit energies are calibrated with 1 / f_samp (the "EM scale").
* One MIP in a cell is the mean energy a minimum-ionising particle at normal incidence leaves in
  the layer's sensor; on the EM scale that is ``mip_energy = dE_active / f_samp
  = dE_layer / e_hat`` GeV. Noise and thresholds are given in these units.

The defaults are a CMS HGCAL-like endcap calorimeter (CMS Collaboration, "The Phase-2 upgrade of
the CMS endcap calorimeter", CERN-LHCC-2017-023): ``CE_E``, 28 layers of 2.8 mm W + 1.2 mm Cu +
0.3 mm Si with 1 cm x 1 cm cells (24.8 X0, 1.03 lambda_int in all; X0 = 0.485 cm, R_M = 1.12 cm,
E_c = 9.2 MeV for the mixture), and ``CE_H``, 12 layers of 8 cm steel + 3 mm plastic
scintillator with 4 cm x 4 cm cells (54.7 X0, 5.8 lambda_int; R_M = 1.77 cm); 6.8 lambda_int in
all, so the tails of the most energetic hadron showers leak out of the back (~5 % at 200 GeV). ``describe()``
prints every derived number.
"""
from __future__ import annotations

import dataclasses
import functools

import numpy as np

__all__ = ["Material", "Section", "Geometry", "MATERIALS", "TUNGSTEN", "COPPER", "SILICON",
           "IRON", "LEAD", "POLYSTYRENE", "CE_E", "CE_H", "ES_MEV"]

ES_MEV = 21.2052   # the scale energy E_s = m_e c^2 sqrt(4 pi / alpha) in MeV (R_M = E_s X0 / E_c)


@dataclasses.dataclass(frozen=True)
class Material:
    """One material, PDG values. Lengths in cm, ``critical_energy`` and ``dedx_mip`` in GeV
    (per cm for ``dedx_mip``)."""
    name: str
    radiation_length: float     # X0 [cm]
    interaction_length: float   # nuclear interaction length lambda_int [cm]
    moliere_radius: float       # R_M [cm]
    critical_energy: float      # E_c for electrons [GeV]
    density: float              # [g/cm^3]
    z: float                    # atomic number (mass-weighted mean for a compound)
    dedx_mip: float             # minimum-ionisation energy loss [GeV/cm]


# PDG "Atomic and nuclear properties of materials" (dE/dx|min in MeV cm^2/g times the density).
TUNGSTEN = Material("W", 0.3504, 9.946, 0.9327, 7.97e-3, 19.30, 74.0, 1.145 * 19.30e-3)
COPPER = Material("Cu", 1.436, 15.32, 1.568, 19.42e-3, 8.960, 29.0, 1.403 * 8.960e-3)
SILICON = Material("Si", 9.370, 46.52, 4.944, 40.19e-3, 2.329, 14.0, 1.664 * 2.329e-3)
IRON = Material("Fe", 1.757, 16.77, 1.719, 21.68e-3, 7.874, 26.0, 1.451 * 7.874e-3)
LEAD = Material("Pb", 0.5612, 17.59, 1.602, 7.43e-3, 11.35, 82.0, 1.122 * 11.35e-3)
# polystyrene scintillator (C8H8): Z is the mass-weighted mean (96 * 6 + 8 * 1) / 104
POLYSTYRENE = Material("polystyrene", 41.31, 77.07, 9.410, 93.11e-3, 1.060, 5.62,
                       1.936 * 1.060e-3)
MATERIALS = {m.name: m for m in (TUNGSTEN, COPPER, SILICON, IRON, LEAD, POLYSTYRENE)}


@dataclasses.dataclass(frozen=True)
class Section:
    """``n_layers`` identical sampling layers: the ``absorbers`` ((material, thickness cm), front
    to back) then the ``active`` sensor of ``active_thickness`` cm, read out in square cells of
    ``cell_size`` cm.

    ``em_stochastic`` and ``had_stochastic`` are the sampling terms a (sigma/E = a / sqrt(E/GeV))
    of this section for the electromagnetic and the non-electromagnetic (hadronic) part of a
    shower: the sampling fluctuations the spots of each kind receive here
    (``hepjax.sim.showers.sample_fluctuations``). Rules of thumb (Wigmans, "Calorimetry: energy
    measurement in particle physics", Oxford 2017, chapter 4): electromagnetic ~2.7 % sqrt(d_act
    [mm] / f_mip) for scintillator or liquid readout, hadronic ~11.5 % sqrt(dE_layer [MeV]);
    silicon-tungsten calorimeters measure ~20 %/sqrt(E) (the CMS HGCAL beam tests).
    """
    name: str
    n_layers: int
    absorbers: tuple[tuple[Material, float], ...]
    active: Material
    active_thickness: float
    cell_size: float
    em_stochastic: float
    had_stochastic: float

    def __post_init__(self):
        if self.n_layers < 1:
            raise ValueError(f"section {self.name!r}: n_layers={self.n_layers} must be >= 1")
        if self.active_thickness <= 0 or self.cell_size <= 0:
            raise ValueError(f"section {self.name!r}: active_thickness and cell_size must be > 0")
        if any(t < 0 for _, t in self.absorbers):
            raise ValueError(f"section {self.name!r}: absorber thicknesses must be >= 0")
        if self.em_stochastic < 0 or self.had_stochastic < 0:
            raise ValueError(f"section {self.name!r}: stochastic terms must be >= 0")

    # ---- the layer as one effective medium ----
    @property
    def _slabs(self) -> tuple[tuple[Material, float], ...]:
        return tuple(self.absorbers) + ((self.active, self.active_thickness),)

    @property
    def layer_thickness(self) -> float:
        """cm"""
        return float(sum(t for _, t in self._slabs))

    @property
    def layer_x0(self) -> float:
        """The layer's thickness in radiation lengths."""
        return float(sum(t / m.radiation_length for m, t in self._slabs))

    @property
    def layer_lambda(self) -> float:
        """The layer's thickness in nuclear interaction lengths."""
        return float(sum(t / m.interaction_length for m, t in self._slabs))

    @property
    def radiation_length(self) -> float:
        """Effective X0 of the layer mixture [cm]."""
        return self.layer_thickness / self.layer_x0

    @property
    def interaction_length(self) -> float:
        """Effective lambda_int of the layer mixture [cm]."""
        return self.layer_thickness / self.layer_lambda

    @property
    def moliere_radius(self) -> float:
        """Effective Moliere radius [cm]: 1/R_M = sum_i f_i / R_M,i."""
        d = self.layer_thickness
        return 1.0 / sum((t / d) / m.moliere_radius for m, t in self._slabs)

    @property
    def critical_energy(self) -> float:
        """Effective critical energy [GeV]: E_c = X0 sum_i f_i E_c,i / X0_i."""
        d = self.layer_thickness
        return self.radiation_length * sum((t / d) * m.critical_energy / m.radiation_length
                                           for m, t in self._slabs)

    @property
    def z_eff(self) -> float:
        """Mass-weighted mean atomic number of the layer."""
        mass = [m.density * t for m, t in self._slabs]
        return float(sum(w * m.z for w, (m, _) in zip(mass, self._slabs)) / sum(mass))

    @property
    def mip_loss(self) -> float:
        """Energy a minimum-ionising particle loses crossing one layer at normal incidence [GeV]."""
        return float(sum(t * m.dedx_mip for m, t in self._slabs))

    @property
    def mip_active(self) -> float:
        """... of which in the sensor [GeV]."""
        return self.active_thickness * self.active.dedx_mip

    @property
    def mip_sampling_fraction(self) -> float:
        return self.mip_active / self.mip_loss

    @property
    def e_over_mip(self) -> float:
        """Grindhammer & Peters' e/mip, 1 / (1 + 0.007 (Z_passive - Z_active))."""
        mass = [m.density * t for m, t in self.absorbers]
        if sum(mass) <= 0:
            return 1.0
        z_passive = sum(w * m.z for w, (m, _) in zip(mass, self.absorbers)) / sum(mass)
        return 1.0 / (1.0 + 0.007 * (z_passive - self.active.z))

    @property
    def sampling_fraction(self) -> float:
        """The electron (EM) sampling fraction e/mip * f_mip: hit energies are divided by it."""
        return self.e_over_mip * self.mip_sampling_fraction

    @property
    def mip_energy(self) -> float:
        """One MIP in a cell of this section, on the EM scale [GeV]."""
        return self.mip_active / self.sampling_fraction

    @property
    def sampling_frequency(self) -> float:
        """Grindhammer & Peters' F_S = X0_eff / d_layer (layers per radiation length)."""
        return 1.0 / self.layer_x0

    def n_cells(self, half_width: float) -> int:
        """Cells along x (and y) for a transverse extent of +-half_width."""
        n = 2.0 * half_width / self.cell_size
        if abs(n - round(n)) > 1e-6:
            raise ValueError(f"section {self.name!r}: 2 * half_width = {2 * half_width} cm is not "
                             f"a whole number of {self.cell_size} cm cells")
        return int(round(n))


CE_E = Section("CE-E", 28, ((TUNGSTEN, 0.28), (COPPER, 0.12)), SILICON, 0.03, 1.0,
               em_stochastic=0.20, had_stochastic=0.45)
CE_H = Section("CE-H", 12, ((IRON, 8.0),), POLYSTYRENE, 0.30, 4.0,
               em_stochastic=0.50, had_stochastic=0.80)


@dataclasses.dataclass(frozen=True)
class Geometry:
    """Sections stacked along z from z = 0 (the front face), each ``half_width`` cm either side of
    the axis in x and y. Cells are (layer, ix, iy) with ix, iy in [0, n_cells) and centres at
    x = -half_width + (ix + 1/2) cell_size; a layer's hits sit at the centre of its sensor (at the
    back of the layer). Layers are numbered over all sections, front to back."""
    sections: tuple[Section, ...] = (CE_E, CE_H)
    half_width: float = 40.0

    def __post_init__(self):
        if not self.sections:
            raise ValueError("a geometry needs at least one section")
        if self.half_width <= 0:
            raise ValueError(f"half_width={self.half_width} must be > 0")
        for s in self.sections:
            s.n_cells(self.half_width)

    @functools.cached_property
    def tables(self) -> "LayerTables":
        return LayerTables.build(self)

    @property
    def n_layers(self) -> int:
        return sum(s.n_layers for s in self.sections)

    @property
    def n_cells_total(self) -> int:
        return int(self.tables.cell_offset[-1])

    @property
    def depth(self) -> float:
        return float(self.tables.z_bound[-1])

    def cell_centres(self, layer, ix, iy) -> np.ndarray:
        """(n, 3) cell centres [cm] of cells (layer, ix, iy)."""
        t = self.tables
        layer = np.asarray(layer, np.int64)
        size = t.cell_size[layer]
        return np.stack([-self.half_width + (np.asarray(ix) + 0.5) * size,
                         -self.half_width + (np.asarray(iy) + 0.5) * size,
                         t.z_sensor[layer]], -1)

    def describe(self) -> str:
        """The derived numbers of every section, one line each."""
        lines = [f"transverse extent +-{self.half_width} cm; {self.n_layers} layers, "
                 f"{self.depth:.1f} cm deep, {self.n_cells_total} cells"]
        for s in self.sections:
            lines.append(
                f"{s.name}: {s.n_layers} x ({' + '.join(f'{t} cm {m.name}' for m, t in s._slabs)})"
                f", {s.cell_size} cm cells; per layer {s.layer_x0:.3f} X0, {s.layer_lambda:.4f}"
                f" lambda; X0 = {s.radiation_length:.3f} cm, lambda_int = "
                f"{s.interaction_length:.2f} cm, R_M = {s.moliere_radius:.3f} cm, E_c = "
                f"{1e3 * s.critical_energy:.2f} MeV, Z_eff = {s.z_eff:.1f}; f_mip = "
                f"{s.mip_sampling_fraction:.4f}, e/mip = {s.e_over_mip:.3f}, f_samp = "
                f"{s.sampling_fraction:.4f}; 1 MIP = {1e3 * s.mip_energy:.2f} MeV (EM scale); "
                f"sampling terms EM {s.em_stochastic:.2f}, hadronic {s.had_stochastic:.2f}"
                f" /sqrt(E); total {s.n_layers * s.layer_x0:.1f} X0, "
                f"{s.n_layers * s.layer_lambda:.2f} lambda")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {"half_width": self.half_width, "sections": [
            {"name": s.name, "n_layers": s.n_layers,
             "absorbers": [[dataclasses.asdict(m), t] for m, t in s.absorbers],
             "active": dataclasses.asdict(s.active), "active_thickness": s.active_thickness,
             "cell_size": s.cell_size, "em_stochastic": s.em_stochastic,
             "had_stochastic": s.had_stochastic} for s in self.sections]}

    @classmethod
    def from_dict(cls, d: dict) -> "Geometry":
        sections = tuple(
            Section(s["name"], int(s["n_layers"]),
                    tuple((Material(**m), float(t)) for m, t in s["absorbers"]),
                    Material(**s["active"]), float(s["active_thickness"]), float(s["cell_size"]),
                    float(s["em_stochastic"]), float(s["had_stochastic"]))
            for s in d["sections"])
        return cls(sections, float(d["half_width"]))


@dataclasses.dataclass(frozen=True, eq=False)
class LayerTables:
    """Per-layer arrays (L layers) and boundary tables (L + 1 entries) of a geometry."""
    section: np.ndarray        # (L,) section index of each layer
    z_bound: np.ndarray        # (L+1,) z of the layer boundaries [cm]
    z_sensor: np.ndarray       # (L,) z of the sensor centre [cm]
    x0_bound: np.ndarray       # (L+1,) radiation lengths from z = 0 to each boundary
    lambda_bound: np.ndarray   # (L+1,) interaction lengths from z = 0 to each boundary
    mip_bound: np.ndarray      # (L+1,) MIP energy loss from z = 0 to each boundary [GeV]
    moliere: np.ndarray        # (L,) R_M [cm]
    interaction_length: np.ndarray   # (L,) lambda_int [cm]
    critical_energy: np.ndarray      # (L,) [GeV]
    z_eff: np.ndarray          # (L,)
    cell_size: np.ndarray      # (L,) [cm]
    n_cells: np.ndarray        # (L,) cells along x (= along y)
    cell_offset: np.ndarray    # (L+1,) global index of each layer's first cell
    mip_energy: np.ndarray     # (L,) one MIP on the EM scale [GeV]
    stochastic: np.ndarray     # (L, 2) sampling terms (EM, hadronic)

    @classmethod
    def build(cls, geo: Geometry) -> "LayerTables":
        rows = [(k, s) for k, s in enumerate(geo.sections) for _ in range(s.n_layers)]
        sec = np.array([k for k, _ in rows], np.int64)
        thick = np.array([s.layer_thickness for _, s in rows])
        z_bound = np.concatenate([[0.0], np.cumsum(thick)])
        n_cells = np.array([s.n_cells(geo.half_width) for _, s in rows], np.int64)
        mip = np.array([s.mip_energy for _, s in rows])
        return cls(
            section=sec, z_bound=z_bound,
            z_sensor=z_bound[1:] - 0.5 * np.array([s.active_thickness for _, s in rows]),
            x0_bound=np.concatenate([[0.0], np.cumsum([s.layer_x0 for _, s in rows])]),
            lambda_bound=np.concatenate([[0.0], np.cumsum([s.layer_lambda for _, s in rows])]),
            mip_bound=np.concatenate([[0.0], np.cumsum([s.mip_loss for _, s in rows])]),
            moliere=np.array([s.moliere_radius for _, s in rows]),
            interaction_length=np.array([s.interaction_length for _, s in rows]),
            critical_energy=np.array([s.critical_energy for _, s in rows]),
            z_eff=np.array([s.z_eff for _, s in rows]),
            cell_size=np.array([s.cell_size for _, s in rows]),
            n_cells=n_cells,
            cell_offset=np.concatenate([[0], np.cumsum(n_cells * n_cells)]).astype(np.int64),
            mip_energy=mip,
            stochastic=np.array([[s.em_stochastic, s.had_stochastic] for _, s in rows]))
