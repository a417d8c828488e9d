"""Feature preprocessing fitted on training data and re-applied, unchanged, at evaluation.

Data are arrays (..., F) of F features (e.g. (jets, particles, F)) with an optional boolean mask
of shape x.shape[:-1] (True = real entry, False = padding). Statistics use unmasked entries only;
outputs at masked positions are 0.

Steps are frozen dataclasses holding only their settings; `step.fit(x, mask)` returns a dict of
numpy arrays (the fitted params, computed in float64 on the host) and
`step.apply(params, x, mask)` is a pure jnp function (jit-able). Steps:

  Standardize(features=None, groups=(), min_std=1e-8)
      (x - mean) / std per feature; each group in `groups` (a tuple of feature indices, e.g. the
      four components of a momentum) shares ONE mean and ONE std pooled over its features, so
      correlated observables keep a common scale. A std below min_std is replaced by 1.
  LogTransform(features, eps=0.0, kind='log')
      log(x + eps) ('log') or log1p(x) ('log1p') on the listed features; raises ValueError for
      invalid inputs (x + eps <= 0, resp. x <= -1) at unmasked entries when x is concrete.
  PCA(n_components=None, whiten=False)
      centre on the training mean, project on the leading right-singular vectors of the centred
      training data (the eigenvectors of its covariance). Changes F -> n_components.

`Pipeline(steps).fit(x, mask)` fits the steps in order (each on the output of the previous one)
and returns a `FittedPipeline` (pipeline + tuple of params) with transform / inverse_transform,
to_dict / from_dict and save / load (JSON; arrays stored with dtype and shape, floats written by
repr, so a round trip is bit-identical). Save it with the run.
"""
from __future__ import annotations

import dataclasses
import json
import pathlib
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["Standardize", "LogTransform", "PCA", "Pipeline", "FittedPipeline", "STEPS",
           "masked_mean_std"]


def _flat(x, mask):
    """(..., F) host array and mask -> (N, F) float64 array of the unmasked rows."""
    x = np.asarray(x, np.float64)
    if x.ndim < 1:
        raise ValueError("data must have shape (..., features), got a scalar")
    rows = x.reshape(-1, x.shape[-1])
    if mask is None:
        return rows
    mask = np.asarray(mask, bool)
    if mask.shape != x.shape[:-1]:
        raise ValueError(f"mask must have shape x.shape[:-1] = {x.shape[:-1]}, got {mask.shape}")
    return rows[mask.reshape(-1)]


def _zero_masked(y, mask):
    if mask is None:
        return y
    return jnp.where(jnp.asarray(mask, bool)[..., None], y, jnp.zeros((), y.dtype))


def _check_features(features, n_features, where):
    for f in features:
        if not -n_features <= f < n_features:
            raise ValueError(f"{where}: feature index {f} out of range for {n_features} features")
    return [f % n_features for f in features]


