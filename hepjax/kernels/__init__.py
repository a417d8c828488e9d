"""Hand-written fast paths behind one boundary, each beside the plain reference it is tested
against (values and gradients, float64: tests/kernels).

Layers and models call these functions and read as the maths; which form runs is chosen in one
place, `hepjax.kernels.select`: per backend (the fast forms were written for XLA:CPU and are the
default there only), with the override HEPJAX_KERNELS=auto|fast|reference, `set_mode` and the
context manager `use`.

    kernel (select key)        function                 reference
    attention                  bmm                      a @ b
                               softmax_matmul           dropout(softmax(logits, masked)) @ v
    matmul                     dense_matmul, edge_matmul   x @ w
    dropout                    dropout                  Bernoulli mask from jax.random
    batch_norm_gelu            batch_norm_gelu          masked BatchNorm, then exact GELU
    rowwise                    bn_gelu_mlp(_eval)       layer by layer batch_norm_gelu
    pairs                      symmetric_pairs,         the lower triangle by index, and the
                               unpack_symmetric_pairs   mirrored gather back
    materialize                materialize,             the identity
                               materialize_cotangent
    spline_bins                select_bins              a where chain over the bins (autodiff)

Kernels build on `hepjax.nn.activations` only; `hepjax.nn`'s layers use them through
`from hepjax import kernels` (attribute access at call time, whichever package is imported
first).
"""
from hepjax.kernels import select
from hepjax.kernels.attention import bmm, softmax_matmul
from hepjax.kernels.batchnorm import batch_norm_gelu, masked_moments
from hepjax.kernels.buffers import materialize, materialize_cotangent
from hepjax.kernels.dropout import counter_hash_bits, dropout
from hepjax.kernels.matmul import dense_matmul, edge_matmul
from hepjax.kernels.pairs import rfp_pack, rfp_unpack, symmetric_pairs, unpack_symmetric_pairs
from hepjax.kernels.rowwise import bn_gelu_mlp, bn_gelu_mlp_eval, tile_shape
from hepjax.kernels.select import FAST_BACKENDS, mode, set_mode, use, uses_fast
from hepjax.kernels.splines import select_bins

__all__ = [
    "select", "FAST_BACKENDS", "mode", "set_mode", "use", "uses_fast",
    "bmm", "softmax_matmul", "dense_matmul", "edge_matmul", "dropout", "counter_hash_bits",
    "batch_norm_gelu", "masked_moments", "bn_gelu_mlp", "bn_gelu_mlp_eval", "tile_shape",
    "symmetric_pairs", "unpack_symmetric_pairs", "rfp_pack", "rfp_unpack", "materialize",
    "materialize_cotangent", "select_bins",
]
