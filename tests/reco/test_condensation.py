"""Object condensation (Kieseler, EPJC 80 (2020) 886): the loss against a plain-loop float64
transcription of the paper's equations (values and finite-difference gradients), its invariances,
padding, empty events and bad input; the inference against a plain numpy loop."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from hepjax.reco import condensation as oc
from hepjax.reco import (batched_condense, batched_object_condensation_loss, condense,
                         energy_loss, object_condensation_loss, position_loss, type_loss)

CLIP = 1.0 - 1e-4


# ---------------------------------------------------------------------------------------------
# Independent reference: the paper's equations, written as loops over hits and objects.
# ---------------------------------------------------------------------------------------------


def ref_loss(beta, x, oid, mask, payload, *, q_min=0.1, s_b=1.0, s_c=1.0,
             beta_term="condensation_point", clip=CLIP):
    """Returns dict of the loss terms in float64 Python arithmetic."""
    real = [i for i in range(len(beta)) if mask[i]]
    n = len(real)

    def atanh2(i):
        return math.atanh(min(max(float(beta[i]), 0.0), clip)) ** 2

    def q(i):
        return atanh2(i) + q_min

    objects = []
    for i in real:
        if oid[i] >= 0 and oid[i] not in objects:
            objects.append(int(oid[i]))
    alpha = {}
    for k in objects:
        best = None
        for i in real:
            if oid[i] == k and (best is None or beta[i] > beta[best]):
                best = i
        alpha[k] = best
    att = rep = 0.0
    for i in real:
        for k in objects:
            a = alpha[k]
            d2 = sum((float(x[i][c]) - float(x[a][c])) ** 2 for c in range(len(x[i])))
            if oid[i] == k:
                att += q(i) * d2 * q(a)
            else:
                rep += q(i) * max(0.0, 1.0 - math.sqrt(d2)) * q(a)
    att = att / n if n else 0.0
    rep = rep / n if n else 0.0
    b_obj = 0.0
    for k in objects:
        if beta_term == "condensation_point":
            b_obj += 1.0 - beta[alpha[k]]
        else:
            members = [i for i in real if oid[i] == k]
            b_obj += 1.0 - sum(beta[i] for i in members) / len(members)
    b_obj = b_obj / len(objects) if objects else 0.0
    noise = [i for i in real if oid[i] < 0]
    b_noise = sum(beta[i] for i in noise) / len(noise) if noise else 0.0
    xi_sum = sum(atanh2(i) for i in real if oid[i] >= 0)
    lp = 0.0
    if payload is not None and xi_sum > 0:
        lp = sum(atanh2(i) * payload[i] for i in real if oid[i] >= 0) / xi_sum
    beta_total = b_obj + s_b * b_noise
    total = lp + s_c * (beta_total + att + rep)
    return dict(total=total, attractive=att, repulsive=rep, potential=att + rep, beta=beta_total,
                beta_objects=b_obj, beta_noise=b_noise, payload=lp,
                num_objects=len(objects), num_noise=len(noise))


def random_event(seed, n=24, n_pad=6, dim=3, K=6, present=(0, 2, 3), noise_frac=0.25, spread=0.7):
    """Hits of a few objects (ids with gaps inside a budget K), noise, and padding with garbage."""
    rng = np.random.default_rng(seed)
    oid = rng.choice(np.asarray(present), size=n)
    oid[rng.random(n) < noise_frac] = -1
    centres = rng.normal(0, 1.0, (K, dim))
    x = centres[np.maximum(oid, 0)] + rng.normal(0, spread, (n, dim))
    beta = rng.uniform(0.02, 0.97, n)
    payload = rng.exponential(1.0, n)
    mask = np.ones(n + n_pad, bool)
    mask[n:] = False
    # padding: garbage that must not matter
    beta = np.concatenate([beta, np.full(n_pad, np.nan)])
    x = np.concatenate([x, np.full((n_pad, dim), np.inf)])
    oid = np.concatenate([oid, rng.integers(-1, K, n_pad)])
    payload = np.concatenate([payload, np.full(n_pad, np.nan)])
    # shuffle the padding in among the real hits
    perm = rng.permutation(n + n_pad)
    return beta[perm], x[perm], oid[perm], mask[perm], payload[perm]


def assert_away_from_kinks(beta, x, oid, mask, margin=1e-3):
    """The finite-difference check needs the event away from max(0, 1 - d) = 0 and argmax ties."""
    real = np.flatnonzero(mask)
    for k in set(oid[real][oid[real] >= 0].tolist()):
        members = real[oid[real] == k]
        b = np.sort(beta[members])
        if len(b) > 1:
            assert b[-1] - b[-2] > margin, "condensation point nearly tied: pick another seed"
        a = members[np.argmax(beta[members])]
        d = np.linalg.norm(x[real] - x[a], axis=1)
        assert np.all(np.abs(d - 1.0) > margin), "hit near the repulsion edge: pick another seed"


# ---------------------------------------------------------------------------------------------
# Loss values and gradients against the reference (float64)
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("beta_term", ["condensation_point", "mean"])
@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_loss_values_match_reference(seed, beta_term):
    beta, x, oid, mask, payload = random_event(seed)
    kw = dict(q_min=0.3 + 0.1 * seed, s_b=0.5 + seed, s_c=1.5)
    ref = ref_loss(beta, x, oid, mask, payload, beta_term=beta_term, **kw)
    with jax.enable_x64(True):
        out = object_condensation_loss(jnp.asarray(beta), jnp.asarray(x), jnp.asarray(oid),
                                       jnp.asarray(mask), num_objects=6,
                                       payload={"energy": jnp.asarray(payload)},
                                       beta_term=beta_term, **kw)
        assert out.total.dtype == jnp.float64
        for name, want in ref.items():
            got = float(getattr(out, name))
            assert got == pytest.approx(want, rel=1e-10, abs=1e-12), name
        assert float(out.payload_terms["energy"]) == pytest.approx(ref["payload"], rel=1e-10)
        assert ref["attractive"] > 0 and ref["repulsive"] > 0 and ref["payload"] > 0


@pytest.mark.parametrize("beta_term", ["condensation_point", "mean"])
@pytest.mark.parametrize("seed", [10, 11])
def test_loss_gradients_match_finite_differences_of_reference(seed, beta_term):
    beta, x, oid, mask, payload = random_event(seed, n=16, n_pad=4, dim=2)
    assert_away_from_kinks(beta, x, oid, mask)
    real = np.flatnonzero(mask)
    nr, dim = len(real), x.shape[1]
    kw = dict(q_min=0.2, s_b=0.7, s_c=1.3, beta_term=beta_term)

    def unpack(theta):
        b, xx, p = beta.copy(), x.copy(), payload.copy()
        b[real] = theta[:nr]
        xx[real] = theta[nr:nr + nr * dim].reshape(nr, dim)
        p[real] = theta[nr + nr * dim:]
        return b, xx, p

    theta0 = np.concatenate([beta[real], x[real].ravel(), payload[real]])
    h = 1e-6
    fd = np.zeros_like(theta0)
    for t in range(theta0.size):
        up, dn = theta0.copy(), theta0.copy()
        up[t] += h
        dn[t] -= h
        fd[t] = (ref_loss(*_reorder(unpack(up), oid, mask), **kw)["total"]
                 - ref_loss(*_reorder(unpack(dn), oid, mask), **kw)["total"]) / (2 * h)

    with jax.enable_x64(True):
        def f(b, xx, p):
            return object_condensation_loss(b, xx, jnp.asarray(oid), jnp.asarray(mask),
                                             num_objects=6, payload=p, **kw).total
        # padded entries keep their NaN/inf: under jit nothing is value-checked, and padding must
        # still get exactly zero gradient without poisoning the real hits
        gb, gx, gp = jax.jit(jax.grad(f, argnums=(0, 1, 2)))(
            jnp.asarray(beta), jnp.asarray(x), jnp.asarray(payload))
        gb, gx, gp = np.asarray(gb), np.asarray(gx), np.asarray(gp)
    got = np.concatenate([gb[real], gx[real].ravel(), gp[real]])
    np.testing.assert_allclose(got, fd, rtol=1e-6, atol=1e-7)
    assert np.all(gb[~mask] == 0) and np.all(gx[~mask] == 0) and np.all(gp[~mask] == 0)
    assert np.abs(got).max() > 1e-2  # the gradients are not trivially zero


def _reorder(bxp, oid, mask):
    b, xx, p = bxp
    return b, xx, oid, mask, p


# ---------------------------------------------------------------------------------------------
# Invariances, padding, empty events
# ---------------------------------------------------------------------------------------------


def _loss64(beta, x, oid, mask, payload, K=6, **kw):
    return object_condensation_loss(jnp.asarray(beta), jnp.asarray(x), jnp.asarray(oid),
                                    jnp.asarray(mask), num_objects=K, payload=jnp.asarray(payload),
                                    **kw)


def test_condensation_point_ties_go_to_the_lowest_index():
    # Object 0 has two hits with the same (highest) beta; the paper's argmax is then ambiguous,
    # we take the lowest index like the reference. The attractive term tells which was taken.
    beta = np.array([0.3, 0.8, 0.8, 0.5, 0.6])
    x = np.array([[3.0, 0.0], [0.0, 0.0], [1.0, 0.0], [5.0, 5.0], [0.5, 0.2]])
    oid = np.array([0, 0, 0, 1, -1])
    mask = np.ones(5, bool)
    ref = ref_loss(beta, x, oid, mask, None)
    swapped = ref_loss(beta[[0, 2, 1, 3, 4]], x[[0, 2, 1, 3, 4]], oid, mask, None)
    assert ref["attractive"] != pytest.approx(swapped["attractive"])  # the tie matters here
    with jax.enable_x64(True):
        out = object_condensation_loss(jnp.asarray(beta), jnp.asarray(x), jnp.asarray(oid),
                                       num_objects=2)
    assert float(out.attractive) == pytest.approx(ref["attractive"], rel=1e-12)
    assert float(out.repulsive) == pytest.approx(ref["repulsive"], rel=1e-12)


def test_loss_invariant_to_hit_permutation_and_object_relabelling():
    beta, x, oid, mask, payload = random_event(5, n=40, n_pad=10)
    rng = np.random.default_rng(0)
    with jax.enable_x64(True):
        base = _loss64(beta, x, oid, mask, payload)
        perm = rng.permutation(len(beta))
        permuted = _loss64(beta[perm], x[perm], oid[perm], mask[perm], payload[perm])
        relabel = np.array([4, 0, 5, 1, 3, 2])  # a permutation of the budget 0..5
        oid2 = np.where(oid >= 0, relabel[np.maximum(oid, 0)], -1)
        relabelled = _loss64(beta, x, oid2, mask, payload)
        bigger_budget = _loss64(beta, x, oid, mask, payload, K=11)
        for other in (permuted, relabelled, bigger_budget):
            for a, b in zip(jax.tree_util.tree_leaves(base), jax.tree_util.tree_leaves(other)):
                assert float(a) == pytest.approx(float(b), rel=1e-12, abs=1e-14)


def test_padding_changes_neither_loss_nor_gradients():
    beta, x, oid, mask, payload = random_event(7, n=30, n_pad=0)

    def lg(b, xx, o, m, p):
        def f(b, xx, p):
            return object_condensation_loss(b, xx, o, m, num_objects=6, payload=p).total
        return jax.jit(jax.value_and_grad(f, argnums=(0, 1, 2)))(b, xx, p)

    with jax.enable_x64(True):
        v0, g0 = lg(jnp.asarray(beta), jnp.asarray(x), jnp.asarray(oid), jnp.asarray(mask),
                    jnp.asarray(payload))
        pad = 17
        bp = np.concatenate([beta, np.linspace(0.0, 1.0, pad)])  # includes beta = 1 exactly
        xp = np.concatenate([x, np.full((pad, 3), 1e30)])
        op = np.concatenate([oid, np.arange(pad) % 6 - 1])
        mp = np.concatenate([mask, np.zeros(pad, bool)])
        pp = np.concatenate([payload, np.full(pad, 1e30)])
        v1, g1 = lg(jnp.asarray(bp), jnp.asarray(xp), jnp.asarray(op), jnp.asarray(mp),
                    jnp.asarray(pp))
    assert float(v1) == pytest.approx(float(v0), rel=1e-12)
    for a, b in zip(g0, g1):
        np.testing.assert_allclose(np.asarray(b)[:30], np.asarray(a), rtol=1e-12, atol=1e-15)
        assert np.all(np.asarray(b)[30:] == 0)


@pytest.mark.parametrize("case", ["only_noise", "no_real_hits", "no_noise", "zero_length",
                                  "single_hit", "beta_one"])
def test_degenerate_events_are_finite(case):
    n = 0 if case == "zero_length" else 12
    rng = np.random.default_rng(3)
    beta = rng.uniform(0.1, 0.9, n).astype(np.float32)
    x = rng.normal(size=(n, 2)).astype(np.float32)
    oid = rng.integers(0, 3, n)
    mask = np.ones(n, bool)
    if case == "only_noise":
        oid[:] = -1
    elif case == "no_real_hits":
        mask[:] = False
        beta[:] = np.nan
    elif case == "single_hit":
        mask[1:] = False
    elif case == "beta_one":
        beta[:4] = 1.0  # float32 sigmoid saturation; the clip keeps arctanh finite
    payload = jnp.asarray(rng.exponential(size=n).astype(np.float32))

    def f(b, xx, p):
        return object_condensation_loss(b, xx, jnp.asarray(oid), jnp.asarray(mask), num_objects=3,
                                        payload=p)

    out = jax.jit(f)(jnp.asarray(beta), jnp.asarray(x), payload)
    grads = jax.jit(jax.grad(lambda *a: f(*a).total, argnums=(0, 1, 2)))(
        jnp.asarray(beta), jnp.asarray(x), payload)
    for leaf in jax.tree_util.tree_leaves((out, grads)):
        assert np.all(np.isfinite(np.asarray(leaf))), case
    if case in ("no_real_hits", "zero_length"):
        for leaf in jax.tree_util.tree_leaves(out):
            assert float(leaf) == 0.0
    if case == "only_noise":
        assert float(out.num_objects) == 0 and float(out.potential) == 0
        assert float(out.beta_objects) == 0 and float(out.payload) == 0
        assert float(out.beta_noise) == pytest.approx(float(np.mean(beta)), rel=1e-6)
    if case == "single_hit":
        assert float(out.potential) == 0 and float(out.num_objects) == 1
        assert float(out.beta_objects) == pytest.approx(1 - float(beta[0]), rel=1e-6)
    if case == "beta_one":
        assert float(out.total) > 0


def test_hit_on_top_of_another_condensation_point_has_finite_gradient():
    # Hit 2 (object 1) sits exactly on hit 0, the condensation point of object 0: ||x - x_a|| = 0
    # inside the repulsive max(0, 1 - d), where a naive sqrt has an infinite derivative.
    beta = jnp.array([0.9, 0.3, 0.8, 0.2])
    x = jnp.array([[0.0, 0.0], [0.3, 0.0], [0.0, 0.0], [0.1, 0.4]])
    oid = jnp.array([0, 0, 1, 1])
    g = jax.grad(lambda xx: object_condensation_loss(beta, xx, oid, num_objects=2).total)(x)
    assert np.all(np.isfinite(np.asarray(g)))


def test_batched_mean_skips_empty_events_and_matches_per_event_losses():
    events = [random_event(s, n=20, n_pad=5) for s in (20, 21, 22)]
    beta, x, oid, mask, payload = (np.stack(a) for a in zip(*events))
    mask[2] = False  # an all-padding event (e.g. filling the last batch)
    beta, x, payload = np.nan_to_num(beta), np.nan_to_num(x, posinf=0.0), np.nan_to_num(payload)
    with jax.enable_x64(True):
        out = jax.jit(lambda *a: batched_object_condensation_loss(
            *a[:4], num_objects=6, payload={"e": a[4]}))(*map(jnp.asarray,
                                                            (beta, x, oid, mask, payload)))
        singles = [_loss64(beta[i], x[i], oid[i], mask[i], payload[i]) for i in range(2)]
    for name in ("total", "potential", "beta", "payload", "num_objects"):
        want = np.mean([float(getattr(s, name)) for s in singles])
        assert float(getattr(out, name)) == pytest.approx(want, rel=1e-12), name
    assert float(out.payload_terms["e"]) == pytest.approx(float(out.payload), rel=1e-12)


def test_loss_is_traced_once_per_shape_under_jit():
    traces = []

    @jax.jit
    def f(b, xx, o, m):
        traces.append(1)
        return object_condensation_loss(b, xx, o, m, num_objects=4).total

    rng = np.random.default_rng(0)
    for _ in range(3):
        f(jnp.asarray(rng.uniform(0, 1, 50), jnp.float32),
          jnp.asarray(rng.normal(size=(50, 3)), jnp.float32),
          jnp.asarray(rng.integers(-1, 4, 50)), jnp.asarray(rng.random(50) < 0.8))
    assert len(traces) == 1


def test_bad_input_is_refused_with_one_line_naming_the_field():
    beta = np.full(5, 0.5)
    x = np.zeros((5, 2))
    oid = np.array([0, 0, 1, -1, 1])
    with pytest.raises(ValueError, match="beta has 1 NaN"):
        object_condensation_loss(np.array([0.5, np.nan, 0.5, 0.5, 0.5]), x, oid, num_objects=2)
    with pytest.raises(ValueError, match=r"beta must lie in \[0, 1\]"):
        object_condensation_loss(np.array([0.5, 1.5, 0.5, 0.5, 0.5]), x, oid, num_objects=2)
    with pytest.raises(ValueError, match="coords must have shape"):
        object_condensation_loss(beta, np.zeros((4, 2)), oid, num_objects=2)
    with pytest.raises(ValueError, match="coords has 2 NaN"):
        object_condensation_loss(beta, np.where(np.eye(5, 2) > 0, np.inf, 0.0), oid[:5] * 0,
                                 num_objects=2)
    with pytest.raises(ValueError, match="object_id must have shape"):
        object_condensation_loss(beta, x, oid[:4], num_objects=2)
    with pytest.raises(ValueError, match="object_id must be -1"):
        object_condensation_loss(beta, x, np.array([0, 0, 2, -1, 1]), num_objects=2)
    with pytest.raises(ValueError, match="mask must have shape"):
        object_condensation_loss(beta, x, oid, np.ones(6, bool), num_objects=2)
    with pytest.raises(ValueError, match="num_objects"):
        object_condensation_loss(beta, x, oid, num_objects=0)
    with pytest.raises(ValueError, match="payload loss 'e'"):
        object_condensation_loss(beta, x, oid, num_objects=2, payload={"e": np.ones(4)})
    with pytest.raises(ValueError, match="beta_term"):
        object_condensation_loss(beta, x, oid, num_objects=2, beta_term="max")
    # NaN on padded hits is fine
    mask = np.array([1, 1, 1, 1, 0], bool)
    out = object_condensation_loss(np.array([0.5, 0.5, 0.5, 0.5, np.nan]), x, oid, mask,
                                   num_objects=2)
    assert np.isfinite(float(out.total))


def test_payload_helpers():
    pred = jnp.array([10.0, 12.0, 0.5, 0.0])
    true = jnp.array([10.0, 8.0, 1.0, 0.0])
    rel = np.array([0.0, 0.5, -0.5, 0.0])
    np.testing.assert_allclose(energy_loss(pred, true), rel ** 2, rtol=1e-6)
    hub = energy_loss(pred * 3, true, kind="huber", delta=1.0)
    r3 = (np.asarray(pred) * 3 - np.asarray(true)) / np.maximum(np.asarray(true), 1e-3)
    want = np.where(np.abs(r3) <= 1, 0.5 * r3 ** 2, np.abs(r3) - 0.5)
    np.testing.assert_allclose(hub, want, rtol=1e-6)
    assert np.all(np.isfinite(np.asarray(jax.grad(lambda p: energy_loss(p, true).sum())(pred))))
    with pytest.raises(ValueError, match="kind"):
        energy_loss(pred, true, kind="l1")
    with pytest.raises(ValueError, match="true energies must be >= 0"):
        energy_loss(pred, -true - 1.0)
    np.testing.assert_allclose(position_loss(jnp.ones((3, 2)), jnp.zeros((3, 2))), [2.0, 2.0, 2.0])
    logits = jnp.array([[2.0, 0.0, -1.0], [0.0, 0.0, 0.0]])
    labels = jnp.array([0, -1])  # -1 (noise) is clipped, finite
    lp = np.asarray(jax.nn.log_softmax(logits))
    np.testing.assert_allclose(type_loss(logits, labels), [-lp[0, 0], -lp[1, 0]], rtol=1e-6)
    with pytest.raises(ValueError, match="logits"):
        type_loss(logits, jnp.array([0, 1, 2]))


def test_minimising_the_loss_condenses_toy_objects():
    """Free per-hit (beta logit, coordinates) trained on the OC loss separate 4 objects + noise,
    and the inference then recovers the truth exactly."""
    rng = np.random.default_rng(0)
    n, K = 60, 4
    oid = rng.integers(-1, K, n)
    params = {"logit": jnp.zeros(n), "x": jnp.asarray(rng.normal(0, 0.3, (n, 2)), jnp.float32)}
    opt = optax.adam(0.05)
    state = opt.init(params)
    oid_j = jnp.asarray(oid)

    @jax.jit
    def step(params, state):
        def f(p):
            return object_condensation_loss(jax.nn.sigmoid(p["logit"]), p["x"], oid_j,
                                             num_objects=K).total
        loss, g = jax.value_and_grad(f)(params)
        upd, state = opt.update(g, state)
        return optax.apply_updates(params, upd), state, loss

    first = None
    for _ in range(400):
        params, state, loss = step(params, state)
        first = float(loss) if first is None else first
    assert float(loss) < 0.2 * first
    res = condense(jax.nn.sigmoid(params["logit"]), params["x"], max_objects=10, t_beta=0.5, t_d=0.5)
    pred = np.asarray(res.object_id)
    assert int(res.num_objects) == len(set(oid[oid >= 0].tolist()))
    assert np.all(pred[oid < 0] == -1)
    for k in range(K):  # a bijection between true and predicted objects
        assert len(set(pred[oid == k].tolist())) == 1 and pred[oid == k][0] >= 0
    assert len({pred[oid == k][0] for k in range(K)}) == K


# ---------------------------------------------------------------------------------------------
# Inference against a plain numpy loop
# ---------------------------------------------------------------------------------------------


def ref_condense(beta, x, mask, t_beta, t_d, max_objects):
    n = len(beta)
    oid = np.full(n, -1)
    index = []
    while len(index) < max_objects:
        best = -1
        for i in range(n):
            if mask[i] and oid[i] < 0 and beta[i] > t_beta and (best < 0 or beta[i] > beta[best]):
                best = i
        if best < 0:
            break
        k = len(index)
        index.append(best)
        for j in range(n):
            if mask[j] and oid[j] < 0:
                d2 = sum((float(x[j][c]) - float(x[best][c])) ** 2 for c in range(x.shape[1]))
                if d2 <= t_d ** 2:
                    oid[j] = k
        oid[best] = k
    return oid, index


def inference_event(seed, n=300, dim=3, n_obj=12):
    rng = np.random.default_rng(seed)
    centres = rng.uniform(-3, 3, (n_obj, dim))
    lab = rng.integers(0, n_obj, n)
    x = centres[lab] + rng.normal(0, 0.4, (n, dim))
    beta = rng.uniform(0, 1, n) ** 2
    mask = rng.random(n) < 0.85
    beta[~mask] = 0.999  # padding looks like the best candidate: it must be ignored
    return beta, x, mask


@pytest.mark.parametrize("x64", [False, True])
@pytest.mark.parametrize("seed", range(4))
def test_inference_matches_numpy_loop(seed, x64):
    beta, x, mask = inference_event(seed)
    t_beta, t_d, K = 0.3 + 0.1 * seed, 0.6 + 0.2 * seed, 128
    dt = np.float64 if x64 else np.float32
    beta, x = beta.astype(dt), x.astype(dt)
    energy = np.arange(len(beta), dtype=dt) * 2.0
    ref_oid, ref_index = ref_condense(beta, x, mask, dt(t_beta), dt(t_d), K)
    with jax.enable_x64(x64):
        res = condense(jnp.asarray(beta), jnp.asarray(x), jnp.asarray(mask),
                       payload={"energy": jnp.asarray(energy), "pos": jnp.asarray(x)},
                       max_objects=K, t_beta=t_beta, t_d=t_d)
        res = jax.tree_util.tree_map(np.asarray, res)
    nk = len(ref_index)
    assert 3 <= nk < K and not res.overflow
    np.testing.assert_array_equal(res.object_id, ref_oid)
    assert int(res.num_objects) == nk
    np.testing.assert_array_equal(res.index[:nk], ref_index)
    assert np.all(res.index[nk:] == -1) and np.all(res.valid == (np.arange(K) < nk))
    np.testing.assert_array_equal(res.payload["energy"][:nk], energy[ref_index])
    np.testing.assert_array_equal(res.payload["pos"][:nk], x[ref_index])
    assert np.all(res.payload["energy"][nk:] == 0) and np.all(res.beta[nk:] == 0)
    np.testing.assert_array_equal(res.beta[:nk], beta[ref_index])
    np.testing.assert_array_equal(res.num_hits[:nk], np.bincount(ref_oid[ref_oid >= 0], minlength=nk))
    assert np.all(res.object_id[~mask] == -1)


def test_inference_known_answer_with_exact_boundaries():
    # 1D line: the condensation point at 0 takes the hit at distance exactly t_d = 1 (inclusive),
    # not the one at 1.5; that one (beta 0.6) becomes object 1 and takes the hit at 2.5.
    # The hit at 10 is below t_beta and far from everything: noise. Equal betas: lowest index.
    # The last hit is padding right next to object 0, with the highest beta: it stays -1.
    beta = np.array([0.2, 0.9, 0.1, 0.6, 0.3, 0.05, 0.9, 0.95], np.float32)
    x = np.array([[1.0], [0.0], [1.5], [1.5], [2.5], [10.0], [-5.0], [0.0]], np.float32)
    mask = np.arange(8) < 7
    res = condense(beta, x, mask, max_objects=4, t_beta=0.5, t_d=1.0, payload=np.arange(8))
    np.testing.assert_array_equal(np.asarray(res.object_id), [0, 0, 2, 2, 2, -1, 1, -1])
    np.testing.assert_array_equal(np.asarray(res.index), [1, 6, 3, -1])
    np.testing.assert_array_equal(np.asarray(res.num_hits), [2, 1, 3, 0])
    np.testing.assert_array_equal(np.asarray(res.payload), [1, 6, 3, 0])


def test_inference_stops_at_max_objects_and_flags_overflow():
    beta, x, mask = inference_event(1)
    ref_oid, ref_index = ref_condense(beta.astype(np.float64), x, mask, 0.2, 0.5, 3)
    with jax.enable_x64(True):
        res = condense(jnp.asarray(beta), jnp.asarray(x), jnp.asarray(mask), max_objects=3,
                       t_beta=0.2, t_d=0.5)
    assert len(ref_index) == 3 and bool(res.overflow) and int(res.num_objects) == 3
    np.testing.assert_array_equal(np.asarray(res.object_id), ref_oid)


def test_inference_padding_and_empty_events():
    beta, x, mask = inference_event(2, n=100)
    b, xx = beta[mask].astype(np.float32), x[mask].astype(np.float32)
    res_real = condense(b, xx, max_objects=20, t_beta=0.4, t_d=0.7)
    pad = 50
    bp = np.concatenate([b, np.full(pad, 0.99, np.float32)])
    xp = np.concatenate([xx, np.full((pad, 3), np.nan, np.float32)])
    mp = np.concatenate([np.ones(len(b), bool), np.zeros(pad, bool)])
    res_pad = condense(bp, xp, mp, max_objects=20, t_beta=0.4, t_d=0.7)
    np.testing.assert_array_equal(np.asarray(res_pad.object_id)[:len(b)], np.asarray(res_real.object_id))
    assert np.all(np.asarray(res_pad.object_id)[len(b):] == -1)
    np.testing.assert_array_equal(np.asarray(res_pad.index), np.asarray(res_real.index))
    # nothing above threshold, all padding, zero length
    for args in [(b * 0 + 0.1, xx, None), (b, xx, np.zeros(len(b), bool)),
                 (np.zeros(0, np.float32), np.zeros((0, 3), np.float32), None)]:
        r = condense(*args, max_objects=5, t_beta=0.4, t_d=0.7, payload=np.zeros((len(args[0]), 2)))
        assert int(r.num_objects) == 0 and np.all(np.asarray(r.object_id) == -1)
        assert r.payload.shape == (5, 2) and not np.any(np.asarray(r.valid))


def test_inference_compiles_once_per_padded_size():
    rng = np.random.default_rng(0)
    n = 257  # a size no other test uses
    before = oc._condense_jit._cache_size()
    for t_beta, t_d in [(0.1, 0.3), (0.5, 0.9), (0.7, 0.2)]:
        beta = rng.uniform(0, 1, n).astype(np.float32)
        x = rng.normal(size=(n, 4)).astype(np.float32)
        condense(beta, x, rng.random(n) < 0.7, max_objects=16, t_beta=t_beta, t_d=t_d)
    assert oc._condense_jit._cache_size() == before + 1


def test_batched_inference_equals_per_event():
    events = [inference_event(s, n=120) for s in range(3)]
    beta, x, mask = (np.stack(a).astype(np.float32) if a[0].dtype != bool else np.stack(a)
                     for a in zip(*events))
    res = batched_condense(beta, x, mask, payload=x, max_objects=25, t_beta=0.5, t_d=0.8)
    for i in range(3):
        one = condense(beta[i], x[i], mask[i], payload=x[i], max_objects=25, t_beta=0.5, t_d=0.8)
        for a, b in zip(jax.tree_util.tree_leaves(one), jax.tree_util.tree_leaves(res)):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b)[i])


def test_inference_bad_input():
    with pytest.raises(ValueError, match="beta has 1 NaN"):
        condense(np.array([0.5, np.nan]), np.zeros((2, 2)), max_objects=2)
    with pytest.raises(ValueError, match="coords must have shape"):
        condense(np.array([0.5, 0.5]), np.zeros((3, 2)), max_objects=2)
    with pytest.raises(ValueError, match="max_objects"):
        condense(np.array([0.5, 0.5]), np.zeros((2, 2)), max_objects=0)
    with pytest.raises(ValueError, match="t_d must be >= 0"):
        condense(np.array([0.5, 0.5]), np.zeros((2, 2)), max_objects=2, t_d=-1.0)
    with pytest.raises(ValueError, match=r"payload\['e'\]"):
        condense(np.array([0.5, 0.5]), np.zeros((2, 2)), max_objects=2, payload={"e": np.zeros(3)})


def ref_nearest(oid, index, x):
    """Plain loop: every assigned hit to its nearest condensation point (first among ties)."""
    out = oid.copy()
    for j in range(len(oid)):
        if oid[j] >= 0:
            d2 = [sum((float(x[j][c]) - float(x[i][c])) ** 2 for c in range(x.shape[1]))
                  for i in index]
            out[j] = int(np.argmin(d2))
    return out


@pytest.mark.parametrize("seed", range(3))
def test_nearest_assignment_matches_numpy_loop(seed):
    beta, x, mask = inference_event(seed)
    t_beta, t_d, K = 0.3, 1.2, 128          # wide spheres: many hits are reached by two objects
    ref_oid, ref_index = ref_condense(beta, x, mask, t_beta, t_d, K)
    want = ref_nearest(ref_oid, ref_index, x)
    assert (want != ref_oid).sum() > 5      # the rule differs from the greedy one here
    res = condense(beta.astype(np.float32), x.astype(np.float32), mask, max_objects=K,
                   t_beta=t_beta, t_d=t_d, assign="nearest")
    np.testing.assert_array_equal(np.asarray(res.object_id), want)
    np.testing.assert_array_equal(np.asarray(res.index)[:len(ref_index)], ref_index)
    np.testing.assert_array_equal(np.asarray(res.num_hits)[:len(ref_index)],
                                  np.bincount(want[want >= 0], minlength=len(ref_index)))
    bres = batched_condense(beta[None].astype(np.float32), x[None].astype(np.float32), mask[None],
                            max_objects=K, t_beta=t_beta, t_d=t_d, assign="nearest")
    np.testing.assert_array_equal(np.asarray(bres.object_id)[0], want)
    with pytest.raises(ValueError, match="assign must be one of"):
        condense(beta, x, mask, max_objects=K, assign="closest")


def ref_condense_radii(beta, x, mask, t_beta, radius, max_objects, nearest):
    """Plain loop with one radius per hit (used when that hit is a condensation point); the
    nearest rule then measures distances in units of each condensation point's radius."""
    n = len(beta)
    oid = np.full(n, -1)
    index = []
    while len(index) < max_objects:
        cand = [i for i in range(n) if mask[i] and oid[i] < 0 and beta[i] > t_beta]
        if not cand:
            break
        best = max(cand, key=lambda i: (beta[i], -i))
        index.append(best)
        for j in range(n):
            d2 = sum((float(x[j][c]) - float(x[best][c])) ** 2 for c in range(x.shape[1]))
            if mask[j] and oid[j] < 0 and d2 <= float(radius[best]) ** 2:
                oid[j] = len(index) - 1
    if nearest:
        for j in range(n):
            if oid[j] >= 0:
                s = [sum((float(x[j][c]) - float(x[i][c])) ** 2 for c in range(x.shape[1]))
                     / float(radius[i]) ** 2 for i in index]
                oid[j] = int(np.argmin(s))
    return oid, index


