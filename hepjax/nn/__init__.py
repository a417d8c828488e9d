"""Neural-network building blocks: activations, initialisers and small Flax NNX modules."""
from hepjax.nn import activations, initializers, layers
from hepjax.nn.activations import (
    ACTIVATIONS, elu, gelu, gelu_tanh, get_activation, identity, leaky_relu, log_softmax, maxout,
    relu, sigmoid, silu, softmax, softplus, tanh,
)
from hepjax.nn.initializers import (
    compute_fans, glorot_normal, glorot_uniform, he_normal, he_uniform, normal, variance_scaling,
)
from hepjax.nn.layers import MLP, BatchNorm, Dense, Dropout, LayerNorm, ResidualBlock, one_hot

__all__ = [
    "activations", "initializers", "layers",
    "ACTIVATIONS", "elu", "gelu", "gelu_tanh", "get_activation", "identity", "leaky_relu",
    "log_softmax", "maxout", "relu", "sigmoid", "silu", "softmax", "softplus", "tanh",
    "compute_fans", "glorot_normal", "glorot_uniform", "he_normal", "he_uniform", "normal",
    "variance_scaling",
    "MLP", "BatchNorm", "Dense", "Dropout", "LayerNorm", "ResidualBlock", "one_hot",
]
