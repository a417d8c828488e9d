"""A runnable tour of backpropagation and optimisers, on the from-scratch engine.

    python -m hepjax.teach.tutorial [--outdir teach_out] [--seed 0]

Sections (each a function you can call and read on its own):
  1. ``tanh_example``        eq. (18) of Kieseler's lectures: every intermediate of backprop
                             beside the formula.
  2. ``gradient_check``      backprop against central finite differences on an MLP.
  3. ``train_toy_sets``      an MLP trained from scratch on two blobs and on concentric circles.
  4. ``compare_optimisers``  SGD vs momentum vs Adam on the same problem and initialisation.
  5. ``vanishing_gradients`` per-layer gradient norms in a deep sigmoid net vs a deep ReLU net.
  6. ``init_variance``       activation variance through 20 layers: naive, Glorot, He.
Everything is seeded; plots (PNG, matplotlib Agg backend) go to ``outdir``.

References: Kieseler = J. Kieseler, "Machine learning", European School of High-Energy
Physics 2023, CERN Yellow Reports: School Proceedings CERN-2025-009, p. 189,
doi:10.23730/CYRSP-2025-009.189;
Sznajder = A. Sznajder (UERJ), "ML em HEP II", Escola INCT 2024 lectures; He = K. He et al.,
"Delving deep into rectifiers", arXiv:1502.01852; Glorot = X. Glorot, Y. Bengio, AISTATS 2010.
"""
from __future__ import annotations

import argparse
import pathlib

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from . import optim  # noqa: E402
from .engine import Tensor, binary_cross_entropy_with_logits  # noqa: E402
from .nn import MLP, Linear  # noqa: E402

__all__ = [
    "make_blobs",
    "make_circles",
    "tanh_example",
    "gradient_check",
    "train",
    "accuracy",
    "train_toy_sets",
    "compare_optimisers",
    "vanishing_gradients",
    "init_variance",
    "main",
]


# ---------------------------------------------------------------------------- toy data
def make_blobs(rng, n=400, sep=1.5, std=0.5):
    """Two Gaussian blobs at +-(sep, sep). Returns X (n, 2), y (n,) in {0, 1} (half each)."""
    y = np.arange(n) % 2
    centres = np.where(y[:, None] == 1, sep, -sep)
    return centres + std * rng.normal(size=(n, 2)), y


def make_circles(rng, n=400, radii=(0.5, 1.5), noise=0.1):
    """Two concentric rings (class 0 inside, 1 outside). Returns X (n, 2), y (n,) in {0, 1}."""
    y = np.arange(n) % 2
    r = np.asarray(radii)[y] + noise * rng.normal(size=n)
    phi = rng.uniform(0.0, 2.0 * np.pi, size=n)
    return np.stack([r * np.cos(phi), r * np.sin(phi)], axis=1), y


# ---------------------------------------------------------------------------- 1. eq. 18
def tanh_example(w=0.7, x=1.3, y=0.2, log=print):
    """Phi = tanh(w x), L = (Phi - y)^2 (Kieseler eqs. (16)-(18)), by hand and by the engine.

    Returns a dict with the intermediates, the analytic dL/dw of eq. 18 and the engine's.
    """
    wt = Tensor(w)
    a = wt * x  # a = w x
    phi = a.tanh()  # Phi = tanh(a)
    loss = (phi - y) ** 2  # L = (Phi - y)^2
    loss.backward()
    dadw, dphida, dldphi = x, 1.0 - np.tanh(w * x) ** 2, 2.0 * (np.tanh(w * x) - y)
    analytic = dadw * dphida * dldphi
    log("1. Backprop by hand: Phi = tanh(w x), L = (Phi - y)^2   [Kieseler eqs. (16)-(18)]")
    log(f"   inputs        w = {w}, x = {x}, y = {y}")
    log(f"   forward       a = w x          = {a.item(): .12f}")
    log(f"                 Phi = tanh(a)    = {phi.item(): .12f}")
    log(f"                 L = (Phi - y)^2  = {loss.item(): .12f}")
    log("   backward      engine (.grad of each node)       eq. 18, factor by factor")
    log(f"                 dL/dPhi = {phi.grad.item(): .12f}       dL/dPhi = 2(Phi - y)       = {dldphi: .12f}")
    log(f"                 dL/da   = {a.grad.item(): .12f}       dPhi/da = 1 - tanh^2(a)    = {dphida: .12f}")
    log(f"                                                     -> dL/da = product           = {dphida * dldphi: .12f}")
    log(f"                 dL/dw   = {wt.grad.item(): .12f}       da/dw   = x                = {dadw: .12f}")
    log(f"                                                     -> dL/dw = [x][1-tanh^2][2(Phi-y)] = {analytic: .12f}")
    log(f"   |engine - eq. 18| = {abs(wt.grad.item() - analytic):.2e}")
    return {
        "a": a.item(),
        "phi": phi.item(),
        "loss": loss.item(),
        "dL_dphi": phi.grad.item(),
        "dL_da": a.grad.item(),
        "dL_dw": wt.grad.item(),
        "analytic_dL_dphi": dldphi,
        "analytic_dL_da": dphida * dldphi,
        "analytic": analytic,
    }


