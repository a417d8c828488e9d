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

`DeepJetFull` is DeepJet with its four inputs (charged candidates, neutral candidates, secondary
vertices, globals), as in the paper:

  cpf (B, Nc, Fc) -> 1x1 dense `cpf_conv` (64, 32, 32, 8) -> LSTM `cpf_lstm` (150) -> h_c
  npf (B, Nn, Fn) -> 1x1 dense `npf_conv` (32, 16, 4)     -> LSTM `npf_lstm` (50)  -> h_n
  sv  (B, Ns, Fs) -> 1x1 dense `sv_conv`  (64, 32, 32, 8) -> LSTM `sv_lstm`  (50)  -> h_s
  concat(h_c, h_n, h_s, globals (B, G)) -> dense `dense_dims` (200, 100 x 7) -> outputs

Each collection is read in its given order (the reader's ordering) with its mask: padded
entries are skipped by the recurrence, so the outputs do not depend on padding; a jet with no
entries in a collection (no SV, say) gives that branch the LSTM's initial state (zeros). The
paper's input batch normalisation is left to the data (standardised inputs,
`hepjax.data.deepjet_ntuple.standardise`). The head is plain: `num_outputs` logits for
classification (4: b, c, uds, g), or a regression output (1: log correction; 2: mean and
log-variance of a Gaussian).
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

__all__ = ["DeepJetTagger", "DeepJetFull", "build", "build_full", "default_config",
           "default_full_config", "pt_order"]


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


def _per_entry_dense(input_dim, conv_dims, dropout, rngs):
    """A stack of dense layers, each with its dropout: DeepJet's 1x1 convolutions (applied to
    every entry) and its dense head; returns (layers, dropouts, output width)."""
    convs, prev = [], input_dim
    for d in conv_dims:
        convs.append(Dense(prev, d, rngs=rngs))
        prev = d
    return nnx.List(convs), nnx.List([_dropout(dropout, rngs) for _ in conv_dims]), prev


def _check_cell(cell, who):
    if cell not in ("lstm", "gru"):
        raise ValueError(f"{who}: cell={cell!r}; valid: 'lstm', 'gru'")


class DeepJetTagger(nnx.Module):
    """Call: model(features (B, N, F), mask (B, N) bool = None, vectors (B, N, 4) = None)
    -> logits (B, num_outputs)."""

    def __init__(self, input_dim: int, num_outputs: int, *,
                 conv_dims: Sequence[int] = (64, 32, 32, 8), lstm_units: int = 150,
                 dense_dims: Sequence[int] = (200, 100, 100), dropout: float = 0.1,
                 cell: str = "lstm", bidirectional: bool = False, reverse: bool = True,
                 rngs: nnx.Rngs):
        self.input_dim = input_dim
        self.convs, self.conv_drops, prev = _per_entry_dense(input_dim, conv_dims, dropout, rngs)
        cells = {"lstm": LSTMCell, "gru": GRUCell}
        _check_cell(cell, "DeepJetTagger")
        if bidirectional:
            self.rnn = Bidirectional(cells[cell](prev, lstm_units, rngs=rngs),
                                     cells[cell](prev, lstm_units, rngs=rngs))
            prev = 2 * lstm_units
        else:
            self.rnn = RNN(cells[cell](prev, lstm_units, rngs=rngs), reverse=reverse)
            prev = lstm_units
        self.dense, self.dense_drops, prev = _per_entry_dense(prev, dense_dims, dropout, rngs)
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


class _Collection(nnx.Module):
    """One DeepJet branch: per-entry dense layers, then a recurrent layer over the entries."""

    def __init__(self, input_dim, conv_dims, units, dropout, cell, reverse, rngs):
        self.input_dim = input_dim
        self.convs, self.drops, prev = _per_entry_dense(input_dim, conv_dims, dropout, rngs)
        cells = {"lstm": LSTMCell, "gru": GRUCell}
        _check_cell(cell, "DeepJetFull")
        self.rnn = RNN(cells[cell](prev, units, rngs=rngs), reverse=reverse)
        self.units = units

    def __call__(self, x, mask, name):
        if x.ndim != 3 or x.shape[-1] != self.input_dim:
            raise ValueError(f"DeepJetFull: {name} must be (B, N, {self.input_dim}), got "
                             f"{tuple(x.shape)}")
        mask = jnp.ones(x.shape[:2], bool) if mask is None else jnp.asarray(mask, bool)
        h = jnp.where(mask[..., None], x, 0.0)
        for conv, drop in zip(self.convs, self.drops):
            h = jax.nn.relu(conv(h))
            h = h if drop is None else drop(h)
        return self.rnn(h, mask)[1]


