"""The quark/gluon data wiring (``hepjax.data.quark_gluon``, ``config.data.name = 'quark_gluon'``):
an energyflow-layout file of hand-made jets goes through ``hepjax.data.load_splits`` and comes out
as the Energy Flow Networks paper's per-particle inputs (Komiske, Metodiev, Thaler, JHEP 01
(2019) 121): z = pT / sum pT, y and phi minus their z-weighted means, and the particle ID
(energyflow's PDG-id float, or one-hot detector classes), checked against closed forms."""
import numpy as np
import pytest

from hepjax import data as data_lib
from hepjax.configs import defaults, quark_gluon_efn, quark_gluon_pfn
from hepjax.data import formats, quark_gluon

PIDS = (22, 211, -211, 321, -321, 130, 2112, -2112, 2212, -2212, 11, -11, 13, -13)


def _sample(n_jets=60, seed=0):
    """(X (N, M, 4) (pT, y, phi, pid), y (N,)): jets near (y0, phi0) with phi0 close to pi, so
    the azimuths wrap around +-pi inside a jet."""
    rng = np.random.default_rng(seed)
    m = 12
    X = np.zeros((n_jets, m, 4))
    for i in range(n_jets):
        k = rng.integers(3, m + 1)
        y0, phi0 = rng.uniform(-1.5, 1.5), np.pi - 0.05
        X[i, :k, 0] = np.sort(rng.uniform(1.0, 100.0, k))[::-1]
        X[i, :k, 1] = y0 + rng.normal(0, 0.1, k)
        X[i, :k, 2] = np.mod(phi0 + rng.normal(0, 0.1, k) + np.pi, 2 * np.pi) - np.pi
        X[i, :k, 3] = rng.choice(PIDS, k)
    return X, np.arange(n_jets) % 2


@pytest.fixture
def npz(tmp_path):
    X, y = _sample()
    path = tmp_path / "qg.npz"
    formats.write_energyflow_npz(path, X, y)
    return path, X, y


def _expected(X):
    """The paper's inputs computed jet by jet with plain numpy (energyflow's PFN example)."""
    out = []
    for x in X:
        real = x[:, 0] > 0
        pt, y, phi = x[real, 0], x[real, 1], x[real, 2]
        z = pt / pt.sum()
        px, py = (pt * np.cos(phi)).sum(), (pt * np.sin(phi)).sum()
        dphi = np.mod(phi - np.arctan2(py, px) + np.pi, 2 * np.pi) - np.pi
        out.append((z, y - (z * y).sum(), dphi - (z * dphi).sum(), x[real, 3].astype(int)))
    return out


def test_features_labels_and_splits_match_closed_forms(npz):
    path, X, y = npz
    cfg = defaults.quark_gluon_data(path=str(path), max_particles=16)
    out = {mode: data_lib.load_splits(defaults.quark_gluon_data(path=str(path), max_particles=16,
                                                                particle_id=mode))
           for mode in ("none", "id", "onehot")}
    # the splits: seeded codes (0 train, 1 test, 2 val), disjoint, together every jet
    codes = quark_gluon._split_codes(len(y), int(cfg.seed), quark_gluon.ttv_fractions(cfg))
    expected = _expected(X)
    for mode, splits in out.items():
        total = 0
        for split, code in quark_gluon.TTV_CODES.items():
            rows = np.flatnonzero(codes == code)
            arrays = splits[split]
            total += len(arrays["label"])
            np.testing.assert_array_equal(arrays["label"], y[rows])
            assert arrays["features"].shape[:2] == (len(rows), 16)
            for j, row in enumerate(rows):
                z, dy, dphi, pid = expected[row]
                k = len(z)
                f, mask = arrays["features"][j], arrays["mask"][j]
                assert mask.sum() == k and not f[k:].any()
                np.testing.assert_allclose(f[:k, 0], z, rtol=1e-5, atol=1e-7)
                np.testing.assert_allclose(f[:k, 1], dy, atol=2e-5)
                np.testing.assert_allclose(f[:k, 2], dphi, atol=2e-5)
                np.testing.assert_allclose(arrays["vectors"][j, :k, 0],
                                           np.sqrt(X[row, :k, 0] ** 2 + _mass(pid) ** 2)
                                           * np.cosh(X[row, :k, 1]), rtol=1e-5)
                if mode == "id":
                    np.testing.assert_allclose(f[:k, 3], [quark_gluon.PID_FLOAT[p] for p in pid],
                                               atol=1e-7)
                if mode == "onehot":
                    onehot = f[:k, 3:]
                    np.testing.assert_array_equal(onehot.sum(1), 1.0)
                    names = splits["feature_names"][3:]
                    assert np.all(onehot[pid == 22, names.index("is_photon")] == 1)
                    assert np.all(onehot[np.isin(pid, (211, 321, 2212)),
                                         names.index("is_charged_hadron_plus")] == 1)
                    assert np.all(onehot[np.isin(pid, (-211, -321, -2212)),
                                         names.index("is_charged_hadron_minus")] == 1)
                    assert np.all(onehot[np.isin(np.abs(pid), (130, 2112)),
                                         names.index("is_neutral_hadron")] == 1)
                    assert np.all(onehot[pid == 11, names.index("is_electron")] == 1)
                    assert np.all(onehot[pid == -13, names.index("is_muon_plus")] == 1)
        assert total == len(y)
    assert out["none"]["feature_names"] == ("z", "rapidity_rel", "phi_rel")
    assert out["id"]["feature_names"][-1] == "pid_float"
    assert len(out["onehot"]["feature_names"]) == 3 + 8


