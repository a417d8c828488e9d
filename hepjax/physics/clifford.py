"""The space-time (Clifford / geometric) algebra Cl(1,3) on 16-component multivectors.

Generators gamma_0..gamma_3 with gamma_mu gamma_nu + gamma_nu gamma_mu = 2 g_{mu nu},
g = diag(1, -1, -1, -1). A multivector is an array (..., 16) of coefficients on the basis blades,
ordered by grade:
    0: 1;  1: g0 g1 g2 g3;  2: g01 g02 g03 g12 g13 g23;  3: g012 g013 g023 g123;  4: g0123
(g01 = gamma_0 gamma_1 etc.; g0123 = gamma^5 up to a phase convention). Scalars (grade 0) and the
pseudoscalar (grade 4) are invariant under proper orthochronous Lorentz transformations, vectors
(grade 1) transform like four-momenta, bivectors like the electromagnetic field tensor.

A Lorentz transformation L acts on multivectors by its outermorphism (``outermorphism``): the
image of a blade gamma_{a1} ... gamma_{ak} is (L gamma_{a1}) ^ ... ^ (L gamma_{ak}), with blade
coefficients given by k x k minors of L. For L in SO+(1,3) this is an automorphism of the
algebra: it commutes with the geometric product, the grade projections and multiplication by
the pseudoscalar, and leaves ``inner_product`` invariant. Used by ``hepjax.models.lgatr``.
"""
from __future__ import annotations

import itertools

import jax.numpy as jnp
import numpy as np

__all__ = ["BLADES", "GRADES", "NUM_BLADES", "METRIC_SIGNATURE", "gp_table", "geometric_product",
           "grade_project", "reverse", "inner_product", "inner_product_signs", "embed_vector",
           "extract_vector", "pseudoscalar_product", "equivariant_basis", "outermorphism",
           "scalar", "pseudoscalar"]

METRIC_SIGNATURE = (1.0, -1.0, -1.0, -1.0)
BLADES: tuple[tuple[int, ...], ...] = tuple(
    c for k in range(5) for c in itertools.combinations(range(4), k))
GRADES = np.array([len(b) for b in BLADES])
NUM_BLADES = 16
_INDEX = {b: i for i, b in enumerate(BLADES)}


def _blade_product(a: tuple[int, ...], b: tuple[int, ...]) -> tuple[float, tuple[int, ...]]:
    """e_a e_b = sign e_c for sorted index tuples a, b (bubble sort with the metric)."""
    seq = list(a) + list(b)
    sign = 1.0
    # bubble sort, counting swaps of distinct anticommuting generators
    for i in range(len(seq)):
        for j in range(len(seq) - 1 - i):
            if seq[j] > seq[j + 1]:
                seq[j], seq[j + 1] = seq[j + 1], seq[j]
                sign = -sign
    out: list[int] = []
    for g in seq:  # contract equal neighbours: gamma_mu^2 = g_mu_mu
        if out and out[-1] == g:
            out.pop()
            sign *= METRIC_SIGNATURE[g]
        else:
            out.append(g)
    return sign, tuple(out)


def _make_table() -> np.ndarray:
    table = np.zeros((16, 16, 16))
    for i, a in enumerate(BLADES):
        for j, b in enumerate(BLADES):
            s, c = _blade_product(a, b)
            table[i, j, _INDEX[c]] = s
    return table


_GP = _make_table()
_REVERSE = np.array([(-1.0) ** (k * (k - 1) // 2) for k in GRADES])
_IP_SIGNS = np.array([_REVERSE[i] * _GP[i, i, 0] for i in range(16)])  # <rev(e_A) e_A>_0


def gp_table() -> np.ndarray:
    """(16, 16, 16) structure constants: (x y)_k = sum_ij x_i y_j T[i, j, k]."""
    return _GP.copy()


def geometric_product(x, y):
    """Geometric product of multivectors (..., 16), (..., 16) -> (..., 16) (broadcast)."""
    return jnp.einsum("...i,...j,ijk->...k", x, y, jnp.asarray(_GP, jnp.result_type(x, y)))


def grade_project(x, k: int):
    """<x>_k: the grade-k part of x (..., 16), other components zeroed."""
    return x * jnp.asarray(GRADES == k, x.dtype)


def reverse(x):
    """Reversion (order of generators reversed): grade k picks up (-1)^(k(k-1)/2)."""
    return x * jnp.asarray(_REVERSE, x.dtype)


def inner_product_signs() -> np.ndarray:
    """(16,) signs s_A with <x, y> = sum_A s_A x_A y_A."""
    return _IP_SIGNS.copy()


def inner_product(x, y):
    """The invariant inner product <x, y> = <reverse(x) y>_0, (..., 16) -> (...). On vectors it
    is the Minkowski product p.q."""
    return jnp.sum(x * y * jnp.asarray(_IP_SIGNS, jnp.result_type(x, y)), axis=-1)


def embed_vector(p):
    """Four-vectors (..., 4) (E, px, py, pz) -> grade-1 multivectors (..., 16)."""
    return jnp.zeros(p.shape[:-1] + (16,), p.dtype).at[..., 1:5].set(p)


def extract_vector(x):
    """The grade-1 part of (..., 16) as four-vectors (..., 4)."""
    return x[..., 1:5]


def scalar(x):
    return x[..., 0]


def pseudoscalar(x):
    return x[..., 15]


_PSEUDO_MATRIX = np.einsum("j,jak->ka", np.eye(16)[15], _GP)  # (I x)_k = sum_a M[k, a] x_a


def pseudoscalar_product(x):
    """I x with I = gamma_0 gamma_1 gamma_2 gamma_3 (commutes with SO+(1,3))."""
    return jnp.einsum("ka,...a->...k", jnp.asarray(_PSEUDO_MATRIX, x.dtype), x)


def equivariant_basis() -> np.ndarray:
    """(10, 16, 16) matrices spanning the SO+(1,3)-equivariant linear maps of one multivector:
    the five grade projections <.>_k and the five maps I <.>_k (Spinner et al. 2024, eq. 6)."""
    proj = np.stack([np.diag((GRADES == k).astype(float)) for k in range(5)])
    return np.concatenate([proj, np.einsum("ka,nab->nkb", _PSEUDO_MATRIX, proj)], 0)


def outermorphism(lam):
    """The action (..., 16, 16) of Lorentz matrices lam (..., 4, 4) on multivectors:
    component B of the image of blade A is the minor det(lam[B, A]) (equal grades)."""
    lam = jnp.asarray(lam)
    out = jnp.zeros(lam.shape[:-2] + (16, 16), lam.dtype).at[..., 0, 0].set(1.0)
    for k in range(1, 5):
        idx = np.array([i for i, b in enumerate(BLADES) if len(b) == k])
        sub = np.array([BLADES[i] for i in idx])  # (n_k, k) generator indices of each blade
        minors = lam[..., sub[:, None, :, None], sub[None, :, None, :]]  # (..., n_k, n_k, k, k)
        out = out.at[..., idx[:, None], idx[None, :]].set(jnp.linalg.det(minors))
    return out
