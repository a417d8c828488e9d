"""A DeepJet-style tagger: per-particle 1x1 dense layers, an LSTM over pT-ordered particles, and
a dense head.

E. Bols, J. Kieseler, M. Verzetti, M. Stoye, A. Stakia, "Jet flavour classification using
DeepJet", JINST 15 (2020) P12012, arXiv:2008.10519. DeepJet has separate branches for charged
and neutral candidates and secondary vertices (1x1 convolutions 64-32-32-8, LSTMs of 150 / 50 /
50 units, dense 200 + 7 x 100); this is its one-collection version for jet constituents:

  features (B, N, F) -> 1x1 dense layers `conv_dims` (ReLU, dropout)   [per particle]
                     -> particles sorted by decreasing pT (padding last)
                     -> LSTM (`lstm_units`; run from the softest real particle to the hardest
                        when `reverse=True`, so the hardest particles are read last, like
                        DeepJet's go_backwards=True on pT-sorted lists; bidirectional option)
                     -> final hidden state -> dense `dense_dims` (ReLU, dropout) -> logits.

The pT order comes from `vectors` (E, px, py, pz) when given, otherwise the input order is
taken as is (already pT-ordered). Padded particles are skipped by the LSTM, so the output is
independent of padding and, with `vectors`, of the input order.
"""
from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from hepjax.nn.layers import Dense
from hepjax.nn.recurrent import RNN, Bidirectional, GRUCell, LSTMCell
from hepjax.physics import pt

Array = jax.Array

__all__ = ["DeepJetTagger", "build", "default_config", "pt_order"]


def pt_order(vectors: Array, mask: Array) -> Array:
    """Indices (B, N) sorting each jet's particles by decreasing pT, padded particles last
    (stable: ties keep their input order)."""
    key = jnp.where(mask, -pt(vectors), jnp.inf)
    return jnp.argsort(key, axis=-1, stable=True)


def _dropout(rate: float, rngs: nnx.Rngs):
    if rate == 0.0:
        return None
    if "dropout" not in rngs:
        raise ValueError("DeepJetTagger: dropout > 0 needs a 'dropout' stream; build with "
                         "nnx.Rngs(params=seed, dropout=seed2)")
    return nnx.Dropout(rate, rngs=rngs)


class DeepJetTagger(nnx.Module):
    """Call: model(features (B, N, F), mask (B, N) bool = None, vectors (B, N, 4) = None)
    -> logits (B, num_outputs)."""

    def __init__(self, input_dim: int, num_outputs: int, *,
                 conv_dims: Sequence[int] = (64, 32, 32, 8), lstm_units: int = 150,
                 dense_dims: Sequence[int] = (200, 100, 100), dropout: float = 0.1,
                 cell: str = "lstm", bidirectional: bool = False, reverse: bool = True,
                 rngs: nnx.Rngs):
        self.input_dim = input_dim
        convs, prev = [], input_dim
        for d in conv_dims:
            convs.append(Dense(prev, d, rngs=rngs))
            prev = d
        self.convs = nnx.List(convs)
        self.conv_drops = nnx.List([_dropout(dropout, rngs) for _ in conv_dims])
        cells = {"lstm": LSTMCell, "gru": GRUCell}
        if cell not in cells:
            raise ValueError(f"DeepJetTagger: cell={cell!r}; valid: 'lstm', 'gru'")
        if bidirectional:
            self.rnn = Bidirectional(cells[cell](prev, lstm_units, rngs=rngs),
                                     cells[cell](prev, lstm_units, rngs=rngs))
            prev = 2 * lstm_units
        else:
            self.rnn = RNN(cells[cell](prev, lstm_units, rngs=rngs), reverse=reverse)
            prev = lstm_units
        dense = []
        for d in dense_dims:
            dense.append(Dense(prev, d, rngs=rngs))
            prev = d
        self.dense = nnx.List(dense)
        self.dense_drops = nnx.List([_dropout(dropout, rngs) for _ in dense_dims])
        self.out = Dense(prev, num_outputs, rngs=rngs)

    def __call__(self, features: Array, mask: Array | None = None,
                 vectors: Array | None = None) -> Array:
        if features.ndim != 3 or features.shape[-1] != self.input_dim:
            raise ValueError(f"DeepJetTagger: features must be (B, N, {self.input_dim}), got "
                             f"{tuple(features.shape)}")
        if mask is None:
            mask = jnp.ones(features.shape[:2], bool)
        mask = jnp.asarray(mask, bool)
        h = jnp.where(mask[..., None], features, 0.0)
        for conv, drop in zip(self.convs, self.conv_drops):
            h = jax.nn.relu(conv(h))
            h = h if drop is None else drop(h)
        if vectors is not None:
            order = pt_order(vectors, mask)
            h = jnp.take_along_axis(h, order[..., None], axis=1)
            mask = jnp.take_along_axis(mask, order, axis=1)
        _, last = self.rnn(h, mask)
        h = last
        for dense, drop in zip(self.dense, self.dense_drops):
            h = jax.nn.relu(dense(h))
            h = h if drop is None else drop(h)
        return self.out(h)


def default_config():
    import ml_collections
    return ml_collections.ConfigDict(dict(
        name="deepjet", conv_dims=(64, 32, 32, 8), lstm_units=150, dense_dims=(200, 100, 100),
        dropout=0.1, cell="lstm", bidirectional=False, reverse=True))


_FIELDS = ("conv_dims", "lstm_units", "dense_dims", "dropout", "cell", "bidirectional",
           "reverse")


def build(cfg, input_shape, num_outputs: int, rngs: nnx.Rngs) -> DeepJetTagger:
    """DeepJetTagger from cfg (fields of `default_config`, missing ones take its values),
    input_shape = (N, F)."""
    if len(input_shape) != 2:
        raise ValueError(f"model 'deepjet' takes particle sequences (N, F), got per-example "
                         f"shape {tuple(input_shape)}")
    defaults = default_config()
    kw = {f: cfg.get(f, defaults[f]) for f in _FIELDS}
    kw["conv_dims"] = tuple(int(d) for d in kw["conv_dims"])
    kw["dense_dims"] = tuple(int(d) for d in kw["dense_dims"])
    kw["lstm_units"], kw["dropout"] = int(kw["lstm_units"]), float(kw["dropout"])
    return DeepJetTagger(int(input_shape[1]), int(num_outputs), rngs=rngs, **kw)