@pytest.mark.parametrize("assign", ["greedy", "nearest"])
def test_per_hit_radii_match_numpy_loop(assign):
    """t_d as one radius per hit (e.g. by the type predicted there): condense and
    batched_condense equal the plain loop; equal radii reproduce the scalar t_d exactly."""
    beta, x, mask = inference_event(5)
    beta, x = beta.astype(np.float32), x.astype(np.float32)
    rng = np.random.default_rng(5)
    radius = np.where(rng.random(len(beta)) < 0.5, 0.5, 1.3).astype(np.float32)
    want_oid, want_index = ref_condense_radii(beta, x, mask, 0.3, radius, 128,
                                              assign == "nearest")
    res = condense(beta, x, mask, max_objects=128, t_beta=0.3, t_d=radius, assign=assign)
    np.testing.assert_array_equal(np.asarray(res.object_id), want_oid)
    np.testing.assert_array_equal(np.asarray(res.index)[:len(want_index)], want_index)
    small = condense(beta, x, mask, max_objects=128, t_beta=0.3, t_d=0.5, assign=assign)
    large = condense(beta, x, mask, max_objects=128, t_beta=0.3, t_d=1.3, assign=assign)
    assert len(want_index) not in (int(small.num_objects), int(large.num_objects))
    same = condense(beta, x, mask, max_objects=128, t_beta=0.3,
                    t_d=np.full(len(beta), 0.5, np.float32), assign=assign)
    np.testing.assert_array_equal(np.asarray(same.object_id), np.asarray(small.object_id))
    bres = batched_condense(beta[None], x[None], mask[None], max_objects=128, t_beta=0.3,
                            t_d=radius[None], assign=assign)
    np.testing.assert_array_equal(np.asarray(bres.object_id)[0], want_oid)
    with pytest.raises(ValueError, match="one radius per hit"):
        condense(beta, x, mask, max_objects=8, t_d=radius[:-1])
    with pytest.raises(ValueError, match="t_d must be >= 0"):
        condense(beta, x, mask, max_objects=8, t_d=-radius)


