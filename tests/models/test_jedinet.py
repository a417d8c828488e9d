"""jedinet: permutation and padding invariance, and a short training run that lowers the loss."""
import jax
from flax import nnx

from hepjax.models import jedinet
from .toyjets import check_set_invariances, check_training_lowers_the_loss


def small_cfg():
    cfg = jedinet.default_config()
    cfg.hidden, cfg.edge_features, cfg.node_features = 16, 4, 4
    return cfg


def test_parameter_count_matches_reference_formula():
    m = nnx.eval_shape(lambda: jedinet.build(None, (30, 16), 5, nnx.Rngs(0)))
    assert sum(x.size for x in jax.tree.leaves(nnx.state(m, nnx.Param))) == 7_873


def test_invariances():
    check_set_invariances(lambda shape, n, rngs: jedinet.build(small_cfg(), shape, n, rngs))


def test_training_lowers_the_loss():
    check_training_lowers_the_loss(lambda shape, n, rngs: jedinet.build(small_cfg(), shape, n, rngs))