def masked_mean_std(x, mask=None) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature mean and (biased, ddof=0) std over unmasked entries of (..., F) data."""
    rows = _flat(x, mask)
    if rows.shape[0] == 0:
        raise ValueError("masked_mean_std: no unmasked entries to fit on")
    mean = rows.mean(axis=0)
    return mean, np.sqrt(np.mean(np.square(rows - mean), axis=0))


@dataclasses.dataclass(frozen=True)
class Standardize:
    """(x - mean) / std, fitted on unmasked training entries; see the module docstring.

    features: indices to standardise (None = all not already in a group); groups: tuples of
    indices sharing one mean and one std. Params: {'mean': (F,), 'std': (F,)}, with mean 0 and
    std 1 for untouched features.
    """
    features: tuple[int, ...] | None = None
    groups: tuple[tuple[int, ...], ...] = ()
    min_std: float = 1e-8

    def __post_init__(self):  # lists (e.g. from JSON or a config) -> hashable tuples
        if self.features is not None:
            object.__setattr__(self, "features", tuple(int(f) for f in self.features))
        object.__setattr__(self, "groups", tuple(tuple(int(f) for f in g) for g in self.groups))

    def fit(self, x, mask=None) -> dict[str, np.ndarray]:
        rows = _flat(x, mask)
        n_feat = rows.shape[1]
        if rows.shape[0] == 0:
            raise ValueError("Standardize.fit: no unmasked entries to fit on")
        mean = np.zeros(n_feat)
        std = np.ones(n_feat)
        grouped: set[int] = set()
        for group in self.groups:
            idx = _check_features(group, n_feat, "Standardize.groups")
            if grouped & set(idx):
                raise ValueError(f"Standardize: feature(s) {sorted(grouped & set(idx))} appear in "
                                 "more than one group")
            grouped |= set(idx)
            vals = rows[:, idx].reshape(-1)
            mean[idx] = vals.mean()
            std[idx] = np.sqrt(np.mean(np.square(vals - vals.mean())))
        feats = range(n_feat) if self.features is None else _check_features(
            self.features, n_feat, "Standardize.features")
        single = [f for f in feats if f not in grouped]
        if single:
            m = rows[:, single].mean(axis=0)
            mean[single] = m
            std[single] = np.sqrt(np.mean(np.square(rows[:, single] - m), axis=0))
        std = np.where(std < self.min_std, 1.0, std)  # constant feature: only centre it
        return {"mean": mean, "std": std}

    def apply(self, params, x, mask=None):
        x = jnp.asarray(x)
        y = (x - params["mean"].astype(x.dtype)) / params["std"].astype(x.dtype)
        return _zero_masked(y, mask)

    def inverse(self, params, y, mask=None):
        y = jnp.asarray(y)
        x = y * params["std"].astype(y.dtype) + params["mean"].astype(y.dtype)
        return _zero_masked(x, mask)


@dataclasses.dataclass(frozen=True)
class LogTransform:
    """log(x + eps) (kind='log') or log1p(x) (kind='log1p') on `features`; nothing to fit."""
    features: tuple[int, ...]
    eps: float = 0.0
    kind: str = "log"

    def __post_init__(self):
        object.__setattr__(self, "features", tuple(int(f) for f in self.features))
        if self.kind not in ("log", "log1p"):
            raise ValueError(f"LogTransform: kind must be 'log' or 'log1p', got {self.kind!r}")
        if self.kind == "log1p" and self.eps != 0.0:
            raise ValueError("LogTransform: eps is only used with kind='log'")

    def _index(self, n_feat):
        return np.asarray(_check_features(self.features, n_feat, "LogTransform.features"), np.int32)

    def fit(self, x, mask=None) -> dict[str, np.ndarray]:
        self._validate(x, mask)
        return {}

    def _validate(self, x, mask):
        if isinstance(x, jax.core.Tracer) or isinstance(mask, jax.core.Tracer):
            return
        x = np.asarray(x)
        idx = _check_features(self.features, x.shape[-1], "LogTransform.features")
        rows = _flat(x, mask)[:, idx]
        bad = rows + self.eps <= 0 if self.kind == "log" else rows <= -1
        if bad.any():
            col = int(np.nonzero(bad.any(axis=0))[0][0])
            need = f"x + eps > 0 (eps={self.eps})" if self.kind == "log" else "x > -1"
            raise ValueError(
                f"LogTransform({self.kind}): feature {idx[col]} has value "
                f"{rows[:, col].min()} at an unmasked entry, but {need} is required; shift it "
                f"with eps (e.g. E - 20 -> eps=-20 in log(E + eps)) or drop it from features")

    def apply(self, params, x, mask=None):
        del params
        self._validate(x, mask)
        x = jnp.asarray(x)
        idx = self._index(x.shape[-1])
        sel = x[..., idx]
        if mask is not None:  # keep padding out of log's domain
            sel = jnp.where(jnp.asarray(mask, bool)[..., None], sel, 1.0 - self.eps)
        out = jnp.log(sel + self.eps) if self.kind == "log" else jnp.log1p(sel)
        return _zero_masked(x.at[..., idx].set(out), mask)

    def inverse(self, params, y, mask=None):
        del params
        y = jnp.asarray(y)
        idx = self._index(y.shape[-1])
        sel = y[..., idx]
        out = jnp.exp(sel) - self.eps if self.kind == "log" else jnp.expm1(sel)
        return _zero_masked(y.at[..., idx].set(out), mask)


@dataclasses.dataclass(frozen=True)
class PCA:
    """Principal components of the unmasked training rows.

    Params: mean (F,), components (k, F) (rows = unit eigenvectors of the covariance, by
    decreasing variance, sign fixed so the largest-|.| entry is positive), explained_variance (k,)
    (eigenvalues, ddof=1), explained_variance_ratio (k,).
    transform: z = (x - mean) @ components.T  [/ sqrt(explained_variance) if whiten].
    """
    n_components: int | None = None
    whiten: bool = False

    def fit(self, x, mask=None) -> dict[str, np.ndarray]:
        rows = _flat(x, mask)
        n, n_feat = rows.shape
        if n < 2:
            raise ValueError(f"PCA.fit: need at least 2 unmasked rows, got {n}")
        k = n_feat if self.n_components is None else int(self.n_components)
        if not 1 <= k <= min(n, n_feat):
            raise ValueError(f"PCA: n_components={k} must be in [1, min(n_rows={n}, "
                             f"n_features={n_feat})]")
        mean = rows.mean(axis=0)
        _, s, vt = np.linalg.svd(rows - mean, full_matrices=False)
        signs = np.sign(vt[np.arange(vt.shape[0]), np.argmax(np.abs(vt), axis=1)])
        vt = vt * np.where(signs == 0, 1.0, signs)[:, None]
        var = s ** 2 / (n - 1)
        return {"mean": mean, "components": vt[:k], "explained_variance": var[:k],
                "explained_variance_ratio": var[:k] / var.sum()}

    def _scale(self, params, dtype):
        if not self.whiten:
            return None
        return jnp.sqrt(jnp.maximum(params["explained_variance"], 1e-30)).astype(dtype)

    def apply(self, params, x, mask=None):
        x = jnp.asarray(x)
        z = (x - params["mean"].astype(x.dtype)) @ params["components"].astype(x.dtype).T
        scale = self._scale(params, x.dtype)
        if scale is not None:
            z = z / scale
        return _zero_masked(z, mask)

    def inverse(self, params, z, mask=None):
        z = jnp.asarray(z)
        scale = self._scale(params, z.dtype)
        if scale is not None:
            z = z * scale
        x = z @ params["components"].astype(z.dtype) + params["mean"].astype(z.dtype)
        return _zero_masked(x, mask)


STEPS = {cls.__name__: cls for cls in (Standardize, LogTransform, PCA)}


def _array_to_json(a: np.ndarray) -> dict:
    a = np.asarray(a)
    if a.dtype.kind not in "fiub":
        raise TypeError(f"cannot serialise array of dtype {a.dtype}")
    # float64(x) is exact for float16/32 and repr(float) round-trips float64 exactly
    return {"dtype": a.dtype.str, "shape": list(a.shape), "data": a.reshape(-1).tolist()}


def _array_from_json(d: dict) -> np.ndarray:
    return np.asarray(d["data"], dtype=np.dtype(d["dtype"])).reshape(d["shape"])


def _jsonable(v):
    if isinstance(v, tuple):
        return [_jsonable(e) for e in v]
    return v


def _tupled(v):
    if isinstance(v, list):
        return tuple(_tupled(e) for e in v)
    return v


@dataclasses.dataclass(frozen=True)
class Pipeline:
    """An ordered tuple of steps; `fit` returns a FittedPipeline."""
    steps: tuple

    def __post_init__(self):
        object.__setattr__(self, "steps", tuple(self.steps))
        for s in self.steps:
            if type(s).__name__ not in STEPS:
                raise TypeError(f"Pipeline: unknown step {s!r}; valid step types are {list(STEPS)}")

    def fit(self, x, mask=None) -> "FittedPipeline":
        params = []
        for step in self.steps:
            p = step.fit(x, mask)
            params.append(p)
            with jax.enable_x64(True):  # the next step is fitted on float64 host data
                x = np.asarray(step.apply(p, np.asarray(x, np.float64), mask))
        return FittedPipeline(self, tuple(params))

    def apply(self, params: Sequence[dict], x, mask=None):
        """Pure: applies the steps with the given params (jit-able)."""
        for step, p in zip(self.steps, params, strict=True):
            x = step.apply(p, x, mask)
        return x

    def inverse(self, params: Sequence[dict], y, mask=None):
        for step, p in zip(reversed(self.steps), reversed(tuple(params)), strict=True):
            y = step.inverse(p, y, mask)
        return y


@dataclasses.dataclass(frozen=True)
class FittedPipeline:
    """A Pipeline together with its fitted params (tuple of dicts of numpy arrays)."""
    pipeline: Pipeline
    params: tuple

    def transform(self, x, mask=None):
        return self.pipeline.apply(self.params, x, mask)

    __call__ = transform

    def inverse_transform(self, y, mask=None):
        return self.pipeline.inverse(self.params, y, mask)

    def to_dict(self) -> dict:
        steps = []
        for step, p in zip(self.pipeline.steps, self.params, strict=True):
            settings = {f.name: _jsonable(getattr(step, f.name)) for f in dataclasses.fields(step)}
            steps.append({"type": type(step).__name__, "settings": settings,
                          "params": {k: _array_to_json(v) for k, v in p.items()}})
        return {"format": "hepjax.preprocessing/1", "steps": steps}

    @classmethod
    def from_dict(cls, d: dict) -> "FittedPipeline":
        if d.get("format") != "hepjax.preprocessing/1":
            raise ValueError(f"not a hepjax preprocessing dict (format={d.get('format')!r})")
        steps, params = [], []
        for s in d["steps"]:
            if s["type"] not in STEPS:
                raise ValueError(f"unknown step type {s['type']!r}; valid: {list(STEPS)}")
            steps.append(STEPS[s["type"]](**{k: _tupled(v) for k, v in s["settings"].items()}))
            params.append({k: _array_from_json(v) for k, v in s["params"].items()})
        return cls(Pipeline(tuple(steps)), tuple(params))

    def save(self, path) -> None:
        """Writes JSON to `path` (save it next to the run's config and checkpoints)."""
        pathlib.Path(path).write_text(json.dumps(self.to_dict(), indent=1))

    @classmethod
    def load(cls, path) -> "FittedPipeline":
        return cls.from_dict(json.loads(pathlib.Path(path).read_text()))
