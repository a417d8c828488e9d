"""The encoder-decoder transformer learns a toy task (sequence reversal) and decodes it greedily."""
import numpy as np
import optax
from flax import nnx

from hepjax.models.seq2seq import Seq2SeqTransformer


def test_greedy_decoding_reverses_sequences_after_training():
    """Learn to reverse sequences of 4 digits (tokens 3..8; 0 pad, 1 end, 2 start), then decode
    unseen sequences greedily: they must come out exactly reversed, followed by the end token."""
    pad, end, start, length, vocab = 0, 1, 2, 4, 9
    rng = np.random.default_rng(0)

    def batch(n):
        src = rng.integers(3, vocab, size=(n, length))
        tgt = np.concatenate([src[:, ::-1], np.full((n, 1), end)], 1)
        tgt_in = np.concatenate([np.full((n, 1), start), tgt[:, :-1]], 1)
        return src.astype(np.int32), tgt_in.astype(np.int32), tgt.astype(np.int32)

    model = Seq2SeqTransformer(vocab, 32, 4, 1, mlp_ratio=2, rngs=nnx.Rngs(0))
    opt = nnx.Optimizer(model, optax.adam(3e-3), wrt=nnx.Param)

    @nnx.jit
    def step(model, opt, src, tgt_in, tgt):
        def loss_fn(m):
            logits = m(src, tgt_in)
            return optax.softmax_cross_entropy_with_integer_labels(logits, tgt).mean()
        loss, grads = nnx.value_and_grad(loss_fn)(model)
        opt.update(model, grads)
        return loss

    for _ in range(600):
        loss = step(model, opt, *batch(64))
    assert float(loss) < 0.05
    src, _, tgt = batch(200)
    toks, lengths = nnx.jit(lambda m, s: m.generate(s, length + 2, start_token=start,
                                                    end_token=end))(model, src)
    toks = np.asarray(toks)
    np.testing.assert_array_equal(toks[:, :length + 1], tgt)
    np.testing.assert_array_equal(toks[:, length + 1], pad)
    np.testing.assert_array_equal(np.asarray(lengths), length + 1)
