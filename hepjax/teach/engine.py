"""A reverse-mode automatic-differentiation engine on numpy arrays, written to be read.

This is what ``jax.grad`` does, stripped to the bone (compare karpathy/micrograd, which does it
for scalars, and JAX's "autodidax", which does it properly).

The idea (Kieseler, "Machine learning", §1.1, eqs. (16)-(18))
-------------------------------------------------------------
Take ``Phi = tanh(w x)`` and ``L = (Phi - y)^2``. Name the intermediate ``a = w x``. The chain rule
gives, eq. (18),

    dL/dw = da/dw * dPhi/da * dL/dPhi = [x] * [1 - tanh^2(a)] * [2 (Phi - y)].

*Forward pass*: evaluate the network and remember every intermediate (``a``, ``Phi``).
*Backward pass*: start from ``dL/dL = 1`` and walk the operations in reverse. Each operation knows
one thing only: given ``dL/d(out)`` (called ``out.grad`` below), how to produce ``dL/d(input)``
for each of its inputs -- its *local* derivative times the incoming gradient (a "vector-Jacobian
product"). Summing these contributions over every path is backpropagation.

So every operation below has three parts, side by side:
  1. the forward value (numpy),
  2. the derivative, written in a comment and in ``_backward``,
  3. the bookkeeping: which Tensors it came from.

Broadcasting
------------
numpy silently broadcasts ``(3, 4) + (4,)``: the ``(4,)`` operand is *used* 3 times, so its
gradient is the *sum* of the 3 incoming gradients. ``unbroadcast`` does that summing.

Shapes: ``t.data`` and ``t.grad`` always have the same shape. Everything is float64.

Reference: J. Kieseler, "Machine learning", European School of High-Energy Physics 2023, CERN Yellow
Reports: School Proceedings CERN-2025-009, p. 189, doi:10.23730/CYRSP-2025-009.189.
"""
from __future__ import annotations

import numpy as np

__all__ = [
    "Tensor",
    "as_tensor",
    "unbroadcast",
    "concatenate",
    "mse",
    "binary_cross_entropy_with_logits",
    "categorical_cross_entropy_with_logits",
]


def unbroadcast(grad, shape):
    """Sum ``grad`` down to ``shape``: undo numpy broadcasting in the backward pass.

    grad: array of the broadcast (output) shape; shape: the input's shape. Returns shape ``shape``.
    Leading axes that broadcasting added are summed away; axes where the input had size 1 are
    summed with keepdims.
    """
    while grad.ndim > len(shape):
        grad = grad.sum(axis=0)
    for axis, size in enumerate(shape):
        if size == 1 and grad.shape[axis] != 1:
            grad = grad.sum(axis=axis, keepdims=True)
    return grad


def _axes(axis, ndim):
    """Normalise an axis argument (None / int / tuple) to a sorted tuple of non-negative ints."""
    if axis is None:
        return tuple(range(ndim))
    if isinstance(axis, int):
        axis = (axis,)
    return tuple(sorted(a % ndim for a in axis))


def _sigmoid(x):
    """Numerically stable logistic function 1 / (1 + exp(-x)) (never exponentiates a large x)."""
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def as_tensor(x):
    """Wrap a python number or numpy array as a constant Tensor (Tensors pass through)."""
    return x if isinstance(x, Tensor) else Tensor(x)


