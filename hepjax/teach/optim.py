"""Optimisers written out in a few lines each, with their exact optax equivalents.

Every optimiser holds a list of parameter Tensors, reads ``p.grad`` (filled by ``loss.backward()``)
and updates ``p.data`` in place. Usage, as in PyTorch::

    opt = optim.Adam(model.parameters(), lr=1e-2)
    for step in range(n):
        opt.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()

``lr`` may be a number or a schedule ``lr(step) -> float`` (step = 0 on the first update, like
optax's ``count``); see the decay schedules at the bottom.
g below is dL/dw at the current step, s the step counter.

The forms follow these lectures (short names used below) and papers:
  * Kieseler: J. Kieseler, "Machine learning", European School of High-Energy Physics 2023,
    CERN Yellow Reports: School Proceedings CERN-2025-009, p. 189, doi:10.23730/CYRSP-2025-009.189;
  * Kasieczka: G. Kasieczka (Hamburg), "Intro and Overview", HISS summer school lectures;
  * Butter: A. Butter (LPNHE/ITP), "Moving beyond dense networks", IDPASC school 2025 lectures;
  * Sznajder: A. Sznajder (UERJ), "ML em HEP II", Escola INCT 2024 lectures;
  * Adam: D. P. Kingma, J. Ba, "Adam: a method for stochastic optimization", arXiv:1412.6980;
  * the perceptron: F. Rosenblatt, Psychological Review 65 (1958) 386.
"""
from __future__ import annotations

import math

import numpy as np

__all__ = [
    "Optimizer",
    "SGD",
    "Momentum",
    "MomentumEMA",
    "Adam",
    "Perceptron",
    "time_decay",
    "step_decay",
    "exponential_decay",
]


class Optimizer:
    """Base class: keeps the parameters, a step counter, and the learning rate (or schedule)."""

    def __init__(self, params, lr):
        self.params = list(params)
        self.lr = lr
        self.count = 0  # number of steps taken so far

    def current_lr(self):
        """The learning rate for this step: lr, or lr(count) for a schedule."""
        return self.lr(self.count) if callable(self.lr) else self.lr

    def zero_grad(self):
        """Reset every parameter's gradient to zero (gradients accumulate otherwise)."""
        for p in self.params:
            p.grad = np.zeros_like(p.data)

    def step(self):
        """Apply one update to every parameter from its ``.grad``."""
        lr = self.current_lr()
        for i, p in enumerate(self.params):
            self._update(i, p, lr)
        self.count += 1

    def _update(self, i, p, lr):
        raise NotImplementedError


class SGD(Optimizer):
    """(Stochastic) gradient descent, Kieseler eq. (13):  w <- w - lr g.

    optax equivalent: ``optax.sgd(lr)``.
    """

    def _update(self, i, p, lr):
        p.data -= lr * p.grad


class Momentum(Optimizer):
    """Momentum in the form of Kieseler, eqs. (14)-(15):

        v <- alpha v - lr g
        w <- w + v

    v is a velocity; alpha in [0, 1) is 1 - friction (small alpha = large friction).

    optax equivalent: ``optax.sgd(lr, momentum=alpha)``. optax keeps a trace t (v = 0 initially)
    ``t <- alpha t + g;  w <- w - lr t``. Multiplying by -lr shows ``v = -lr t`` at every step, so
    the two produce the same weights (to round-off).
    """

    def __init__(self, params, lr, alpha=0.9):
        super().__init__(params, lr)
        self.alpha = alpha
        self.v = [np.zeros_like(p.data) for p in self.params]

    def _update(self, i, p, lr):
        self.v[i] = self.alpha * self.v[i] - lr * p.grad
        p.data += self.v[i]


class MomentumEMA(Optimizer):
    """Momentum as an exponential moving average of gradients (Butter, "Momentum"):

        v <- beta v + (1 - beta) g
        w <- w - lr v

    optax equivalent: ``optax.sgd(lr * (1 - beta), momentum=beta)``: with optax's trace
    ``t <- beta t + g`` one has ``v = (1 - beta) t``, so the step ``lr v = lr (1 - beta) t``.
    (The EMA form only rescales the learning rate: its steady-state step is lr g, not
    lr g / (1 - beta).)
    """

    def __init__(self, params, lr, beta=0.9):
        super().__init__(params, lr)
        self.beta = beta
        self.v = [np.zeros_like(p.data) for p in self.params]

    def _update(self, i, p, lr):
        self.v[i] = self.beta * self.v[i] + (1.0 - self.beta) * p.grad
        p.data -= lr * self.v[i]


