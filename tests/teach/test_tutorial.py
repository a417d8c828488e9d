"""The tutorial runs end to end (into tmp_path) and shows what it claims to show."""
import numpy as np
import pytest

from hepjax.teach import tutorial


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    outdir = tmp_path_factory.mktemp("teach_out")
    return outdir, tutorial.main(["--outdir", str(outdir)])


def test_plots_written(results):
    outdir, _ = results
    for name in ("toy_loss.png", "toy_decision_regions.png", "optimisers_loss.png", "init_variance.png"):
        path = outdir / name
        assert path.is_file() and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name


def test_section1_eq18(results):
    r = results[1]["tanh"]
    assert r["dL_dw"] == pytest.approx(r["analytic"], rel=1e-14)
    assert r["dL_da"] == pytest.approx(r["analytic_dL_da"], rel=1e-14)
    assert r["dL_dphi"] == pytest.approx(r["analytic_dL_dphi"], rel=1e-14)
    assert r["analytic"] != 0.0


def test_section2_gradient_check(results):
    assert results[1]["gradcheck"] < 1e-6


def test_section3_mlp_reaches_99_percent_on_both_toy_sets(results):
    toy = results[1]["toy"]
    assert set(toy) == {"blobs", "circles"}
    for name, r in toy.items():
        assert r["train_acc"] >= 0.99, name
        assert r["test_acc"] >= 0.99, name
        assert r["losses"][-1] < 0.1 * r["losses"][0], name


def test_section4_three_optimisers_train(results):
    curves = results[1]["optimisers"]
    assert len(curves) == 3
    for name, losses in curves.items():
        assert losses[-1] < 0.5 * losses[0], name
    finals = {name.split()[0]: c[-1] for name, c in curves.items()}
    assert finals["Adam"] < finals["SGD"] and finals["Momentum"] < finals["SGD"]


def test_section5_sigmoid_gradients_vanish_relu_do_not(results):
    norms = results[1]["vanishing"]
    assert norms["sigmoid"][0] / norms["sigmoid"][-1] < 1e-3
    assert 0.1 < norms["relu"][0] / norms["relu"][-1] < 10


def test_section6_initialisation_variance(results):
    var = results[1]["init"]
    assert all(len(v) == 20 for v in var.values())
    assert var["normal"][-1] > 1e20  # explodes: x (width/2) per layer
    assert var["glorot"][-1] < 1e-4  # ReLU halves it each layer
    assert 0.1 < var["he"][-1] < 10 and np.all((var["he"] > 0.1) & (var["he"] < 10))


def test_tutorial_is_deterministic(tmp_path):
    a = tutorial.train_toy_sets(tmp_path, seed=0, steps=20, log=lambda *_: None)
    b = tutorial.train_toy_sets(tmp_path, seed=0, steps=20, log=lambda *_: None)
    assert a["circles"]["losses"] == b["circles"]["losses"]
