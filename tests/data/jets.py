"""Synthetic jets in the readers' array layout, shared by the format tests."""
import numpy as np


def synthetic_jets(n=50, m=30, seed=0):
    """n jets of up to m massless constituents (E, px, py, pz), with every per-jet column the
    native layout holds; labels 0/1, ttv 0/1/2."""
    rng = np.random.default_rng(seed)
    counts = rng.integers(1, m + 1, n)
    pt = rng.exponential(20, (n, m)) + 0.5
    eta, phi = rng.normal(0, 0.3, (n, m)), rng.uniform(-np.pi, np.pi, (n, m))
    p4 = np.stack([pt * np.cosh(eta), pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta)], -1)
    mask = np.arange(m)[None] < counts[:, None]
    p4 = np.where(mask[..., None], p4, 0).astype(np.float32)
    return {"p4": p4, "mask": mask, "n_constituents": counts.astype(np.int32),
            "truth": rng.normal(size=(n, 4)).astype(np.float32), "ttv": rng.integers(0, 3, n),
            "label": rng.integers(0, 2, n), "pid": np.where(mask, 211, 0).astype(np.int32),
            "charge": np.where(mask, 1, 0).astype(np.int8),
            "jet_p4": p4.sum(1)}
