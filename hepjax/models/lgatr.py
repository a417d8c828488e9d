"""L-GATr: a Lorentz-equivariant geometric-algebra transformer for jet tagging.

Spinner, Bresó, Haan, Plehn, Thaler, Brehmer, "Lorentz-equivariant geometric algebra transformers
for high-energy physics", arXiv:2405.14806 (2024); built on GATr (Brehmer et al., 2023).

Every particle is a token carrying ``hidden_mv`` multivectors of Cl(1,3) (hepjax.physics.clifford)
and ``hidden_s`` scalars. The layers (as tabulated beside the transformer's in G. Kasieczka's
HISS summer-school lectures "Intro and Overview", slide "Symmetries"):
  * EquiLinear: y_c' = sum_c sum_k (v_c'ck <x_c>_k + w_c'ck I <x_c>_k), plus scalar <-> scalar-
    component mixing and a bias on the scalar component;
  * geometric product x y of two EquiLinear images (the bilinear layer of the MLP);
  * gated GELU: GELU(<x>_0) x;
  * LayerNorm: x / sqrt(mean_c sum_k |<<x_c>_k, <x_c>_k>| + eps) (scalars: plain RMS norm);
  * attention: softmax_j(sum_c <q_ic, k_jc> + s_q . s_k) / sqrt(16 n_c + n_s)) over the real
    tokens j, per head, with the invariant inner product <x, y> = <reverse(x) y>_0.
Each of these commutes with the outermorphism of any proper orthochronous Lorentz transformation,
so the scalar outputs (logits) are invariant and the multivector outputs equivariant.
Blocks are pre-norm: x += Attn(LN(x)); x += Lin(GatedGELU(GP(Lin_l(LN x), Lin_r(LN x)))).

Inputs (``model(features, mask, vectors)``): ``vectors`` (B, N, 4) (E, px, py, pz) GeV, scaled by
``momentum_scale`` and embedded as grade-1 multivectors; ``features`` (B, N, F) invariant scalars
(e.g. particle ID, charge) enter the scalar channels together with a constant 1 per real token;
``mask`` (B, N) bool (padded rows may hold anything). With ``spurions`` every token gets an
extra multivector channel holding the beam plane gamma_0 gamma_3, which is invariant under
rotations about and boosts along the beam, so the model keeps exactly those symmetries.
Readout: the mean over real tokens of the output scalar channels -> logits.
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import ml_collections
from flax import nnx

from hepjax.nn import activations
from hepjax.physics import clifford

__all__ = ["EquiLinear", "EquiLayerNorm", "GeometricAttention", "GeometricMLP", "LGATrBlock",
           "LGATr", "build", "default_config"]

_BEAM_BLADE = clifford.BLADES.index((0, 3))


def default_config() -> ml_collections.ConfigDict:
    """Sizes follow the L-GATr top-tagging network (12 blocks, 8 heads; 32 multivector and 32
    scalar channels per token are our reading of the paper, not checked against its code)."""
    return ml_collections.ConfigDict({
        "name": "lgatr",
        "num_blocks": 12,
        "hidden_mv": 32,
        "hidden_s": 32,
        "num_heads": 8,
        "spurions": True,
        "momentum_scale": 0.01,
        "layer_norm_eps": 1e-6,
        "param_dtype": "float32",
    })


class EquiLinear(nnx.Module):
    """Equivariant linear map on (mv (..., C_in, 16), s (..., S_in)) -> (mv (..., C_out, 16),
    s (..., S_out))."""

    def __init__(self, in_mv: int, out_mv: int, in_s: int, out_s: int, *,
                 param_dtype=jnp.float32, rngs: nnx.Rngs):
        normal = jax.nn.initializers.normal
        self.w = nnx.Param(normal(1.0 / math.sqrt(2 * in_mv))(rngs.params(), (out_mv, in_mv, 10),
                                                              param_dtype))
        self.s_to_mv = nnx.Param(normal(1.0 / math.sqrt(max(in_s, 1)))(
            rngs.params(), (in_s, out_mv), param_dtype))
        self.mv_bias = nnx.Param(jnp.zeros((out_mv,), param_dtype))
        self.s_to_s = nnx.Param(normal(1.0 / math.sqrt(max(in_s + in_mv, 1)))(
            rngs.params(), (in_s, out_s), param_dtype))
        self.mv_to_s = nnx.Param(normal(1.0 / math.sqrt(max(in_s + in_mv, 1)))(
            rngs.params(), (in_mv, out_s), param_dtype))
        self.s_bias = nnx.Param(jnp.zeros((out_s,), param_dtype))

    def __call__(self, mv, s):
        basis = jnp.asarray(clifford.equivariant_basis(), mv.dtype)
        y = jnp.einsum("...ca,dck,kba->...db", mv, self.w[...], basis)
        y = y.at[..., 0].add(s @ self.s_to_mv[...] + self.mv_bias[...])
        t = s @ self.s_to_s[...] + mv[..., 0] @ self.mv_to_s[...] + self.s_bias[...]
        return y, t


class EquiLayerNorm(nnx.Module):
    """mv / sqrt(mean_c sum_k |<<mv_c>_k, <mv_c>_k>| + eps); s / sqrt(mean s^2 + eps)."""

    def __init__(self, eps: float = 1e-6):
        self.eps = eps

    def __call__(self, mv, s):
        signs = jnp.asarray(clifford.inner_product_signs(), mv.dtype)
        onehot = jnp.asarray(clifford.GRADES[:, None] == jnp.arange(5)[None, :], mv.dtype)
        per_grade = jnp.abs((mv * mv * signs) @ onehot)  # (..., C, 5)
        norm = jnp.mean(jnp.sum(per_grade, -1), axis=-1)[..., None, None]
        s_norm = jnp.mean(s * s, axis=-1, keepdims=True)
        return mv / jnp.sqrt(norm + self.eps), s / jnp.sqrt(s_norm + self.eps)


class GeometricAttention(nnx.Module):
    """Multi-head attention with the invariant inner product over real tokens."""

    def __init__(self, mv: int, s: int, num_heads: int, *, param_dtype, rngs):
        if mv % num_heads or s % num_heads:
            raise ValueError(f"L-GATr: hidden_mv={mv} and hidden_s={s} must be divisible by "
                             f"num_heads={num_heads}")
        self.h = num_heads
        make = lambda: EquiLinear(mv, mv, s, s, param_dtype=param_dtype, rngs=rngs)  # noqa: E731
        self.q, self.k, self.v, self.out = make(), make(), make(), make()

    def __call__(self, mv, s, mask):
        B, N, C, _ = mv.shape
        h = self.h

        def heads(x, t):
            return (x.reshape(B, N, h, C // h, 16), t.reshape(B, N, h, t.shape[-1] // h))

        (qm, qs), (km, ks), (vm, vs) = (heads(*f(mv, s)) for f in (self.q, self.k, self.v))
        signs = jnp.asarray(clifford.inner_product_signs(), mv.dtype)
        logits = (jnp.einsum("bihca,bjhca->bhij", qm * signs, km)
                  + jnp.einsum("bihc,bjhc->bhij", qs, ks))
        logits = logits / math.sqrt(16 * (C // h) + qs.shape[-1])
        attn = activations.softmax(logits, axis=-1, where=mask[:, None, None, :])
        om = jnp.einsum("bhij,bjhca->bihca", attn, vm).reshape(B, N, C, 16)
        os = jnp.einsum("bhij,bjhc->bihc", attn, vs).reshape(B, N, -1)
        return self.out(om, os)


class GeometricMLP(nnx.Module):
    """Lin_out(GatedGELU(GP(Lin_l(x), Lin_r(x)))) with twice the channels inside."""

    def __init__(self, mv: int, s: int, *, param_dtype, rngs):
        self.left = EquiLinear(mv, 2 * mv, s, 2 * s, param_dtype=param_dtype, rngs=rngs)
        self.right = EquiLinear(mv, 2 * mv, s, 2 * s, param_dtype=param_dtype, rngs=rngs)
        self.out = EquiLinear(2 * mv, mv, 2 * s, s, param_dtype=param_dtype, rngs=rngs)

    def __call__(self, mv, s):
        lm, ls = self.left(mv, s)
        rm, _ = self.right(mv, s)
        g = clifford.geometric_product(lm, rm)
        g = jax.nn.gelu(g[..., :1]) * g  # gated GELU on the scalar component
        return self.out(g, jax.nn.gelu(ls))


class LGATrBlock(nnx.Module):
    def __init__(self, mv: int, s: int, num_heads: int, eps: float, *, param_dtype, rngs):
        self.norm = EquiLayerNorm(eps)
        self.attn = GeometricAttention(mv, s, num_heads, param_dtype=param_dtype, rngs=rngs)
        self.mlp = GeometricMLP(mv, s, param_dtype=param_dtype, rngs=rngs)

    def __call__(self, mv, s, mask):
        am, as_ = self.attn(*self.norm(mv, s), mask)
        mv, s = mv + am, s + as_
        bm, bs = self.mlp(*self.norm(mv, s))
        keep = mask[..., None]
        return jnp.where(keep[..., None], mv + bm, 0.0), jnp.where(keep, s + bs, 0.0)


class LGATr(nnx.Module):
    """``model(features, mask, vectors) -> logits (B, num_outputs)``;
    ``model.embed(...) -> (mv (B, N, hidden_mv, 16), s (B, N, hidden_s))`` the last hidden state
    (multivectors equivariant, scalars invariant; padded tokens zero)."""

    def __init__(self, num_features: int, num_outputs: int, *, num_blocks: int = 12,
                 hidden_mv: int = 32, hidden_s: int = 32, num_heads: int = 8,
                 spurions: bool = True, momentum_scale: float = 0.01,
                 layer_norm_eps: float = 1e-6, param_dtype=jnp.float32, rngs: nnx.Rngs):
        self.num_features = num_features
        self.spurions = spurions
        self.momentum_scale = momentum_scale
        in_mv = 2 if spurions else 1
        self.embedding = EquiLinear(in_mv, hidden_mv, num_features + 1, hidden_s,
                                    param_dtype=param_dtype, rngs=rngs)
        self.blocks = nnx.List([LGATrBlock(hidden_mv, hidden_s, num_heads, layer_norm_eps,
                                           param_dtype=param_dtype, rngs=rngs)
                                for _ in range(num_blocks)])
        self.norm = EquiLayerNorm(layer_norm_eps)
        self.head = EquiLinear(hidden_mv, 1, hidden_s, num_outputs, param_dtype=param_dtype,
                               rngs=rngs)

    def embed(self, features, mask=None, vectors=None):
        if vectors is None:
            raise ValueError("L-GATr needs `vectors` (B, N, 4): the batch must hold 'vectors'")
        if mask is None:
            mask = jnp.ones(vectors.shape[:2], bool)
        if (vectors.ndim != 3 or vectors.shape[-1] != 4 or mask.shape != vectors.shape[:2]
                or features.shape[:2] != mask.shape or features.shape[-1] != self.num_features):
            raise ValueError(f"L-GATr: expected vectors (B, N, 4), mask (B, N) and features "
                             f"(B, N, {self.num_features}); got {tuple(vectors.shape)}, "
                             f"{tuple(mask.shape)}, {tuple(features.shape)}")
        dtype = self.embedding.w[...].dtype
        mask = jnp.asarray(mask, bool)
        keep = mask[..., None]
        p = jnp.where(keep, jnp.asarray(vectors, dtype), 0.0) * self.momentum_scale
        mv = clifford.embed_vector(p)[:, :, None, :]
        if self.spurions:
            beam = jnp.zeros(mv.shape, dtype).at[..., _BEAM_BLADE].set(1.0)
            mv = jnp.concatenate([mv, beam], axis=2)
        s = jnp.concatenate([jnp.where(keep, jnp.asarray(features, dtype), 0.0),
                             jnp.ones(mask.shape + (1,), dtype)], axis=-1)
        mv, s = self.embedding(mv, s)
        mv, s = jnp.where(keep[..., None], mv, 0.0), jnp.where(keep, s, 0.0)
        for block in self.blocks:
            mv, s = block(mv, s, mask)
        return mv, s

    def __call__(self, features, mask=None, vectors=None):
        if mask is None:
            mask = jnp.ones(vectors.shape[:2], bool)
        mv, s = self.embed(features, mask, vectors)
        _, out = self.head(*self.norm(mv, s))
        w = jnp.asarray(mask, out.dtype)[..., None]
        return jnp.sum(out * w, axis=1) / jnp.maximum(jnp.sum(w, axis=1), 1.0)


def build(cfg, input_shape, num_outputs: int, rngs: nnx.Rngs) -> LGATr:
    """L-GATr from a ConfigDict with the fields of ``default_config()`` (missing fields take those
    defaults); ``input_shape`` = (N, F) of the per-particle scalar features."""
    if len(input_shape) != 2:
        raise ValueError(f"model 'lgatr' takes per-particle features (N, F), got per-example shape "
                         f"{tuple(input_shape)}")
    c = default_config()
    for key in cfg.keys():
        if key not in c:
            raise ValueError(f"lgatr config: unknown field {key!r}; known: {sorted(c.keys())}")
        with c.ignore_type():
            c[key] = cfg[key]
    return LGATr(int(input_shape[1]), num_outputs, num_blocks=int(c.num_blocks),
                 hidden_mv=int(c.hidden_mv), hidden_s=int(c.hidden_s),
                 num_heads=int(c.num_heads), spurions=bool(c.spurions),
                 momentum_scale=float(c.momentum_scale), layer_norm_eps=float(c.layer_norm_eps),
                 param_dtype=jnp.dtype(c.param_dtype), rngs=rngs)