# ---------------------------------------------------------------------------- 2. gradient check
def gradient_check(rng, eps=1e-6, log=print):
    """Compare backprop with central differences (L(w+eps) - L(w-eps)) / 2 eps on a small MLP.

    Returns the largest relative error over all weights (expected ~1e-8: FD truncation/round-off).
    """
    X, y = make_circles(rng, n=32)
    model = MLP((2, 5, 4, 1), rng, activation="tanh")

    def loss_value():
        return binary_cross_entropy_with_logits(model(X)[:, 0], y)

    model.zero_grad()
    loss_value().backward()
    worst = 0.0
    for p in model.parameters():
        fd = np.zeros_like(p.data)
        for i in np.ndindex(p.shape):
            old = p.data[i]
            p.data[i] = old + eps
            up = loss_value().item()
            p.data[i] = old - eps
            down = loss_value().item()
            p.data[i] = old
            fd[i] = (up - down) / (2 * eps)
        worst = max(worst, float(np.max(np.abs(fd - p.grad)) / max(np.max(np.abs(fd)), 1e-12)))
    log("2. Gradient check: backprop vs central finite differences on MLP (2, 5, 4, 1)")
    log(f"   max |backprop - FD| / max |FD| over all parameters = {worst:.2e}")
    return worst


# ---------------------------------------------------------------------------- training loop
def bce_loss(model, X, y):
    """Binary cross entropy of the model's single logit. X (N, d), y (N,) -> scalar Tensor."""
    return binary_cross_entropy_with_logits(model(X)[:, 0], y)