def _mass(pid):
    return np.array([formats._PID_MASS.get(abs(int(p)), formats._PID_MASS[211]) for p in pid])


def test_bad_inputs_give_one_line_errors(npz, tmp_path):
    path, X, y = npz
    with pytest.raises(ValueError, match="particle_id='bogus'"):
        data_lib.load_splits(defaults.quark_gluon_data(path=str(path), particle_id="bogus"))
    X = X.copy()
    X[0, 0, 3] = 3122   # a Lambda: not in energyflow's table of stable particles
    bad = tmp_path / "bad.npz"
    formats.write_energyflow_npz(bad, X, y)
    with pytest.raises(ValueError, match=r"PDG ids \[3122\]"):
        data_lib.load_splits(defaults.quark_gluon_data(path=str(bad), particle_id="id"))
    with pytest.raises(ValueError, match="ttv_fractions"):
        data_lib.load_splits(defaults.quark_gluon_data(path=str(path), ttv_fractions=(0.5, 0.5, 0.5)))


def test_configs_select_the_dataset_and_inputs():
    for arg in ("none", "id", "onehot"):
        c = quark_gluon_pfn.get_config(arg)
        assert c.data.name == "quark_gluon" and c.data.particle_id == arg
        assert c.model.name == "pfn" and tuple(c.model.phi_sizes) == (100, 100, 256)
        # batches are not sorted by length: the multiplicity would make them one class each
        assert c.train.length_sort_window == 0
        # energyflow's initialisation (He-uniform, zero biases): +0.006-0.008 in AUC at 10k jets
        assert c.model.init == "he"
    efn = quark_gluon_efn.get_config("")
    assert efn.model.name == "efn" and tuple(efn.model.f_sizes) == (100, 100, 100)
    with pytest.raises(ValueError, match="unknown particle ID"):
        quark_gluon_pfn.get_config("charge")