class DeepJetFull(nnx.Module):
    """DeepJet with charged, neutral, secondary-vertex and global inputs.

    Call: model(cpf (B, Nc, Fc), npf (B, Nn, Fn), sv (B, Ns, Fs), globals (B, G),
    cpf_mask=None, npf_mask=None, sv_mask=None) -> (B, num_outputs)."""

    def __init__(self, cpf_dim: int, npf_dim: int, sv_dim: int, global_dim: int,
                 num_outputs: int, *, cpf_conv: Sequence[int] = (64, 32, 32, 8),
                 npf_conv: Sequence[int] = (32, 16, 4), sv_conv: Sequence[int] = (64, 32, 32, 8),
                 cpf_lstm: int = 150, npf_lstm: int = 50, sv_lstm: int = 50,
                 dense_dims: Sequence[int] = (200,) + (100,) * 7, dropout: float = 0.1,
                 cell: str = "lstm", reverse: bool = True, rngs: nnx.Rngs):
        self.global_dim = global_dim
        self.cpf = _Collection(cpf_dim, cpf_conv, cpf_lstm, dropout, cell, reverse, rngs)
        self.npf = _Collection(npf_dim, npf_conv, npf_lstm, dropout, cell, reverse, rngs)
        self.sv = _Collection(sv_dim, sv_conv, sv_lstm, dropout, cell, reverse, rngs)
        self.dense, self.dense_drops, prev = _per_entry_dense(
            cpf_lstm + npf_lstm + sv_lstm + global_dim, dense_dims, dropout, rngs)
        self.out = Dense(prev, num_outputs, rngs=rngs)

    def __call__(self, cpf: Array, npf: Array, sv: Array, globals: Array,
                 cpf_mask: Array | None = None, npf_mask: Array | None = None,
                 sv_mask: Array | None = None) -> Array:
        if globals.ndim != 2 or globals.shape[-1] != self.global_dim:
            raise ValueError(f"DeepJetFull: globals must be (B, {self.global_dim}), got "
                             f"{tuple(globals.shape)}")
        for name, x, branch in (("cpf", cpf, self.cpf), ("npf", npf, self.npf),
                                ("sv", sv, self.sv)):
            if x.ndim != 3 or x.shape[-1] != branch.input_dim or x.shape[0] != globals.shape[0]:
                raise ValueError(f"DeepJetFull: {name} must be (B={globals.shape[0]}, N, "
                                 f"{branch.input_dim}), got {tuple(x.shape)}")
        h = jnp.concatenate([self.cpf(cpf, cpf_mask, "cpf"), self.npf(npf, npf_mask, "npf"),
                             self.sv(sv, sv_mask, "sv"), globals], -1)
        for dense, drop in zip(self.dense, self.dense_drops):
            h = jax.nn.relu(dense(h))
            h = h if drop is None else drop(h)
        return self.out(h)


def default_full_config():
    """DeepJetFull's paper sizes (Bols et al. 2020)."""
    import ml_collections
    return ml_collections.ConfigDict(dict(
        name="deepjet_full", cpf_conv=(64, 32, 32, 8), npf_conv=(32, 16, 4),
        sv_conv=(64, 32, 32, 8), cpf_lstm=150, npf_lstm=50, sv_lstm=50,
        dense_dims=(200,) + (100,) * 7, dropout=0.1, cell="lstm", reverse=True))


def build_full(cfg, dims, num_outputs: int, rngs: nnx.Rngs) -> DeepJetFull:
    """DeepJetFull from cfg (fields of `default_full_config`; missing ones take its values) and
    dims = (Fc, Fn, Fs, G), the per-entry feature counts of the four inputs."""
    if len(dims) != 4:
        raise ValueError(f"DeepJetFull takes four inputs (cpf, npf, sv, globals) feature "
                         f"counts, got {tuple(dims)}")
    defaults = default_full_config()
    kw = {f: cfg.get(f, defaults[f]) for f in defaults if f != "name"}
    for f in ("cpf_conv", "npf_conv", "sv_conv", "dense_dims"):
        kw[f] = tuple(int(d) for d in kw[f])
    for f in ("cpf_lstm", "npf_lstm", "sv_lstm"):
        kw[f] = int(kw[f])
    kw["dropout"] = float(kw["dropout"])
    return DeepJetFull(*(int(d) for d in dims), int(num_outputs), rngs=rngs, **kw)


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