def train(model, opt, X, y, steps):
    """Full-batch training: ``steps`` times zero_grad, forward, backward, step. Returns losses."""
    losses = []
    for _ in range(steps):
        opt.zero_grad()
        loss = bce_loss(model, X, y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def accuracy(model, X, y):
    """Fraction of points with (logit > 0) == y."""
    return float(np.mean((model(X).data[:, 0] > 0) == (y == 1)))


def _plot_curves(curves, path, title):
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for label, losses in curves.items():
        ax.plot(losses, label=label)
    ax.set(xlabel="step", ylabel="loss (BCE)", yscale="log", title=title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


# ---------------------------------------------------------------------------- 3. toy sets
def train_toy_sets(outdir, seed=0, steps=300, log=print):
    """Train MLP (2, 16, 16, 1), ReLU + He init, Adam(0.02), on blobs and circles.

    Returns {name: {"train_acc", "test_acc", "losses"}}; saves loss curves and decision regions.
    """
    results = {}
    fig, axes = plt.subplots(1, 2, figsize=(8, 3.5))
    log("3. MLP (2, 16, 16, 1), ReLU, He init, Adam lr=0.02, full batch")
    for ax, (name, maker) in zip(axes, [("blobs", make_blobs), ("circles", make_circles)]):
        rng = np.random.default_rng(seed)
        X, y = maker(rng, n=400)
        Xt, yt = maker(rng, n=400)
        model = MLP((2, 16, 16, 1), rng, activation="relu")
        losses = train(model, optim.Adam(model.parameters(), lr=0.02), X, y, steps)
        results[name] = {"train_acc": accuracy(model, X, y), "test_acc": accuracy(model, Xt, yt), "losses": losses}
        log(f"   {name:8s} loss {losses[0]:.3f} -> {losses[-1]:.4f}   "
            f"train accuracy {results[name]['train_acc']:.4f}   test accuracy {results[name]['test_acc']:.4f}")
        g = np.linspace(-3, 3, 121)
        grid = np.stack(np.meshgrid(g, g), axis=-1).reshape(-1, 2)
        ax.contourf(g, g, model(grid).data.reshape(121, 121) > 0, alpha=0.3, cmap="coolwarm")
        ax.scatter(X[:, 0], X[:, 1], c=y, s=4, cmap="coolwarm")
        ax.set_title(f"{name}: train acc {results[name]['train_acc']:.3f}")
    fig.tight_layout()
    fig.savefig(pathlib.Path(outdir) / "toy_decision_regions.png", dpi=90)
    plt.close(fig)
    _plot_curves({k: v["losses"] for k, v in results.items()}, pathlib.Path(outdir) / "toy_loss.png",
                 "MLP trained from scratch")
    return results


# ---------------------------------------------------------------------------- 4. optimisers
def compare_optimisers(outdir, seed=0, steps=200, log=print):
    """Same data (circles), same initial weights; SGD(0.1), Momentum(0.1, 0.9), Adam(0.01).

    Returns {name: losses}; saves one plot of the three loss curves.
    """
    X, y = make_circles(np.random.default_rng(seed), n=400)
    makers = {
        "SGD lr=0.1": lambda ps: optim.SGD(ps, lr=0.1),
        "Momentum lr=0.1 alpha=0.9": lambda ps: optim.Momentum(ps, lr=0.1, alpha=0.9),
        "Adam lr=0.01": lambda ps: optim.Adam(ps, lr=0.01),
    }
    curves = {}
    log(f"4. Optimisers on circles, same MLP and initialisation, {steps} steps")
    for name, make in makers.items():
        model = MLP((2, 16, 16, 1), np.random.default_rng(seed + 1), activation="relu")
        curves[name] = train(model, make(model.parameters()), X, y, steps)
        log(f"   {name:26s} final loss {curves[name][-1]:.4f}   accuracy {accuracy(model, X, y):.4f}")
    _plot_curves(curves, pathlib.Path(outdir) / "optimisers_loss.png", "SGD vs momentum vs Adam")
    return curves


# ---------------------------------------------------------------------------- 5. vanishing grads
def vanishing_gradients(seed=0, depth=10, width=32, log=print):
    """Per-layer ||dL/dW|| in a deep net (``depth`` hidden layers): sigmoid + Glorot vs ReLU + He.

    Returns {activation: array of norms, input layer first}. Sigmoid' <= 1/4 multiplies in at
    every layer on the way back (Sznajder, "Vanishing Gradient Problem"), so the first layers
    get orders of magnitude less.
    """
    X, y = make_blobs(np.random.default_rng(seed), n=256)
    norms = {}
    log(f"5. Vanishing gradients: ||dL/dW|| per layer, {depth} hidden layers of {width}")
    for act in ("sigmoid", "relu"):
        model = MLP((2,) + (width,) * depth + (1,), np.random.default_rng(seed + 1), activation=act)
        bce_loss(model, X, y).backward()
        norms[act] = np.array([np.linalg.norm(layer.W.grad) for layer in model.layers])
        log(f"   {act:8s} " + " ".join(f"{v:.1e}" for v in norms[act]))
        log(f"   {'':8s} first / last layer = {norms[act][0] / norms[act][-1]:.1e}")
    return norms


# ---------------------------------------------------------------------------- 6. initialisation
def init_variance(outdir, seed=0, depth=20, width=256, n=500, log=print):
    """Variance of ReLU activations after each of ``depth`` layers for naive N(0,1), Glorot, He.

    Input: x ~ N(0, 1), (n, width). Returns {scheme: array (depth,) of Var(h_l)}. Expect the
    variance to grow like (width/2)^l (naive), shrink like 2^-l (Glorot: built for linear/tanh,
    ReLU halves it), stay O(1) (He et al.; Butter, "Moving beyond dense networks", IDPASC
    school 2025, "Network initialization").
    """
    x0 = np.random.default_rng(seed).normal(size=(n, width))
    result = {}
    log(f"6. Var(activation) through {depth} ReLU layers of width {width}")
    for scheme in ("normal", "glorot", "he"):
        rng, h, var = np.random.default_rng(seed + 1), Tensor(x0), []
        for _ in range(depth):
            h = Linear(width, width, rng, init=scheme)(h).relu()
            var.append(float(h.data.var()))
        result[scheme] = np.array(var)
        log(f"   {scheme:7s} layer 1: {var[0]:.3e}  layer 10: {var[9]:.3e}  layer {depth}: {var[-1]:.3e}")
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for scheme, var in result.items():
        ax.plot(np.arange(1, depth + 1), var, marker="o", label=scheme)
    ax.set(xlabel="layer", ylabel="Var(activation)", yscale="log", title="Initialisation, ReLU")
    ax.legend()
    fig.tight_layout()
    fig.savefig(pathlib.Path(outdir) / "init_variance.png", dpi=90)
    plt.close(fig)
    return result


# ---------------------------------------------------------------------------- driver
def main(argv=None):
    """Run all six sections. Returns a dict of their results (for tests)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--outdir", default="teach_out", help="where the PNG plots go")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    outdir = pathlib.Path(args.outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    results = {"tanh": tanh_example()}
    print()
    results["gradcheck"] = gradient_check(np.random.default_rng(args.seed))
    print()
    results["toy"] = train_toy_sets(outdir, seed=args.seed)
    print()
    results["optimisers"] = compare_optimisers(outdir, seed=args.seed)
    print()
    results["vanishing"] = vanishing_gradients(seed=args.seed)
    print()
    results["init"] = init_variance(outdir, seed=args.seed)
    print(f"\nplots written to {outdir}/")
    return results


if __name__ == "__main__":
    main()