class Adam(Optimizer):
    """Adam with bias correction (Kingma & Ba; as written in Kasieczka's "Adam" slide):

        m <- b1 m + (1 - b1) g             (EMA of gradients: momentum)
        v <- b2 v + (1 - b2) g^2           (EMA of squared gradients: per-weight scale)
        m_hat = m / (1 - b1^s),  v_hat = v / (1 - b2^s)     (s = 1, 2, ...: undo the zero start)
        w <- w - lr m_hat / (sqrt(v_hat) + eps)

    optax equivalent: ``optax.adam(lr, b1=b1, b2=b2, eps=eps)`` (exactly these formulas).
    """

    def __init__(self, params, lr=1e-3, b1=0.9, b2=0.999, eps=1e-8):
        super().__init__(params, lr)
        self.b1, self.b2, self.eps = b1, b2, eps
        self.m = [np.zeros_like(p.data) for p in self.params]
        self.v = [np.zeros_like(p.data) for p in self.params]

    def _update(self, i, p, lr):
        s = self.count + 1
        self.m[i] = self.b1 * self.m[i] + (1.0 - self.b1) * p.grad
        self.v[i] = self.b2 * self.v[i] + (1.0 - self.b2) * p.grad**2
        m_hat = self.m[i] / (1.0 - self.b1**s)
        v_hat = self.v[i] / (1.0 - self.b2**s)
        p.data -= lr * (m_hat / (np.sqrt(v_hat) + self.eps))


# ---------------------------------------------------------------------------- the perceptron rule
class Perceptron:
    """Rosenblatt's perceptron (Sznajder, "The Perceptron"): y = theta(W . x + B), theta the
    Heaviside step.

    Learning rule, one example at a time:  W <- W - r (y - t) x,  B <- B - r (y - t).
    (Sznajder writes the change as delta W = r (y - t) x; it is *subtracted*, i.e. W moves towards
    examples it wrongly called 0 and away from those it wrongly called 1.) Not gradient descent:
    theta has zero derivative almost everywhere, which is why MLPs use smooth activations.
    Converges in finitely many updates on linearly separable data.
    """

    def __init__(self, n_in):
        self.W = np.zeros(n_in)
        self.B = 0.0

    def predict(self, X):
        """X: (N, n_in) -> labels (N,) in {0, 1}."""
        return (np.asarray(X) @ self.W + self.B > 0).astype(int)

    def update(self, x, t, r=1.0):
        """One application of the rule for example x (n_in,), target t in {0, 1}. Returns y - t."""
        err = int(self.predict(x[None])[0]) - int(t)
        self.W -= r * err * x
        self.B -= r * err
        return err

    def fit(self, X, T, r=1.0, epochs=100):
        """Sweep over (X, T) until an epoch makes no mistake (or ``epochs`` run out).

        Returns the list of error rates Error = 1/m sum |y_j - t_j| at the start of each epoch.
        """
        errors = []
        for _ in range(epochs):
            errors.append(float(np.mean(np.abs(self.predict(X) - T))))
            if errors[-1] == 0.0:
                break
            for x, t in zip(X, T):
                self.update(x, t, r)
        return errors


# ---------------------------------------------------------------------------- learning-rate decay
def time_decay(lr0, k):
    """Time-based decay (Butter, "Learn rate decay"): lr(s) = lr0 / (1 + k s)."""
    return lambda s: lr0 / (1.0 + k * s)


def step_decay(lr0, lam, tau):
    """Step decay (Butter, "Learn rate decay"): lr(s) = lr0 lam^floor(s / tau), 0 < lam < 1."""
    return lambda s: lr0 * lam ** (s // tau)


def exponential_decay(lr0, tau):
    """Exponential decay (Butter, "Learn rate decay"): lr(s) = lr0 exp(-s / tau)."""
    return lambda s: lr0 * math.exp(-s / tau)