def test_particlenet_and_part_configs_build_and_train_one_step(npz):
    """``hepjax.configs.quark_gluon_particlenet`` / ``quark_gluon_part``: the papers' networks and
    recipes in the full configs; the smoke networks built from their configs as ``hepjax train``
    builds them (data, preprocessing, model, optimizer, binary task) trace one optimizer step
    on the hand-made jets (with the PDG-id float, and with one-hot classes)."""
    import jax
    from flax import nnx

    from hepjax import models, optim
    from hepjax.configs import quark_gluon_part, quark_gluon_particlenet
    from hepjax.train import experiment, spec, tasks

    for pid in ("none", "id", "onehot"):
        pn, part = quark_gluon_particlenet.get_config(pid), quark_gluon_part.get_config(pid)
        assert pn.data.name == part.data.name == "quark_gluon" and pn.data.particle_id == pid
        assert pn.model.name == "particlenet" and tuple(pn.model.coord_index) == (1, 2)
        assert [tuple(c[1]) for c in pn.model.conv_params] == [(64, 64, 64), (128, 128, 128),
                                                                 (256, 256, 256)]
        assert part.model.name == "part" and tuple(part.model.embed_dims) == (128, 512, 128)
        assert part.model.num_layers == 8 and part.model.num_cls_layers == 2
        assert (pn.optimizer.name, pn.optimizer.learning_rate) == ("ranger", 1e-2)
        assert (part.optimizer.name, part.optimizer.learning_rate) == ("ranger", 1e-3)
        assert pn.train.batch_size == part.train.batch_size == 512
        assert tuple(pn.preprocessing.log_features) == ("z",) and pn.preprocessing.standardize
    with pytest.raises(ValueError, match="unknown particle ID"):
        quark_gluon_part.get_config("charge")
    path, _, _ = npz
    task = tasks.binary_classification()
    for module, pid, n_features in ((quark_gluon_particlenet, "id", 4),
                                    (quark_gluon_part, "onehot", 11)):
        c = spec.complete(module.get_config(f"{pid},smoke"))
        c.data.update(path=str(path), max_particles=16)
        splits = data_lib.load_splits(c.data)
        assert len(splits["feature_names"]) == n_features
        fitted = experiment._preprocessing(c, tuple(splits["feature_names"])).fit(
            splits["train"]["features"], splits["train"]["mask"])
        train = experiment._transform(fitted, splits["train"])
        batch = {k: train[k] for k in ("features", "mask", "vectors")}
        batch["label"] = train["label"].astype(np.float32)
        batch["weight"] = np.ones(len(train["label"]), np.float32)
        tx = optim.make_optimizer(c.optimizer, total_steps=10, steps_per_epoch=1)

        def one_step(batch):
            """Builds the model and its optimizer, takes one step; returns (loss, new params)."""
            model = models.build_model(c.model, batch["features"].shape[1:], 1,
                                       nnx.Rngs(params=0, dropout=1))
            opt = nnx.Optimizer(model, tx, wrt=nnx.Param)
            loss, grads = nnx.value_and_grad(
                lambda m: task.loss_fn(m, batch, jax.random.key(0))[0])(model)
            opt.update(model, grads)
            return loss, nnx.state(model, nnx.Param)

        # traced abstractly (shapes and dtypes, no XLA compilation: a compiled ParT step costs
        # tens of seconds on the shared CPU; tests/models train both networks for real)
        loss, params = jax.eval_shape(one_step, batch)
        assert loss.shape == () and loss.dtype == np.float32
        assert sum(int(np.prod(x.shape)) for x in jax.tree.leaves(params)) > 0


def test_features_equal_energyflow_example_preprocessing():
    """Our PFN inputs (z, y - <y>, phi - <phi>) equal energyflow's examples/pfn_example.py
    preprocessing (``energyflow_reference._preprocess``) of the same jets in energyflow's layout,
    also for a jet across phi = +-pi."""
    from experiments.quark_gluon import energyflow_reference

    rng = np.random.default_rng(5)
    n, p = 6, 12
    pt = rng.exponential(20.0, (n, p)) + 1.0
    y = rng.normal(0.0, 0.2, (n, p))
    phi = rng.normal(0.0, 0.2, (n, p)) + np.array([0.0, 1.0, -2.0, np.pi, -np.pi + 0.05, 2.5])[:, None]
    p4 = np.stack([pt * np.cosh(y), pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(y)], -1)
    mask = np.arange(p)[None] < rng.integers(3, p + 1, n)[:, None]
    p4 = np.where(mask[..., None], p4, 0.0)
    ours, _ = quark_gluon.particle_features(p4, mask)
    theirs = energyflow_reference._preprocess(formats.p4_to_ptyphi(p4), with_pid=False)
    np.testing.assert_allclose(np.where(mask[..., None], ours, 0.0),
                               np.where(mask[..., None], theirs, 0.0), atol=1e-6)


