"""A small encoder-decoder transformer on token sequences (Vaswani et al., "Attention is all you
need", arXiv:1706.03762), as introduced in J. Kieseler's "Machine learning" lectures, §2.2
(European School of High-Energy Physics 2023, doi:10.23730/CYRSP-2025-009.189).

Built from the blocks of ``hepjax.nn.attention``; a teaching model, not in the tagger registry.
"""
from __future__ import annotations

import jax
from flax import nnx

from hepjax.nn.attention import (TransformerDecoderBlock, TransformerEncoderBlock, greedy_decode,
                                 sinusoidal_position_embedding)
from hepjax.nn.layers import Dense, LayerNorm

Array = jax.Array

__all__ = ["Seq2SeqTransformer"]


class Seq2SeqTransformer(nnx.Module):
    """Token embeddings plus sinusoidal positions, `num_layers` pre-norm encoder and decoder
    blocks, a final LayerNorm and a linear read-out to the vocabulary.

    Call: model(source (B, S) int, target_in (B, T) int, source_mask=None (B, S) bool)
    -> logits (B, T, vocab_size), causal in the target. Decode with
    `model.generate(source, max_len, start_token=..., end_token=...)` (greedy).
    """

    def __init__(self, vocab_size: int, embed_dim: int = 32, num_heads: int = 4,
                 num_layers: int = 1, *, mlp_ratio: int = 2, dropout: float = 0.0,
                 max_len: int = 64, rngs: nnx.Rngs):
        self.vocab_size, self.embed_dim, self.max_len = vocab_size, embed_dim, max_len
        self.embed = nnx.Param(jax.random.normal(rngs.params(), (vocab_size, embed_dim)))
        kw = dict(mlp_ratio=mlp_ratio, dropout=dropout, attn_dropout=dropout, rngs=rngs)
        self.encoder = nnx.List([TransformerEncoderBlock(embed_dim, num_heads, **kw)
                                 for _ in range(num_layers)])
        self.decoder = nnx.List([TransformerDecoderBlock(embed_dim, num_heads, **kw)
                                 for _ in range(num_layers)])
        self.enc_norm = LayerNorm(embed_dim)
        self.dec_norm = LayerNorm(embed_dim)
        self.head = Dense(embed_dim, vocab_size, rngs=rngs)

    def _embed(self, tokens):
        pos = sinusoidal_position_embedding(tokens.shape[-1], self.embed_dim)
        return self.embed[...][tokens] + pos

    def encode(self, source: Array, source_mask: Array | None = None) -> Array:
        h = self._embed(source)
        for block in self.encoder:
            h = block(h, source_mask)
        return self.enc_norm(h)

    def decode(self, memory: Array, target_in: Array, source_mask: Array | None = None) -> Array:
        h = self._embed(target_in)
        for block in self.decoder:
            h = block(h, memory, memory_mask=source_mask)
        return self.head(self.dec_norm(h))

    def __call__(self, source: Array, target_in: Array,
                 source_mask: Array | None = None) -> Array:
        return self.decode(self.encode(source, source_mask), target_in, source_mask)

    def generate(self, source: Array, max_len: int, *, start_token: int, end_token: int,
                 source_mask: Array | None = None, pad_token: int = 0):
        """Greedy decoding: (tokens (B, max_len), lengths (B,)); see `greedy_decode`."""
        memory = self.encode(source, source_mask)
        return greedy_decode(lambda t: self.decode(memory, t, source_mask), source.shape[0],
                             max_len, start_token=start_token, end_token=end_token,
                             pad_token=pad_token)