class Tensor:
    """A numpy array that remembers how it was computed, so that ``backward()`` can differentiate.

    Attributes:
      data:  np.ndarray (float64), the value.
      grad:  np.ndarray, same shape as ``data``: dL/d(data) after ``L.backward()``.
      _parents: the Tensors this one was computed from (edges of the graph).
      _backward: closure that adds this node's ``grad`` into its parents' ``grad`` (chain rule).
      op: a short name of the operation, for printing.
    """

    # Make numpy defer to our reflected operators: np.ones(3) * t  ->  t.__rmul__(np.ones(3)).
    __array_ufunc__ = None

    def __init__(self, data, _parents=(), op=""):
        self.data = np.array(data, dtype=np.float64)
        self.grad = np.zeros_like(self.data)
        self._parents = tuple(_parents)
        self._backward = lambda: None
        self.op = op

    # ------------------------------------------------------------------ bookkeeping
    @property
    def shape(self):
        return self.data.shape

    @property
    def ndim(self):
        return self.data.ndim

    @property
    def size(self):
        return self.data.size

    def __repr__(self):
        return f"Tensor({self.data!r}, op={self.op!r})"

    def __len__(self):
        return len(self.data)

    def numpy(self):
        """The value as a numpy array (a copy)."""
        return self.data.copy()

    def item(self):
        """The value of a one-element Tensor as a python float."""
        return self.data.item()

    def backward(self, grad=None):
        """Backpropagate from this Tensor: fill ``.grad`` of every Tensor it depends on.

        grad: dL/d(self), same shape as self (default 1, which requires a scalar-like self).
        Leaves (Tensors with no parents, e.g. parameters) *accumulate*: call ``zero_grad`` (or
        ``optim.<X>.zero_grad()``) between steps, as in PyTorch. Intermediate nodes are reset.
        """
        # 1. topological order: every node after all the nodes it was computed from (iterative DFS)
        topo, seen, stack = [], set(), [(self, False)]
        while stack:
            node, expanded = stack.pop()
            if expanded:
                topo.append(node)
                continue
            if id(node) in seen:
                continue
            seen.add(id(node))
            stack.append((node, True))
            stack.extend((p, False) for p in node._parents if id(p) not in seen)
        # 2. reset interior gradients, seed dL/dL = 1
        if grad is None and self.data.size != 1:
            raise ValueError("backward() without an argument needs a scalar; pass grad=...")
        seed = np.ones_like(self.data) if grad is None else np.asarray(grad, dtype=np.float64)
        for node in topo:
            if node._parents:
                node.grad = np.zeros_like(node.data)
        self.grad = self.grad + seed.reshape(self.shape)
        # 3. chain rule, outputs before inputs
        for node in reversed(topo):
            node._backward()

    def zero_grad(self):
        """Set ``grad`` to zeros (in place: shape unchanged)."""
        self.grad = np.zeros_like(self.data)

    # ------------------------------------------------------------------ arithmetic (broadcasting)
    def __add__(self, other):
        other = as_tensor(other)
        out = Tensor(self.data + other.data, (self, other), "+")

        def _backward():  # d(a+b)/da = 1, d(a+b)/db = 1
            self.grad += unbroadcast(out.grad, self.shape)
            other.grad += unbroadcast(out.grad, other.shape)

        out._backward = _backward
        return out

    def __sub__(self, other):
        other = as_tensor(other)
        out = Tensor(self.data - other.data, (self, other), "-")

        def _backward():  # d(a-b)/da = 1, d(a-b)/db = -1
            self.grad += unbroadcast(out.grad, self.shape)
            other.grad -= unbroadcast(out.grad, other.shape)

        out._backward = _backward
        return out

    def __mul__(self, other):
        other = as_tensor(other)
        out = Tensor(self.data * other.data, (self, other), "*")

        def _backward():  # d(ab)/da = b, d(ab)/db = a
            self.grad += unbroadcast(out.grad * other.data, self.shape)
            other.grad += unbroadcast(out.grad * self.data, other.shape)

        out._backward = _backward
        return out

    def __truediv__(self, other):
        other = as_tensor(other)
        out = Tensor(self.data / other.data, (self, other), "/")

        def _backward():  # d(a/b)/da = 1/b, d(a/b)/db = -a/b^2
            self.grad += unbroadcast(out.grad / other.data, self.shape)
            other.grad -= unbroadcast(out.grad * self.data / other.data**2, other.shape)

        out._backward = _backward
        return out

    def __pow__(self, other):
        if isinstance(other, (int, float, np.integer, np.floating)):
            p = float(other)
            out = Tensor(self.data**p, (self,), f"**{p:g}")

            def _backward():  # d(a^p)/da = p a^(p-1)   (p a constant)
                self.grad += out.grad * p * self.data ** (p - 1)

            out._backward = _backward
            return out
        other = as_tensor(other)
        out = Tensor(self.data**other.data, (self, other), "**")

        def _backward():  # d(a^b)/da = b a^(b-1),  d(a^b)/db = a^b log(a)   (needs a > 0)
            self.grad += unbroadcast(out.grad * other.data * self.data ** (other.data - 1), self.shape)
            other.grad += unbroadcast(out.grad * out.data * np.log(self.data), other.shape)

        out._backward = _backward
        return out

    def __neg__(self):
        out = Tensor(-self.data, (self,), "neg")

        def _backward():  # d(-a)/da = -1
            self.grad -= out.grad

        out._backward = _backward
        return out

    # reflected forms: python scalar or numpy array on the left-hand side
    def __radd__(self, other):
        return as_tensor(other) + self

    def __rsub__(self, other):
        return as_tensor(other) - self

    def __rmul__(self, other):
        return as_tensor(other) * self

    def __rtruediv__(self, other):
        return as_tensor(other) / self

    def __rpow__(self, other):
        return as_tensor(other) ** self

    # ------------------------------------------------------------------ matrix product
    def __matmul__(self, other):
        """numpy matmul semantics: (..., n, k) @ (..., k, m) -> (..., n, m); 1-D operands allowed."""
        other = as_tensor(other)
        out = Tensor(self.data @ other.data, (self, other), "@")

        def _backward():  # C = A B:  dL/dA = dL/dC B^T,  dL/dB = A^T dL/dC
            a, b, g = self.data, other.data, out.grad
            a2 = a[None, :] if a.ndim == 1 else a  # treat a vector as a 1-row / 1-column matrix
            b2 = b[:, None] if b.ndim == 1 else b
            if b.ndim == 1:  # the output lost b's column axis: put it back
                g = np.expand_dims(g, -1)
            if a.ndim == 1:  # ... and a's row axis
                g = np.expand_dims(g, -2)
            ga = g @ np.swapaxes(b2, -1, -2)
            gb = np.swapaxes(a2, -1, -2) @ g
            self.grad += unbroadcast(ga, a2.shape).reshape(a.shape)  # batch axes may broadcast too
            other.grad += unbroadcast(gb, b2.shape).reshape(b.shape)

        out._backward = _backward
        return out

    def __rmatmul__(self, other):
        return as_tensor(other) @ self

    # ------------------------------------------------------------------ elementwise functions
    def exp(self):
        out = Tensor(np.exp(self.data), (self,), "exp")

        def _backward():  # d exp(a)/da = exp(a)  (= the output: reuse it)
            self.grad += out.grad * out.data

        out._backward = _backward
        return out

    def log(self):
        out = Tensor(np.log(self.data), (self,), "log")

        def _backward():  # d log(a)/da = 1/a
            self.grad += out.grad / self.data

        out._backward = _backward
        return out

    def tanh(self):
        out = Tensor(np.tanh(self.data), (self,), "tanh")

        def _backward():  # d tanh(a)/da = 1 - tanh^2(a)   (the middle factor of eq. 18)
            self.grad += out.grad * (1.0 - out.data**2)

        out._backward = _backward
        return out

    def sigmoid(self):
        out = Tensor(_sigmoid(self.data), (self,), "sigmoid")

        def _backward():  # d s(a)/da = s(a) (1 - s(a)) <= 1/4: the root of vanishing gradients
            self.grad += out.grad * out.data * (1.0 - out.data)

        out._backward = _backward
        return out

    def relu(self):
        out = Tensor(np.maximum(self.data, 0.0), (self,), "relu")

        def _backward():  # d relu(a)/da = 1 if a > 0 else 0
            self.grad += out.grad * (self.data > 0)

        out._backward = _backward
        return out

    def elu(self, alpha=1.0):
        x = self.data
        out = Tensor(np.where(x > 0, x, alpha * np.expm1(np.minimum(x, 0.0))), (self,), "elu")

        def _backward():  # d elu(a)/da = 1 if a > 0 else alpha exp(a)  (= out + alpha)
            self.grad += out.grad * np.where(x > 0, 1.0, out.data + alpha)

        out._backward = _backward
        return out

    # ------------------------------------------------------------------ reductions
    def sum(self, axis=None, keepdims=False):
        """Sum over ``axis`` (None: all, int, or tuple)."""
        axes = _axes(axis, self.ndim)
        out = Tensor(self.data.sum(axis=axes, keepdims=keepdims), (self,), "sum")

        def _backward():  # d(sum_i a_i)/da_j = 1: copy the gradient back along the summed axes
            g = out.grad if keepdims else np.expand_dims(out.grad, axes)
            self.grad += np.broadcast_to(g, self.shape)

        out._backward = _backward
        return out

    def mean(self, axis=None, keepdims=False):
        """Mean over ``axis``: the sum divided by the number of summed elements."""
        axes = _axes(axis, self.ndim)
        n = int(np.prod([self.shape[a] for a in axes]))
        return self.sum(axis=axes, keepdims=keepdims) * (1.0 / n)  # d/da_j = 1/n

    # ------------------------------------------------------------------ shape manipulation
    def reshape(self, *shape):
        if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
            shape = tuple(shape[0])
        out = Tensor(self.data.reshape(shape), (self,), "reshape")

        def _backward():  # reshaping moves no numbers: reshape the gradient back
            self.grad += out.grad.reshape(self.shape)

        out._backward = _backward
        return out

    def transpose(self, *axes):
        if len(axes) == 1 and isinstance(axes[0], (tuple, list)):
            axes = tuple(axes[0])
        perm = tuple(axes) if axes else tuple(reversed(range(self.ndim)))
        out = Tensor(self.data.transpose(perm), (self,), "transpose")

        def _backward():  # permute the gradient back with the inverse permutation
            self.grad += out.grad.transpose(np.argsort(perm))

        out._backward = _backward
        return out

    @property
    def T(self):
        return self.transpose()

    def __getitem__(self, idx):
        idx = idx.data.astype(int) if isinstance(idx, Tensor) else idx
        out = Tensor(self.data[idx], (self,), "getitem")

        def _backward():  # scatter the gradient back; np.add.at adds repeated indices correctly
            np.add.at(self.grad, idx, out.grad)

        out._backward = _backward
        return out

    # ------------------------------------------------------------------ softmax family
    def log_softmax(self, axis=-1):
        """log softmax_i(a) = a_i - log sum_j exp(a_j), computed stably (shift by the max)."""
        shifted = self.data - self.data.max(axis=axis, keepdims=True)
        logp = shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))
        out = Tensor(logp, (self,), "log_softmax")

        def _backward():  # d logp_i/da_j = delta_ij - softmax_j  =>  g - softmax * sum(g)
            g = out.grad
            self.grad += g - np.exp(out.data) * g.sum(axis=axis, keepdims=True)

        out._backward = _backward
        return out