def test_seed_summary_means_and_differences(tmp_path, capsys):
    """``energyflow_reference seeds``: each run's AUC equals hepjax.metrics.roc_auc on the same
    scores, group means / sample standard deviations / the difference of the means as numpy
    computes them, from both file layouts (ours and energyflow's); other test jets are refused."""
    import json

    from experiments.quark_gluon import energyflow_reference
    from hepjax import metrics

    rng = np.random.default_rng(3)
    labels = rng.integers(0, 2, 400)
    paths, aucs = {"a": [], "b": []}, {"a": [], "b": []}
    for g, shift in (("a", 0.5), ("b", 1.0)):
        for k in range(3):
            s = labels * shift + rng.normal(0.0, 1.0, len(labels))
            path = tmp_path / f"{g}{k}.npz"
            if g == "a":   # energyflow's *_scores.npz
                np.savez(path, scores=s, labels=labels)
            else:          # our run's test_outputs.npz: outputs (N, 1)
                np.savez(path, outputs=s[:, None].astype(np.float32), labels=labels)
                s = s.astype(np.float32).astype(np.float64)
            paths[g].append(str(path))
            aucs[g].append(float(metrics.roc_auc(labels, s)))
    out = tmp_path / "summary.json"
    energyflow_reference.main(["seeds", "a=" + ",".join(paths["a"]), "b=" + ",".join(paths["b"]),
                               "--out", str(out)])
    got = json.loads(out.read_text())["groups"]
    for g in "ab":
        np.testing.assert_allclose([r["auc"] for r in got[g]["runs"]], aucs[g], atol=1e-12)
        assert got[g]["mean"] == pytest.approx(np.mean(aucs[g]), abs=1e-12)
        assert got[g]["seed_std"] == pytest.approx(np.std(aucs[g], ddof=1), abs=1e-12)
    assert got["b"]["minus_a"] == pytest.approx(np.mean(aucs["b"]) - np.mean(aucs["a"]), abs=1e-12)
    assert got["b"]["minus_a_err"] == pytest.approx(
        np.hypot(np.std(aucs["a"], ddof=1), np.std(aucs["b"], ddof=1)) / np.sqrt(3), abs=1e-12)
    assert "b - a" in capsys.readouterr().out
    np.savez(tmp_path / "other.npz", scores=rng.normal(size=400), labels=1 - labels)
    with pytest.raises(SystemExit, match="other.npz: its test labels differ"):
        energyflow_reference.main(["seeds", f"a={paths['a'][0]},{tmp_path / 'other.npz'}"])


def _pairwise_auc(labels, scores):
    """AUC by counting pairs (ties half), the definition, for small samples."""
    pos, neg = scores[labels == 1], scores[labels == 0]
    diff = pos[:, None] - neg[None, :]
    return float(((diff > 0) + 0.5 * (diff == 0)).mean())


def test_pthat_window_mixture_auc_equals_replicated_sample():
    """pthat_window: the slice task changes only its process's pTHat window; the mixture weights
    put each slice into its class in proportion to its rate, so with rates that make every weight
    an integer multiple the weighted AUC equals the pair-counting AUC of the sample with each jet
    repeated that many times."""
    from experiments.quark_gluon import pthat_window
    from hepjax.data import generation

    task = pthat_window.slice_task(1, 300, 380)
    assert "PhaseSpace:pTHatMin = 300" in task.processes[1].settings
    assert "PhaseSpace:pTHatMax = 380" in task.processes[1].settings
    assert not [s for s in task.processes[1].settings if s.endswith("450.") or s.endswith("650.")]
    assert task.processes[0] == generation.TASKS["quark-gluon"].processes[0]

    rng = np.random.default_rng(5)
    y_in = rng.integers(0, 2, 60)
    s_in = y_in + rng.normal(0, 1.0, 60)
    n_in = [int(np.sum(y_in == k)) for k in (0, 1)]
    # out-of-window: 10 gluon jets below the window, 12 quark jets below, 5 quark jets above
    slices = [(0, (300, 380), 10), (1, (300, 380), 12), (1, (650, 800), 5)]
    y_out = np.concatenate([np.full(n, k) for k, _, n in slices])
    s_out = 0.3 * y_out + rng.normal(0, 1.0, len(y_out))
    # rates chosen so that per-jet weights are 1 (in window) and 3, 2, 4 (the slices)
    table = [{"class": k, "pthat": list(pthat_window.RECIPE_WINDOW), "rate_mb": n_in[k] * 1e-12}
             for k in (0, 1)]
    table += [{"class": k, "pthat": list(w), "rate_mb": m * n * 1e-12}
              for (k, w, n), m in zip(slices, (3, 2, 4))]
    w_in, w_slices = pthat_window.mixture_weights(table, y_in, slices)
    np.testing.assert_allclose(w_in, 1e-12)
    np.testing.assert_allclose(w_slices, [3e-12, 2e-12, 4e-12])
    w_out = np.concatenate([np.full(n, w) for (_, _, n), w in zip(slices, w_slices)])
    got = pthat_window._auc_difference(y_in, s_in, w_in, y_out, s_out, w_out, n_boot=20)
    repeat = np.rint(w_out / 1e-12).astype(int)
    y_rep = np.concatenate([y_in, np.repeat(y_out, repeat)])
    s_rep = np.concatenate([s_in, np.repeat(s_out, repeat)])
    assert got["auc_in_window"] == pytest.approx(_pairwise_auc(y_in, s_in), abs=1e-12)
    assert got["auc_mixture"] == pytest.approx(_pairwise_auc(y_rep, s_rep), abs=1e-12)
    assert got["difference"] == pytest.approx(got["auc_mixture"] - got["auc_in_window"])
    assert 0 < got["difference_err"] < 0.2
