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

* ``"per-n"`` (the experiment's default): one unconditional ``ConditionalFlow`` per
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
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from hepjax.models.generative.flows import ConditionalFlow

Array = jax.Array

__all__ = ["N_MAX_JETS", "COLUMNS", "rotate", "unrotate", "EventPreprocessor", "padded_flow_loss",
           "EventFlow", "sample_event_flow", "column_mask", "one_hot", "sort_objects",
           "make_flow", "sample_events", "observables", "OBSERVABLES"]

N_MAX_JETS = 3
MU_PT_MIN, MU_ETA_MAX = 20.0, 2.5
JET_PT_MIN, JET_ETA_MAX = 20.0, 5.0
COLUMNS = (("mu1_logpt", "mu1_eta", "mu2_logpt", "mu2_eta", "mu2_phi")
           + tuple(f"j{i}_{v}" for i in (1, 2, 3) for v in ("logpt", "eta", "phi", "logm")))
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


class EventPreprocessor:
    """Events <-> standardised 17-column vectors (module docstring). ``fit`` on training events,
    then ``transform`` (-> x (N, 17) with NaN in absent columns, mask, condition, phi_mu1) and
    ``inverse`` (x, n_jets, phi_mu1 -> mu, jets)."""

    def __init__(self):
        self.mean = None
        self.std = None

    @staticmethod
    def raw(mu, jets, n_jets):
        """Unstandardised columns (NaN where absent) and the leading muon's phi."""
        mu, jets, n_jets = _check(mu, jets, n_jets)
        mu_r, jets_r, phi0 = rotate(mu, jets, n_jets)
        eps = 1e-12
        cols = [np.log(np.maximum(mu_r[:, 0, 0] - MU_PT_MIN, eps)),
                np.arctanh(np.clip(mu_r[:, 0, 1] / MU_ETA_MAX, -1 + 1e-12, 1 - 1e-12)),
                np.log(np.maximum(mu_r[:, 1, 0] - MU_PT_MIN, eps)),
                np.arctanh(np.clip(mu_r[:, 1, 1] / MU_ETA_MAX, -1 + 1e-12, 1 - 1e-12)),
                mu_r[:, 1, 2]]
        for j in range(N_MAX_JETS):
            cols += [np.log(np.maximum(jets_r[:, j, 0] - JET_PT_MIN, eps)),
                     np.arctanh(np.clip(jets_r[:, j, 1] / JET_ETA_MAX, -1 + 1e-12, 1 - 1e-12)),
                     jets_r[:, j, 2], np.log1p(np.maximum(jets_r[:, j, 3], 0.0))]
        x = np.stack(cols, 1)
        mask = column_mask(n_jets)
        return np.where(mask, x, np.nan), mask, phi0

    def fit(self, mu, jets, n_jets) -> "EventPreprocessor":
        x, mask, _ = self.raw(mu, jets, n_jets)
        missing = [COLUMNS[i] for i in np.flatnonzero(~mask.any(0))]
        if missing:
            raise ValueError(f"EventPreprocessor.fit: no training event has {missing}; "
                             f"every multiplicity 1..{N_MAX_JETS} must be present")
        self.mean = np.nanmean(x, 0)
        self.std = np.maximum(np.nanstd(x, 0), 1e-6)
        return self

    def transform(self, mu, jets, n_jets):
        """(x (N, 17) standardised, NaN where absent; mask (N, 17); cond (N, 3) one-hot of n;
        phi_mu1 (N,))."""
        if self.mean is None:
            raise RuntimeError("EventPreprocessor.transform before fit")
        x, mask, phi0 = self.raw(mu, jets, n_jets)
        n_jets = np.asarray(n_jets)
        return (x - self.mean) / self.std, mask, one_hot(n_jets), phi0

    def inverse(self, x, n_jets, phi0):
        """Standardised columns -> (mu (N, 2, 3), jets (N, 3, 4)) in the lab frame (phi of the
        leading muon = phi0; absent jets zero). Does not re-sort (``sort_objects`` does)."""
        x = np.asarray(x, np.float64) * self.std + self.mean
        n = len(x)
        n_jets = np.asarray(n_jets)
        mu = np.zeros((n, 2, 3))
        mu[:, 0, 0] = MU_PT_MIN + np.exp(x[:, 0])
        mu[:, 0, 1] = MU_ETA_MAX * np.tanh(x[:, 1])
        mu[:, 1, 0] = MU_PT_MIN + np.exp(x[:, 2])
        mu[:, 1, 1] = MU_ETA_MAX * np.tanh(x[:, 3])
        mu[:, 1, 2] = x[:, 4]
        jets = np.zeros((n, N_MAX_JETS, 4))
        for j in range(N_MAX_JETS):
            c = 5 + 4 * j
            present = j < n_jets
            jets[:, j, 0] = np.where(present, JET_PT_MIN + np.exp(x[:, c]), 0.0)
            jets[:, j, 1] = np.where(present, JET_ETA_MAX * np.tanh(x[:, c + 1]), 0.0)
            jets[:, j, 2] = np.where(present, x[:, c + 2], 0.0)
            jets[:, j, 3] = np.where(present, np.maximum(np.expm1(x[:, c + 3]), 0.0), 0.0)
        return unrotate(mu, jets, n_jets, np.asarray(phi0, np.float64))

    def state(self) -> dict:
        return {"mean": self.mean.tolist(), "std": self.std.tolist(), "columns": list(COLUMNS)}


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


def _mass(p):
    return np.sqrt(np.maximum(p[..., 0] ** 2 - np.sum(p[..., 1:] ** 2, -1), 0.0))


def _dphi(a, b):
    return np.abs(_wrap_pm_pi(np.asarray(a) - np.asarray(b)))


OBSERVABLES = ("pT_mu1", "pT_mu2", "eta_mu1", "m_mumu", "pT_mumu", "dphi_mumu", "pT_j1", "eta_j1",
               "m_j1", "pT_j2", "eta_j2", "dR_j1j2", "dphi_j1j2", "m_j1j2", "pT_j3", "eta_j3")


def observables(events: dict) -> dict[str, np.ndarray]:
    """Per event (NaN where undefined, e.g. pT_j2 of a 1-jet event): the muons' pT, the leading
    muon's eta, m_mumu, pT_mumu, |Delta phi_mumu|, each jet's pT and eta, m_j1, Delta R and
    |Delta phi| between the two leading jets and their invariant mass."""
    mu, jets, n = np.asarray(events["mu"]), np.asarray(events["jets"]), np.asarray(events["n_jets"])
    p_mu = _p4(mu[..., 0], mu[..., 1], mu[..., 2])
    ll = p_mu[:, 0] + p_mu[:, 1]
    out = {"pT_mu1": mu[:, 0, 0], "pT_mu2": mu[:, 1, 0], "eta_mu1": mu[:, 0, 1],
           "m_mumu": _mass(ll), "pT_mumu": np.hypot(ll[:, 1], ll[:, 2]),
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
    out["m_j1j2"] = np.where(two, _mass(pj[:, 0] + pj[:, 1]), nan)
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


def sample_event_flow(model: EventFlow, key, n_jets, pre: EventPreprocessor, phi_seed: int):
    """Like :func:`sample_events` for an :class:`EventFlow`."""
    n_jets = np.asarray(n_jets, np.int64)
    x = np.nan_to_num(model.sample(key, n_jets))
    phi0 = np.random.default_rng(phi_seed).uniform(-math.pi, math.pi, len(n_jets))
    mu, jets = pre.inverse(x, n_jets, phi0)
    mu, jets, f_mu, f_j = sort_objects(mu, jets, n_jets)
    return ({"mu": mu, "jets": jets, "n_jets": n_jets},
            {"frac_muons_swapped": f_mu, "frac_jets_reordered": f_j})
