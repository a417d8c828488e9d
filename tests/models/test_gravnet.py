"""gravnet: permutation and padding invariance, and a short training run that lowers the loss."""
from hepjax.models import gravnet
from .toyjets import check_set_invariances, check_training_lowers_the_loss


def small_cfg():
    cfg = gravnet.default_config()
    cfg.num_blocks, cfg.dense_width, cfg.out_dims, cfg.k, cfg.head_width = 2, 8, 8, 4, 8
    cfg.space_dims, cfg.propagate_dims = 2, 4
    return cfg


def test_invariances():
    check_set_invariances(lambda shape, n, rngs: gravnet.build(small_cfg(), shape, n, rngs))


def test_training_lowers_the_loss():
    check_training_lowers_the_loss(lambda shape, n, rngs: gravnet.build(small_cfg(), shape, n, rngs))
