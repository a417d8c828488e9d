"""MLPF: machine-learned particle flow with LSH-binned graph layers (Flax NNX).

After Pata et al., "MLPF: efficient machine-learned particle-flow reconstruction using graph
neural networks", EPJC 81 (2021) 381, and Pata et al., Commun. Phys. 7 (2024) 124 (the
jpata/particleflow ``CombinedGraphLayer``). Input: the detector elements of a whole event
(:mod:`hepjax.pf.elements`, features ``FEATURES``) as a padded set (B, N, F) with a mask (B, N);
output, per element: class logits over ``CLASSES`` (0 "no particle") and a regression of
(pT, eta, sin phi, cos phi, E) *relative to the element*.

Structure (all plain ``nnx.Linear`` / ``nnx.LayerNorm`` modules, so layerwise relevance
propagation can walk it; the only non-linear couplings between elements are the bin kernels
``A`` returned with ``return_graph=True``):

1. ``inputs(features)``: type one-hot, log(1 + pT), log(1 + E), eta, sin / cos phi, the
   calorimeter-surface coordinates, charge, track resolution, cluster widths, log(1 + cells).
2. ``embed``: Linear -> GELU -> Linear to ``width``.
3. ``num_layers`` x :class:`CombinedGraphLayer`: a learned distance embedding
   c_i = Linear(h_i) in R^``dist_dim``; the elements are sorted into fixed-size bins of
   ``bin_size`` by :func:`bin_permutation` (a principal-axis tree on c, see below); inside each
   bin a Gaussian kernel A_ij = exp(-|c_i - c_j|^2) (masked, row-normalised, self included)
   carries messages m_i = sum_j A_ij W_msg h_j; h_i <- LayerNorm(h_i + GELU(W_self h_i + m_i));
   the bins are undone by the inverse permutation (``aggregation='sum'``: A is not
   row-normalised, so an element can add up, e.g., the energies of the tracks near a cluster;
   ``linear_energy=True`` adds pT / 10 and E / 10 GeV to the inputs for the same reason).
   Cost O(N * bin_size) per layer. With
   ``bin_size=None`` the same layer uses one bin of all N elements: the all-to-all graph,
   O(N^2) (the comparison of the scaling benchmark).
4. decoders on [embedding, last hidden]: ``classify`` (MLP -> len(CLASSES) logits) and
   ``regress`` (MLP on [..., softmax(logits)] -> 5 numbers r), decoded as
   pT = pT_el exp(r0), eta = eta_el + r1, sin phi = sin_el + r2, cos phi = cos_el + r3,
   E = E_el exp(r4).

**Physics inputs** (``physics_inputs=True``): the features carry 8 more columns,
``hepjax.pf.links.LINK_FEATURES`` (track-cluster links made without truth: per cluster the
energy of the tracks linked to it, per track the energy of its linked clusters, resolutions,
and a reference energy: a track's own energy, an HCal cluster's excess over its linked tracks,
an ECal cluster's energy), turned into ``N_LINK_INPUTS`` more inputs, and the pT is regressed
as a correction of the reference in units of its resolution, r0 = (pT - pT_ref) / sigma_ref
(``regression_targets``; r4 is then the mass term log(E / pT cosh eta)). Which scheme applies
is decided by the number of feature columns (:func:`has_links`), so ``regression_targets``,
``decode`` and ``loss_fn`` always agree with the model's inputs.

**Locality of the binning.** Random-rotation LSH (Kitaev et al., "Reformer", arXiv:2001.04451,
used by MLPF and by ``hepjax.graphs.build.lsh_permutation``) codes points by the argmax of a
few random projections: a code is a *cone* from the origin, not a neighbourhood, so bins of
nearby points are poor (recall@8 of 0.37-0.83 against exact kNN). ``bin_permutation`` instead
builds a balanced principal-axis tree (a random-projection tree, Dasgupta & Freund,
"Random projection trees and low dimensional manifolds", STOC 2008, with the principal axis as
the split direction): split the set at the median of its projection on its leading principal
axis (power iteration on the masked covariance), recurse on both halves, until groups of
``bin_size``. Each level is a sort, so the whole is O(N log N) with static shapes; padded
elements sort last at every level. ``recall_at_k`` measures how many of each point's exact k
nearest neighbours share its bin (tests/pf/test_mlpf.py, benchmarks/mlpf_scaling.py).

Losses (:func:`loss_fn`): focal loss (Lin et al., arXiv:1708.02002; ``gamma=0`` is
cross-entropy) over all real elements, plus Huber loss on the regression targets of the
elements with a particle; padding never enters.
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

Array = jax.Array

__all__ = ["MLPF", "synthetic_elements", "CombinedGraphLayer", "bin_permutation", "recall_at_k", "inputs", "has_links",
           "regression_targets", "decode", "loss_fn", "N_CLASSES", "N_INPUTS", "N_LINK",
           "N_LINK_INPUTS", "padded_size"]

N_CLASSES = 6
N_FEATURES = 14
N_INPUTS = 3 + 13
N_LINK = 8          # hepjax.pf.links.LINK_FEATURES, appended to the features (physics inputs)
N_LINK_INPUTS = 11  # what ``inputs`` makes of them


def padded_size(n: int, bin_size: int) -> int:
    """The smallest bin_size * 2^L >= n (the set sizes ``bin_permutation`` accepts)."""
    nb = max(1, math.ceil(n / bin_size))
    return bin_size * (1 << (nb - 1).bit_length())


def synthetic_elements(n_real: int, n: int, seed: int = 0, pt_scale: float = 3.0):
    """One event of ``n_real`` random elements padded to ``n``, in the 14 columns of
    ``hepjax.pf.elements.FEATURES`` (types 1-3 uniform, flat in eta within 2.5 and in phi,
    pT = 0.5 + exponential(``pt_scale``) GeV): (features (1, n, 14), mask (1, n)), for
    benchmarks and tests that need no physics."""
    rng = np.random.default_rng(seed)
    f = np.zeros((1, n, 14), np.float32)
    typ = rng.integers(1, 4, n_real)
    eta, phi = rng.uniform(-2.5, 2.5, n_real), rng.uniform(-math.pi, math.pi, n_real)
    pt = rng.exponential(pt_scale, n_real) + 0.5
    f[0, :n_real] = np.stack([typ, pt, eta, np.sin(phi), np.cos(phi), pt * np.cosh(eta), eta,
                              np.sin(phi), np.cos(phi), (typ == 1) * rng.choice([-1, 1], n_real),
                              (typ == 1) * 0.05, (typ > 1) * 0.02, (typ > 1) * 0.02,
                              (typ > 1) * 5], 1)
    return jnp.asarray(f), jnp.asarray(np.arange(n)[None] < n_real)


def _principal_axis(c, m, iters: int = 4):
    """Leading principal axis of the masked points c (G, S, D) -> (G, D) by power iteration."""
    w = m.astype(c.dtype)[..., None]
    n = jnp.maximum(w.sum(1), 1.0)
    mu = (c * w).sum(1) / n
    x = (c - mu[:, None]) * w
    cov = jnp.einsum("gsd,gse->gde", x, x)
    v = jnp.ones(c.shape[:1] + c.shape[-1:], c.dtype) + 0.1 * jnp.arange(c.shape[-1], dtype=c.dtype)
    for _ in range(iters):
        v = jnp.einsum("gde,ge->gd", cov, v)
        v = v / (jnp.linalg.norm(v, axis=-1, keepdims=True) + 1e-12)
    return v


def bin_permutation(coords: Array, mask: Array, bin_size: int) -> Array:
    """Principal-axis-tree ordering of one set: (N, D), (N,) -> perm (N,) int32 such that
    coords[perm].reshape(N // bin_size, bin_size, D) are local bins. N must be
    bin_size * 2^L (:func:`padded_size`); padded points end up last."""
    n, _ = coords.shape
    if n % bin_size or (n // bin_size) & (n // bin_size - 1):
        raise ValueError(f"bin_permutation: N={n} must be bin_size={bin_size} times a power of 2 "
                         f"(pad the set to padded_size(n, bin_size)={padded_size(n, bin_size)})")
    coords = jax.lax.stop_gradient(coords)
    mask = jnp.asarray(mask, bool)
    perm = jnp.arange(n, dtype=jnp.int32)
    groups = 1
    while n // groups > bin_size:
        size = n // groups
        p = perm.reshape(groups, size)
        c, m = coords[p], mask[p]
        axis = _principal_axis(c, m)
        proj = jnp.einsum("gsd,gd->gs", c, axis)
        key = jnp.where(m, proj, jnp.inf)
        order = jnp.argsort(key, axis=1, stable=True)
        perm = jnp.take_along_axis(p, order, axis=1).reshape(n)
        groups *= 2
    return perm


def recall_at_k(coords, mask, perm, bin_size: int, k: int, shift: bool = False) -> Array:
    """Fraction of the exact k nearest real neighbours (euclidean, self excluded) of each real
    point that lie in its bin, averaged over real points. coords (N, D), mask (N,), perm (N,).
    ``shift``: also count a neighbour that shares the point's bin of the second binning, the
    same order cut half a bin later (positions [bin_size / 2, N - bin_size / 2) only, as
    :class:`CombinedGraphLayer` with ``shift=True``)."""
    n = coords.shape[0]
    mask = jnp.asarray(mask, bool)
    d = jnp.sum((coords[:, None] - coords[None]) ** 2, -1)
    d = jnp.where(mask[None] & ~jnp.eye(n, dtype=bool), d, jnp.inf)
    _, nn = jax.lax.top_k(-d, k)
    rank = jnp.zeros(n, jnp.int32).at[perm].set(jnp.arange(n, dtype=jnp.int32))
    bin_of = rank // bin_size
    same = bin_of[nn] == bin_of[:, None]
    if shift:
        half = bin_size // 2
        bin2 = jnp.where((rank >= half) & (rank < n - half), (rank - half) // bin_size, -1)
        same = same | ((bin2[nn] == bin2[:, None]) & (bin2[:, None] >= 0))
    ok = jnp.isfinite(jnp.take_along_axis(d, nn, 1))
    per = jnp.sum(same & ok, 1) / jnp.maximum(jnp.sum(ok, 1), 1)
    return jnp.sum(jnp.where(mask, per, 0.0)) / jnp.maximum(mask.sum(), 1)


def has_links(x: Array) -> bool:
    """Whether the features carry the link columns (``hepjax.pf.links.LINK_FEATURES``) after the
    14 element features: then the model gets the physics inputs and the momentum is regressed
    relative to the reference energy (:func:`regression_targets`)."""
    if x.shape[-1] not in (N_FEATURES, N_FEATURES + N_LINK):
        raise ValueError(f"MLPF: x must have {N_FEATURES} element features (or {N_FEATURES + N_LINK} "
                         f"with hepjax.pf.links.LINK_FEATURES), got {x.shape}")
    return x.shape[-1] == N_FEATURES + N_LINK


def _link_inputs(x: Array) -> Array:
    """The 8 link columns -> 11 inputs: log(1 + .) of the linked energies, the track count,
    the resolutions and the reference energy, the linked-track / cluster energy ratios (clipped
    at 5) and the reference over the element's own energy."""
    lk = jnp.maximum(x[..., N_FEATURES:], 0.0)
    e = jnp.maximum(x[..., 5:6], 0.0)
    ratio = lambda a, b: jnp.minimum(a / (b + 0.1), 5.0)  # noqa: E731
    return jnp.concatenate([
        jnp.log1p(lk[..., 0:4]), jnp.log1p(lk[..., 4:5]), jnp.log1p(lk[..., 5:8]),
        ratio(lk[..., 0:1], lk[..., 1:2]), ratio(lk[..., 2:3], lk[..., 3:4]),
        ratio(lk[..., 6:7], e)], -1)


def inputs(x: Array, linear_energy: bool = False) -> Array:
    """Raw element features (..., 14) in ``hepjax.pf.elements.FEATURES`` order -> model inputs
    (``linear_energy``: also pT / 10 GeV and E / 10 GeV, so sums and differences of energies,
    such as cluster minus track energy, are linear in the inputs). Features (..., 22) with the
    link columns (:func:`has_links`) add ``N_LINK_INPUTS`` physics inputs at the end."""
    links = has_links(x)
    typ = x[..., 0].astype(jnp.int32)
    onehot = jax.nn.one_hot(typ - 1, 3, dtype=x.dtype)
    extra = [x[..., 1:2] * 0.1, x[..., 5:6] * 0.1] if linear_energy else []
    return jnp.concatenate(extra + [
        onehot, jnp.log1p(jnp.maximum(x[..., 1:2], 0)), x[..., 2:5] * jnp.array([0.5, 1, 1], x.dtype),
        jnp.log1p(jnp.maximum(x[..., 5:6], 0)), x[..., 6:7] * 0.5, x[..., 7:10],
        x[..., 10:11] * 10, x[..., 11:13] * 20, jnp.log1p(x[..., 13:14])]
        + ([_link_inputs(x)] if links else []), -1)


class CombinedGraphLayer(nnx.Module):
    """One binned graph layer (see the module docstring). ``bin_size=None``: all-to-all.
    ``shift=True``: messages are the mean of those in the bins and in a second binning of the
    same order without its first and last half bins, cut into bins again (so the neighbours cut
    off at a bin edge are reached; twice the cost, no second sort). ``return_graph`` gives the
    permutations and kernels A of each binning."""

    def __init__(self, width: int, dist_dim: int, bin_size: int | None, *, rngs: nnx.Rngs,
                 shift: bool = False, aggregation: str = "mean"):
        if aggregation not in ("mean", "sum"):
            raise ValueError(f"aggregation={aggregation!r}: use 'mean' or 'sum'")
        self.bin_size = bin_size
        self.shift = shift
        self.aggregation = aggregation
        self.distance = nnx.Linear(width, dist_dim, rngs=rngs)
        self.message = nnx.Linear(width, width, rngs=rngs)
        self.self_ = nnx.Linear(width, width, rngs=rngs)
        self.norm = nnx.LayerNorm(width, rngs=rngs)

    def __call__(self, h: Array, mask: Array, return_graph: bool = False):
        b, n, c = h.shape
        size = n if self.bin_size is None else self.bin_size
        coords = self.distance(h)
        if self.bin_size is None or n == size:
            perm = jnp.broadcast_to(jnp.arange(n, dtype=jnp.int32), (b, n))
        else:
            perm = jax.vmap(lambda cc, mm: bin_permutation(cc, mm, size))(coords, mask)
        take = jax.vmap(lambda a, p: a[p])
        hm = self.message(h)
        norm = getattr(self, "aggregation", "mean") == "mean"
        msg, a = self._binned_messages(take(hm, perm), take(coords, perm), take(mask, perm), size,
                                       norm)
        msg = take(msg, jnp.argsort(perm, axis=1))
        perms, graphs = [perm], [a]
        if getattr(self, "shift", False) and n > size:
            # second binning: the same order without its first and last half bins, cut again
            half = size // 2
            p2 = perm[:, half:n - half]
            msg2, a2 = self._binned_messages(take(hm, p2), take(coords, p2), take(mask, p2), size,
                                             norm)
            rows = jnp.arange(b)[:, None]
            out2 = jnp.zeros_like(msg).at[rows, p2].set(msg2)
            has2 = jnp.zeros((b, n, 1), msg.dtype).at[rows, p2].set(1.0)
            msg = (msg + out2) / (1.0 + has2)
            perms.append(p2)
            graphs.append(a2)
        out = jax.nn.gelu(self.self_(h) + msg)
        h = self.norm(h + out)
        h = jnp.where(mask[..., None], h, 0.0)
        if return_graph:
            return h, (perms, graphs)
        return h

    @staticmethod
    def _binned_messages(hm, coords, mask, size, norm=True):
        """Sorted (B, N, C) messages, coordinates, mask -> sum_j A_ij hm_j (B, N, C) and the
        kernels A (B, N / size, size, size), row-normalised if ``norm`` (aggregation 'mean';
        'sum' keeps A_ij = exp(-d_ij^2), so a cluster can add up its tracks' energies)."""
        b, n, c = hm.shape
        nb = n // size
        hb = hm.reshape(b, nb, size, c)
        cb = coords.reshape(b, nb, size, -1)
        mb = mask.reshape(b, nb, size)
        sq = jnp.sum(cb * cb, -1)
        d2 = sq[..., :, None] + sq[..., None, :] - 2 * jnp.einsum("...id,...jd->...ij", cb, cb)
        a = jnp.exp(-jnp.maximum(d2, 0.0)) * (mb[..., :, None] & mb[..., None, :])
        if norm:
            a = a / (a.sum(-1, keepdims=True) + 1e-6)
        return jnp.einsum("...ij,...jc->...ic", a, hb).reshape(b, n, c), a


class MLPF(nnx.Module):
    """The MLPF network (see the module docstring)."""

    def __init__(self, width: int = 64, num_layers: int = 3, dist_dim: int = 8,
                 bin_size: int | None = 64, *, rngs: nnx.Rngs, shift: bool = False,
                 aggregation: str = "mean", linear_energy: bool = False,
                 physics_inputs: bool = False):
        self.linear_energy = linear_energy
        self.physics_inputs = physics_inputs
        self.embed1 = nnx.Linear(N_INPUTS + 2 * linear_energy + N_LINK_INPUTS * physics_inputs,
                                 width, rngs=rngs)
        self.embed2 = nnx.Linear(width, width, rngs=rngs)
        self.layers = nnx.List([CombinedGraphLayer(width, dist_dim, bin_size, rngs=rngs, shift=shift,
                                                   aggregation=aggregation)
                                for _ in range(num_layers)])
        self.cls1 = nnx.Linear(2 * width, width, rngs=rngs)
        self.cls2 = nnx.Linear(width, N_CLASSES, rngs=rngs)
        self.reg1 = nnx.Linear(2 * width + N_CLASSES, width, rngs=rngs)
        self.reg2 = nnx.Linear(width, 5, rngs=rngs)
        self.bin_size = bin_size

    def __call__(self, x: Array, mask: Array) -> tuple[Array, Array]:
        """x (B, N, 14) raw features (B, N, 22 with the link columns if ``physics_inputs``),
        mask (B, N) -> logits (B, N, 6), r (B, N, 5)."""
        nf = N_FEATURES + N_LINK * bool(getattr(self, "physics_inputs", False))
        if x.ndim != 3 or x.shape[-1] != nf:
            raise ValueError(f"MLPF: x must be (B, N, {nf}) element features"
                             + (" (the 14 of hepjax.pf.elements and the 8 of hepjax.pf.links)"
                                if nf > N_FEATURES else "") + f", got {x.shape}")
        if mask.shape != x.shape[:2]:
            raise ValueError(f"MLPF: mask must be {x.shape[:2]}, got {mask.shape}")
        e = self.embed2(jax.nn.gelu(self.embed1(inputs(x, getattr(self, "linear_energy", False)))))
        e = jnp.where(mask[..., None], e, 0.0)
        h = e
        for layer in self.layers:
            h = layer(h, mask)
        z = jnp.concatenate([e, h], -1)
        logits = self.cls2(jax.nn.gelu(self.cls1(z)))
        r = self.reg2(jax.nn.gelu(self.reg1(
            jnp.concatenate([z, jax.nn.softmax(jax.lax.stop_gradient(logits))], -1))))
        return logits, r


SIGMA_MIN = 0.01   # GeV: floor of the reference resolution


def _reference(x: Array):
    """Reference pT and its resolution (GeV) from the link columns: ref_e / cosh(eta) and
    ref_sigma / cosh(eta) (tracks: their own pT and resolution; HCal clusters: the neutral
    excess E - sum of linked tracks' E; ECal clusters: their energy)."""
    ch = jnp.cosh(x[..., 2])
    return (jnp.maximum(x[..., N_FEATURES + 6], 0.0) / ch,
            jnp.maximum(x[..., N_FEATURES + 7], SIGMA_MIN) / ch)


def regression_targets(x: Array, target: Array) -> Array:
    """(pT, eta, phi, E) targets (..., 4) -> the 5 regressed numbers relative to the element.
    Without link columns: log(pT / pT_el), Delta eta, Delta sin phi, Delta cos phi,
    log(E / E_el). With them (:func:`has_links`): r0 = (pT - pT_ref) / sigma_ref, the
    residual in units of the reference's resolution (:func:`_reference`), and
    r4 = log(E / (pT cosh eta)) (the mass term), so the momentum is a correction of the physics
    reference that vanishes when that is right."""
    d_ang = [target[..., 1] - x[..., 2], jnp.sin(target[..., 2]) - x[..., 3],
             jnp.cos(target[..., 2]) - x[..., 4]]
    if has_links(x):
        pt_ref, sig = _reference(x)
        pt_t = jnp.maximum(target[..., 0], 1e-3)
        mass = jnp.log(jnp.maximum(target[..., 3], 1e-3) / (pt_t * jnp.cosh(target[..., 1])))
        return jnp.stack([(target[..., 0] - pt_ref) / sig] + d_ang + [jnp.maximum(mass, 0.0)], -1)
    pt_el = jnp.maximum(x[..., 1], 1e-3)
    e_el = jnp.maximum(x[..., 5], 1e-3)
    return jnp.stack([jnp.log(jnp.maximum(target[..., 0], 1e-3) / pt_el)] + d_ang
                     + [jnp.log(jnp.maximum(target[..., 3], 1e-3) / e_el)], -1)


def decode(x: Array, logits: Array, r: Array, soft: bool = False) -> tuple[Array, Array]:
    """Per element: class (argmax) and candidate (pT, eta, phi, E) (inverse of
    :func:`regression_targets`; with link columns pT = max(pT_ref + sigma_ref r0, 0) and
    E = pT cosh(eta) exp(max(r4, 0))). ``soft``: every element is a candidate, of its most
    probable particle class, with pT and E scaled by the probability 1 - p(none) that it has a
    particle (the expected momentum, for sums such as jets and missing pT)."""
    if soft:
        cls, cand = decode(x, logits, r)
        p_some = 1.0 - jax.nn.softmax(logits, -1)[..., 0]
        cand = cand * jnp.stack([p_some, jnp.ones_like(p_some), jnp.ones_like(p_some), p_some], -1)
        return 1 + jnp.argmax(logits[..., 1:], -1), cand
    cls = jnp.argmax(logits, -1)
    eta = x[..., 2] + r[..., 1]
    phi = jnp.arctan2(x[..., 3] + r[..., 2], x[..., 4] + r[..., 3])
    if has_links(x):
        pt_ref, sig = _reference(x)
        pt = jnp.maximum(pt_ref + sig * r[..., 0], 0.0)
        e = pt * jnp.cosh(eta) * jnp.exp(jnp.clip(r[..., 4], 0, 5))
        return cls, jnp.stack([pt, eta, phi, e], -1)
    pt = x[..., 1] * jnp.exp(jnp.clip(r[..., 0], -5, 5))
    e = x[..., 5] * jnp.exp(jnp.clip(r[..., 4], -5, 5))
    e = jnp.maximum(e, pt)   # a massless-or-massive candidate has E >= pT
    return cls, jnp.stack([pt, eta, phi, e], -1)


def loss_fn(logits, r, x, y, target, mask, gamma: float = 0.0, reg_weight: float = 1.0,
            energy_weighted: bool = False, sigma_weighted: bool = False):
    """Mean focal (gamma=0: cross-entropy) over real elements + reg_weight x mean Huber over
    real elements with a particle (``energy_weighted``: a weighted mean with weights
    sqrt(E_target / GeV), so the energetic elements that dominate jets and missing pT count
    more; ``sigma_weighted``, with link columns only: weights sigma_ref of the pT reference in
    GeV, so that the residuals in units of sigma_ref count as their size in GeV would, which is
    what jet and missing-pT sums feel). Returns (loss, (classification, regression))."""
    logp = jax.nn.log_softmax(logits)
    lp = jnp.take_along_axis(logp, y[..., None], -1)[..., 0]
    focal = -((1 - jnp.exp(lp)) ** gamma) * lp if gamma else -lp
    m = mask.astype(logits.dtype)
    cls = jnp.sum(focal * m) / jnp.maximum(m.sum(), 1)
    t = regression_targets(x, target)
    hub = jnp.sum(optax_huber(r - t), -1)
    has = m * (y > 0)
    if energy_weighted:
        has = has * jnp.sqrt(jnp.maximum(target[..., 3], 0.0))
    if sigma_weighted:
        if not has_links(x):
            raise ValueError("loss_fn: sigma_weighted needs the link columns (physics inputs)")
        has = has * _reference(x)[1]
    reg = jnp.sum(hub * has) / jnp.maximum(has.sum(), 1e-6)
    return cls + reg_weight * reg, (cls, reg)


def optax_huber(d, delta: float = 1.0):
    a = jnp.abs(d)
    return jnp.where(a <= delta, 0.5 * d * d, delta * (a - 0.5 * delta))
