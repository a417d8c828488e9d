"""hepjax.kernels.buffers: materialize and materialize_cotangent are the identity with the
identity as derivative in both forms; the fast forms are fusion boundaries (an XLA
conditional), the references add nothing."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hepjax.kernels.buffers import materialize, materialize_cotangent


@pytest.mark.parametrize("kernel", [materialize, materialize_cotangent],
                         ids=["materialize", "materialize_cotangent"])
@pytest.mark.parametrize("form", ["fast", "reference"])
def test_identity_with_identity_gradient(kernel, form):
    f = getattr(kernel, form)
    x = jnp.asarray(np.random.default_rng(2).normal(size=(3, 4)), jnp.float32)
    x = x.at[0, 0].set(jnp.nan)  # the fast predicate's element: still the same value, NaN included
    np.testing.assert_array_equal(jax.jit(f)(x), x)
    weights = jnp.arange(12.0).reshape(3, 4)
    g = jax.grad(lambda t: jnp.sum(f(t) * weights))(jnp.ones((3, 4)))
    np.testing.assert_array_equal(g, weights)


def test_fast_forms_are_fusion_boundaries_and_references_are_not():
    x = jnp.ones((3, 4))

    def hlo(fn):
        return jax.jit(fn).lower(x).compile().as_text()
    assert "conditional" in hlo(lambda t: materialize.fast(t * 2.0) + 1.0)
    assert "conditional" not in hlo(lambda t: materialize.reference(t * 2.0) + 1.0)
    # materialize_cotangent: the boundary is in the backward pass
    backward = jax.grad(lambda t: jnp.sum(jnp.sin(materialize_cotangent.fast(t * 2.0))))
    assert "conditional" in hlo(backward)