def concatenate(tensors, axis=0):
    """Join Tensors along ``axis`` (like np.concatenate). Gradient: split it back into the pieces."""
    tensors = [as_tensor(t) for t in tensors]
    out = Tensor(np.concatenate([t.data for t in tensors], axis=axis), tensors, "concat")

    def _backward():
        edges = np.cumsum([t.shape[axis] for t in tensors])[:-1]
        for t, g in zip(tensors, np.split(out.grad, edges, axis=axis)):
            t.grad += g

    out._backward = _backward
    return out


# ---------------------------------------------------------------------------- losses
def mse(pred, target):
    """Mean squared error, mean((pred - target)^2); any shapes that broadcast. Returns a scalar."""
    return ((as_tensor(pred) - target) ** 2).mean()


def binary_cross_entropy_with_logits(logits, targets):
    """Mean binary cross entropy of ``sigmoid(logits)`` against ``targets`` in [0, 1].

    logits: Tensor (...,); targets: array of the same shape. Returns a scalar Tensor.
    Per element, -[y log s(z) + (1-y) log(1-s(z))] = max(z, 0) - z y + log(1 + exp(-|z|)),
    which never overflows. Derivative: d/dz = s(z) - y (the famous "prediction minus truth").
    """
    z, y = logits.data, np.asarray(targets, dtype=np.float64)
    n = z.size
    per = np.maximum(z, 0.0) - z * y + np.log1p(np.exp(-np.abs(z)))
    out = Tensor(per.mean(), (logits,), "bce")

    def _backward():  # dL/dz = (s(z) - y) / n
        logits.grad += out.grad * (_sigmoid(z) - y) / n

    out._backward = _backward
    return out


def categorical_cross_entropy_with_logits(logits, targets):
    """Mean cross entropy -sum_k y_k log softmax_k(z) over a batch.

    logits: Tensor (N, K). targets: integer labels (N,) or probabilities / one-hot (N, K).
    Returns a scalar Tensor. Built from ``log_softmax``, so its derivative, (softmax - y) / N,
    comes out of the chain rule by itself.
    """
    logp = logits.log_softmax(axis=-1)
    targets = np.asarray(targets)
    if targets.ndim == logits.ndim - 1:  # integer labels: pick log p of the true class
        return -(logp[np.arange(len(targets)), targets.astype(int)].mean())
    return -((logp * targets).sum(axis=-1).mean())
