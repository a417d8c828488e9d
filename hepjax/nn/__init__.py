"""Neural-network building blocks: activations, initialisers and small Flax NNX modules."""
from hepjax.nn import activations, initializers, layers
from hepjax.nn.activations import (
    ACTIVATIONS, elu, gelu, gelu_tanh, get_activation, identity, leaky_relu, log_softmax, maxout,
    relu, sigmoid, silu, softmax, softplus, tanh,
)
from hepjax.nn.initializers import (
    compute_fans, fan_in_uniform_bias, glorot_normal, glorot_uniform, he_normal, he_uniform, normal,
    torch_uniform, variance_scaling,
)
from hepjax.nn.layers import MLP, BatchNorm, Dense, Dropout, LayerNorm, ResidualBlock, one_hot

__all__ = [
    "activations", "initializers", "layers",
    "ACTIVATIONS", "elu", "gelu", "gelu_tanh", "get_activation", "identity", "leaky_relu",
    "log_softmax", "maxout", "relu", "sigmoid", "silu", "softmax", "softplus", "tanh",
    "compute_fans", "glorot_normal", "glorot_uniform", "he_normal", "he_uniform", "normal",
    "torch_uniform", "fan_in_uniform_bias", "variance_scaling",
    "MLP", "BatchNorm", "Dense", "Dropout", "LayerNorm", "ResidualBlock", "one_hot",
]

# attention, recurrent layers and convolutions
from hepjax.nn import attention, conv, recurrent  # noqa: E402
from hepjax.nn.attention import (  # noqa: E402
    LearnedPositionEmbedding, MultiHeadAttention, PatchEmbedding,
    TransformerDecoderBlock, TransformerEncoderBlock, causal_mask, combine_masks,
    dot_product_attention, greedy_decode, masked_logit, padding_mask,
    sinusoidal_position_embedding,
)
from hepjax.nn.conv import Conv2D, avg_pool, global_avg_pool, max_pool  # noqa: E402
from hepjax.nn.recurrent import RNN, Bidirectional, GRUCell, LSTMCell, SimpleRNNCell  # noqa: E402

__all__ += [
    "attention", "conv", "recurrent",
    "LearnedPositionEmbedding", "MultiHeadAttention", "PatchEmbedding",
    "TransformerDecoderBlock", "TransformerEncoderBlock", "causal_mask", "combine_masks",
    "dot_product_attention", "greedy_decode", "masked_logit", "padding_mask",
    "sinusoidal_position_embedding", "Conv2D", "avg_pool", "global_avg_pool", "max_pool",
    "RNN", "Bidirectional", "GRUCell", "LSTMCell", "SimpleRNNCell",
]