def ref_reach(oid, index, x, mask, radius, reach):
    """Plain loop: a real hit the selection left unassigned joins its nearest condensation point
    (distance in units of that point's radius) if within ``reach`` radii."""
    out = oid.copy()
    for j in range(len(oid)):
        if mask[j] and oid[j] < 0 and index:
            s = [sum((float(x[j][c]) - float(x[i][c])) ** 2 for c in range(x.shape[1]))
                 / float(radius[i]) ** 2 for i in index]
            if min(s) <= reach ** 2:
                out[j] = int(np.argmin(s))
    return out


@pytest.mark.parametrize("per_hit", [False, True])
def test_reach_collects_unassigned_hits_like_numpy_loop(per_hit):
    """assign="nearest" with reach > 1: the same condensation points; hits beyond every radius
    but within reach x the nearest point's radius join it; reach = 1 is the default result."""
    beta, x, mask = inference_event(7)
    beta, x = beta.astype(np.float32), x.astype(np.float32)
    rng = np.random.default_rng(7)
    radius = (np.where(rng.random(len(beta)) < 0.5, 0.4, 0.7) if per_hit
              else np.full(len(beta), 0.5)).astype(np.float32)
    t_d = radius if per_hit else 0.5
    oid0, index = ref_condense_radii(beta, x, mask, 0.3, radius, 128, True)
    want = ref_reach(oid0, index, x, mask, radius, 1.8)
    assert (want != oid0).sum() > 10 and ((want >= 0) < mask).any()   # some join, some do not
    res = condense(beta, x, mask, max_objects=128, t_beta=0.3, t_d=t_d, assign="nearest",
                   reach=1.8)
    np.testing.assert_array_equal(np.asarray(res.object_id), want)
    np.testing.assert_array_equal(np.asarray(res.index)[:len(index)], index)
    np.testing.assert_array_equal(np.asarray(res.num_hits)[:len(index)],
                                  np.bincount(want[want >= 0], minlength=len(index)))
    one = condense(beta, x, mask, max_objects=128, t_beta=0.3, t_d=t_d, assign="nearest",
                   reach=1.0)
    np.testing.assert_array_equal(np.asarray(one.object_id), oid0)
    far = batched_condense(beta[None], x[None], mask[None], max_objects=128, t_beta=0.3,
                           t_d=t_d if not per_hit else radius[None], assign="nearest", reach=1e3)
    np.testing.assert_array_equal(np.asarray(far.object_id)[0] >= 0, mask)   # never padding
    with pytest.raises(ValueError, match="reach must be a finite scalar >= 1"):
        condense(beta, x, mask, max_objects=8, assign="nearest", reach=0.5)
    with pytest.raises(ValueError, match="needs assign='nearest'"):
        condense(beta, x, mask, max_objects=8, reach=2.0)
