"""LoLa / CoLa against numpy closed forms; beam-rotation, permutation and padding invariance;
a training smoke test on toy 3-prong vs 1-prong jets."""
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from hepjax.models import lola
from hepjax.physics import kinematics, lorentz
from hepjax.train import count_params
from .toyjets import four_vector_batch, four_vector_jets as toy_jets, train_losses

G = np.diag([1.0, -1.0, -1.0, -1.0])


@nnx.jit
def _call(model, features, mask, vectors):
    return model(features, mask, vectors)


def _model(n=8, x64=False, **overrides):
    cfg = lola.default_config()
    cfg.num_combinations, cfg.hidden, cfg.num_distance_heads = 4, (16,), 2
    cfg.param_dtype = "float64" if x64 else "float32"
    for key, value in overrides.items():
        cfg[key] = value
    model = lola.build(cfg, (n, 1), 1, nnx.Rngs(params=0, dropout=1))
    model.eval()
    return model


def test_cola_and_lola_match_numpy():
    rng = np.random.default_rng(0)
    with jax.enable_x64(True):
        k = toy_jets(rng, 2, 5, [1, 0]) / 100.0
        cola = lola.CoLa(5, 3, param_dtype=jnp.float64, rngs=nnx.Rngs(0))
        kt = np.asarray(cola(jnp.asarray(k)))
        c = np.asarray(cola.weights[...])
        np.testing.assert_allclose(kt[:, :5], k, rtol=1e-14)
        np.testing.assert_allclose(kt[:, 5:], np.einsum("bnc,nm->bmc", k, c), rtol=1e-12)
        layer = lola.LoLa(8, 2, 3, param_dtype=jnp.float64, rngs=nnx.Rngs(1))
        out = np.asarray(layer(jnp.asarray(kt)))
        we, wd = np.asarray(layer.w_energy[...]), np.asarray(layer.w_distance[...])
        assert out.shape == (2, 8, 2 + 2 + 3)
        for b in range(2):
            for j in range(8):
                ref = [kt[b, j] @ G @ kt[b, j], np.hypot(kt[b, j, 1], kt[b, j, 2])]
                ref += [sum(we[h, j, m] * kt[b, m, 0] for m in range(8)) for h in range(2)]
                d2 = [(kt[b, j] - kt[b, m]) @ G @ (kt[b, j] - kt[b, m]) for m in range(8)]
                ref += [sum(wd[h, j, m] * d2[m] for m in range(8)) for h in range(3)]
                np.testing.assert_allclose(out[b, j], ref, rtol=1e-10, atol=1e-12)


def test_sort_by_pt_puts_padding_last():
    vectors = np.array([[[10, 1, 0, 0], [10, 5, 0, 0], [99, 99, 99, 0], [10, 0, 3, 0]]], np.float32)
    mask = np.array([[True, True, False, True]])
    k, m = lola.sort_by_pt(jnp.asarray(vectors), jnp.asarray(mask))
    np.testing.assert_array_equal(np.asarray(kinematics.pt(k))[0], [5, 3, 1, 0])
    np.testing.assert_array_equal(m[0], [True, True, True, False])
    np.testing.assert_array_equal(k[0, 3], 0.0)


def test_beam_rotation_permutation_and_padding_invariance():
    rng = np.random.default_rng(1)
    p = toy_jets(rng, 3, 6, [1, 0, 1])
    mask = np.ones((3, 8), bool)
    mask[:, 6:] = False
    vectors = np.concatenate([p, np.zeros((3, 2, 4))], 1)
    with jax.enable_x64(True):
        model, f = _model(x64=True), np.zeros((3, 8, 1))
        ref = np.asarray(_call(model, f, mask, jnp.asarray(vectors)))
        rot = np.asarray(lorentz.rotation_matrix_z(jnp.asarray(rng.uniform(-3, 3, 3))))
        rotated = np.einsum("bij,bnj->bni", rot, vectors)
        np.testing.assert_allclose(_call(model, f, mask, jnp.asarray(rotated)), ref, rtol=1e-9)
        order = rng.permutation(8)
        garbage = vectors.copy()
        garbage[:, 6:] = np.nan
        out = _call(model, f, mask[:, order], jnp.asarray(garbage[:, order]))
        np.testing.assert_allclose(out, ref, rtol=1e-12)
        # a boost along the beam changes the energies: LoLa is not boost invariant
        boost = np.asarray(lorentz.boost_matrix_z(jnp.full((3,), 0.5)))
        boosted = np.einsum("bij,bnj->bni", boost, vectors)
        assert np.max(np.abs(np.asarray(_call(model, f, mask, jnp.asarray(boosted))) - ref)) > 1e-6


def test_parameter_count_paper_size():
    # N = 40 constituents, M = 15 combinations (the paper's set-up): CoLa 40*15, LoLa 2 * 55^2,
    # classifier 55*4 -> 100 -> 50 -> 1.
    model = nnx.eval_shape(lambda: lola.build(lola.default_config(), (40, 1), 1,
                                              nnx.Rngs(params=0, dropout=1)))
    expected = 40 * 15 + 2 * 55 * 55 + (220 * 100 + 100) + (100 * 50 + 50) + (50 + 1)
    assert count_params(nnx.state(model, nnx.Param)) == expected


def test_trains_on_toy_jets():
    n = 12
    batch = four_vector_batch(64, n, 1, short=9)
    cfg = lola.default_config()
    cfg.num_combinations, cfg.hidden = 4, (32, 16)
    losses = train_losses(lambda r: lola.build(cfg, (n, 1), 1, r), batch, 3e-3, 40)
    assert np.all(np.isfinite(losses))
    assert np.mean(losses[-5:]) < 0.7 * np.mean(losses[:3])
