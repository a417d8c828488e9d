"""A bump hunt in the dijet invariant mass: a smooth background fit and local significances.

The background model is the dijet function of the ATLAS and CMS dijet-resonance searches
(e.g. CMS, "Search for narrow resonances in dijet final states at sqrt(s) = 8 TeV",
PRD 91 (2015) 052009; ATLAS, "Search for new resonances in mass distributions of jet pairs
using 139 fb^-1", JHEP 03 (2020) 145),

    f(x) = p0 (1 - x)^p1 / x^(p2 + p3 ln x),      x = m_jj / sqrt(s),

fitted by binned Poisson maximum likelihood to a histogram of m_jj, each bin's expectation the
integral of f over the bin (5-point Gauss-Legendre). The fit is done in the parameters
(ln p0, p1, p2, p3) by Newton's method with the analytic gradient and Hessian of the
negative log-likelihood (numpy only), started from a weighted least-squares fit of the log bin
densities; the covariance is the inverse of that Hessian at the minimum.

The search (as in the LHC Olympics 2020 bump hunts, Kasieczka et al., Rep. Prog. Phys. 84
(2021) 124201): the bins of a signal window are excluded from the fit ("side-band fit"), the
fitted function predicts the background b in the window, and with n observed events there the
local significance is the Poisson likelihood ratio with b fixed (Wilks' theorem, one degree of
freedom), which is the "Asimov" formula of Cowan, Cranmer, Gross, Vitells, "Asymptotic formulae
for likelihood-based tests of new physics", EPJC 71 (2011) 1554, at s = n - b:

    Z = sqrt(2 ((s + b) ln(1 + s / b) - s))  (signed: negative for a deficit);

with the fit's uncertainty sigma_b on b, the same paper's profiled formula (also Cowan's
"Discovery sensitivity for a counting experiment with background uncertainty", 2012):

    Z = sqrt(2 ((s+b) ln((s+b)(b+sig^2) / (b^2 + (s+b) sig^2)) - b^2/sig^2 ln(1 + sig^2 s / (b (b+sig^2))))).

A scan moves the window over the spectrum and refits for each position (``scan``).
"""
from __future__ import annotations

import dataclasses

import numpy as np

__all__ = ["dijet_function", "bin_expectation", "fit_dijet", "DijetFit", "asimov_significance",
           "likelihood_ratio_significance", "bump_hunt", "scan"]

_GL_X, _GL_W = np.polynomial.legendre.leggauss(5)


def _log_dijet(x, theta):
    theta = np.asarray(theta, np.float64)
    p3 = theta[3] if len(theta) > 3 else 0.0
    lx = np.log(x)
    return theta[0] + theta[1] * np.log1p(-x) - (theta[2] + p3 * lx) * lx


def dijet_function(m, theta, sqrt_s: float = 13000.0):
    """f(m / sqrt_s) per unit of m_jj, theta = (ln p0, p1, p2[, p3])."""
    x = np.asarray(m, np.float64) / sqrt_s
    return np.exp(_log_dijet(x, theta)) / sqrt_s


def bin_expectation(edges, theta, sqrt_s: float = 13000.0) -> np.ndarray:
    """The integral of ``dijet_function`` over each bin of ``edges`` (5-point Gauss-Legendre)."""
    edges = np.asarray(edges, np.float64)
    lo, hi = edges[:-1], edges[1:]
    half, mid = (hi - lo) / 2, (hi + lo) / 2
    m = mid[:, None] + half[:, None] * _GL_X[None, :]
    return (dijet_function(m, theta, sqrt_s) * _GL_W[None, :]).sum(1) * half


def _basis(x):
    """d log f / d theta at x: (1, ln(1 - x), -ln x, -ln^2 x) (..., 4)."""
    lx = np.log(x)
    return np.stack([np.ones_like(x), np.log1p(-x), -lx, -lx * lx], -1)


def _nll_terms(theta, edges, counts, used, sqrt_s):
    """Poisson NLL sum(mu - n ln mu) over the used bins, its gradient and Hessian in theta
    (analytic: d mu / d theta_k = int f g_k, d2 mu = int f g_k g_l, g = ``_basis``)."""
    k = len(theta)
    lo, hi = edges[:-1][used], edges[1:][used]
    half, mid = (hi - lo) / 2, (hi + lo) / 2
    m = mid[:, None] + half[:, None] * _GL_X[None, :]
    x = m / sqrt_s
    w = dijet_function(m, theta, sqrt_s) * _GL_W[None, :] * half[:, None]    # (B, 5)
    g = _basis(x)[..., :k]                                                     # (B, 5, k)
    mu = w.sum(1)
    dmu = np.einsum("bq,bqk->bk", w, g)
    d2mu = np.einsum("bq,bqk,bql->bkl", w, g, g)
    n = counts[used]
    if not np.all(np.isfinite(mu)) or np.any(mu <= 0):
        return np.inf, None, None
    value = float(np.sum(mu - n * np.log(mu)))
    r = 1.0 - n / mu
    grad = dmu.T @ r
    hess = np.einsum("b,bkl->kl", r, d2mu) + np.einsum("b,bk,bl->kl", n / mu ** 2, dmu, dmu)
    return value, grad, hess


def _newton(theta, edges, counts, used, sqrt_s, iterations: int = 100):
    """Damped Newton minimisation of the Poisson NLL (gradient descent steps where the Hessian
    is not positive definite), to |grad| ~ 1e-9 relative."""
    theta = np.asarray(theta, np.float64)
    value, grad, hess = _nll_terms(theta, edges, counts, used, sqrt_s)
    for _ in range(iterations):
        try:
            step = -np.linalg.solve(hess, grad)
            if not np.all(np.isfinite(step)) or step @ grad >= 0:
                raise np.linalg.LinAlgError
        except np.linalg.LinAlgError:
            step = -grad / max(np.abs(np.diag(hess)).max(), 1.0)
        t = 1.0
        while t > 1e-10:
            new = theta + t * step
            v, g, h = _nll_terms(new, edges, counts, used, sqrt_s)
            if v <= value:
                break
            t *= 0.5
        else:
            break
        converged = value - v < 1e-10 * max(1.0, abs(value))
        theta, value, grad, hess = new, v, g, h
        if converged and np.abs(grad).max() < 1e-6 * max(1.0, counts[used].sum()):
            break
    return theta, value, hess


@dataclasses.dataclass
class DijetFit:
    theta: np.ndarray            # (ln p0, p1, p2[, p3])
    covariance: np.ndarray
    edges: np.ndarray
    counts: np.ndarray
    used: np.ndarray             # bins in the fit (False = excluded window or outside range)
    sqrt_s: float
    deviance: float              # 2 sum (mu - n + n ln(n/mu)) over the used bins
    ndf: int

    def expected(self, edges=None) -> np.ndarray:
        return bin_expectation(self.edges if edges is None else edges, self.theta, self.sqrt_s)

    def predict(self, lo: float, hi: float, samples: int = 400, seed: int = 0):
        """(b, sigma_b): the fitted background between lo and hi and its uncertainty from the
        fit covariance (Gaussian parameter draws, seeded)."""
        edges = np.array([lo, hi], np.float64)
        b = float(bin_expectation(edges, self.theta, self.sqrt_s)[0])
        rng = np.random.default_rng(seed)
        try:
            draws = rng.multivariate_normal(self.theta, self.covariance, samples,
                                            check_valid="ignore")
        except np.linalg.LinAlgError:
            return b, float("nan")
        vals = np.array([bin_expectation(edges, t, self.sqrt_s)[0] for t in draws])
        vals = vals[np.isfinite(vals)]
        return b, float(np.std(vals)) if len(vals) > 1 else float("nan")


def fit_dijet(edges, counts, *, exclude: tuple[float, float] | None = None,
              n_params: int = 4, sqrt_s: float = 13000.0) -> DijetFit:
    """Poisson maximum-likelihood fit of the dijet function to ``counts`` in the bins ``edges``
    (GeV), leaving out the bins overlapping ``exclude`` = (lo, hi). ``n_params`` 3 or 4."""
    edges = np.asarray(edges, np.float64)
    counts = np.asarray(counts, np.float64)
    if edges.ndim != 1 or counts.shape != (len(edges) - 1,):
        raise ValueError(f"fit_dijet: counts {counts.shape} do not match {len(edges)} bin edges")
    if n_params not in (3, 4):
        raise ValueError(f"fit_dijet: n_params={n_params}, expected 3 or 4")
    if np.any(edges <= 0) or np.any(edges >= sqrt_s) or np.any(np.diff(edges) <= 0):
        raise ValueError(f"fit_dijet: bin edges must increase within (0, sqrt_s={sqrt_s})")
    used = np.ones(len(counts), bool)
    if exclude is not None:
        lo, hi = exclude
        used &= (edges[1:] <= lo) | (edges[:-1] >= hi)
    if used.sum() <= n_params:
        raise ValueError(f"fit_dijet: {int(used.sum())} bins left for {n_params} parameters")
    if counts[used].sum() <= 0:
        raise ValueError("fit_dijet: no events in the fitted bins")
    # start: a weighted least-squares fit of ln(n / bin width) at the bin centres, then Newton
    width = np.diff(edges)
    centre = (edges[1:] + edges[:-1]) / 2
    pos = used & (counts > 0)
    basis = _basis(centre / sqrt_s)[pos][:, :n_params]
    target = np.log(counts[pos] / width[pos] * sqrt_s)
    sw = np.sqrt(counts[pos])
    if pos.sum() > n_params:
        t0, *_ = np.linalg.lstsq(basis * sw[:, None], target * sw, rcond=None)
    else:
        t0 = np.array([0.0, 10.0, 5.0, 0.0])[:n_params]
    t0[0] += np.log(counts[used].sum() / bin_expectation(edges, t0, sqrt_s)[used].sum())
    best = None
    for start in (t0, np.array([t0[0], 10.0, 5.0, 0.0])[:n_params]):
        start = start.copy()
        start[0] += np.log(counts[used].sum() / bin_expectation(edges, start, sqrt_s)[used].sum())
        theta, value, hess = _newton(start, edges, counts, used, sqrt_s)
        if best is None or value < best[1]:
            best = (theta, value, hess)
    theta, _, hess = best
    try:
        cov = np.linalg.inv(hess)
        if not np.all(np.isfinite(cov)) or np.any(np.diag(cov) < 0):
            raise np.linalg.LinAlgError
    except np.linalg.LinAlgError:
        cov = np.linalg.pinv(hess)
    mu = bin_expectation(edges, theta, sqrt_s)
    n = counts
    with np.errstate(divide="ignore", invalid="ignore"):
        term = np.where(n > 0, n * np.log(n / mu), 0.0)
    deviance = float(2 * np.sum((mu - n + term)[used]))
    return DijetFit(theta=np.asarray(theta), covariance=cov, edges=edges, counts=counts,
                    used=used, sqrt_s=sqrt_s, deviance=deviance,
                    ndf=int(used.sum()) - len(theta))


def asimov_significance(s, b, sigma_b=0.0):
    """Z for s signal on b background (Cowan et al. 2011), signed (< 0 for s < 0); with
    ``sigma_b`` > 0 the formula with the background uncertainty profiled."""
    s, b, sig = (np.asarray(v, np.float64) for v in (s, b, sigma_b))
    if np.any(b <= 0):
        raise ValueError(f"asimov_significance: background must be > 0, got {b}")
    n = s + b
    with np.errstate(divide="ignore", invalid="ignore"):
        # log1p: (s + b) ln(1 + s/b) - s ~ s^2 / 2b cancels badly with ln(n / b) for s << b
        plain = 2 * (n * np.log1p(np.where(n > 0, s / b, 0.0)) - s)
        s2 = sig ** 2
        prof = 2 * (n * np.log(np.where(n > 0, n * (b + s2) / (b * b + n * s2), 1.0))
                    - b * b / np.where(s2 > 0, s2, 1.0) * np.log1p(s2 * s / (b * (b + s2))))
    q = np.where(sig > 0, prof, plain)
    return np.sign(s) * np.sqrt(np.maximum(q, 0.0))


def likelihood_ratio_significance(n, b):
    """sqrt(q0), q0 = -2 ln [Pois(n | b) / Pois(n | n)] (the signal strength at its maximum
    n - b, b known), signed; Wilks: Z for one degree of freedom."""
    n, b = np.asarray(n, np.float64), np.asarray(b, np.float64)
    log_ratio = np.where(n > 0, n * np.log(np.where(n > 0, n, 1.0) / b), 0.0) - (n - b)
    return np.sign(n - b) * np.sqrt(np.maximum(2 * log_ratio, 0.0))


def bump_hunt(mjj, window: tuple[float, float], *, edges, n_params: int | str = "auto",
              sqrt_s: float = 13000.0, seed: int = 0) -> dict:
    """Side-band fit of the m_jj values ``mjj`` in the bins ``edges`` with ``window`` excluded
    (``n_params`` 3, 4 or "auto": 4 only if it lowers the deviance by > 3.84); returns the fit,
    n and b in the window, sigma_b, the number of fit parameters, and Z without and with
    sigma_b."""
    edges = np.asarray(edges, np.float64)
    lo, hi = window
    if not (edges[0] < lo < hi < edges[-1]) or not (np.isclose(edges, lo).any()
                                                     and np.isclose(edges, hi).any()):
        raise ValueError(f"bump_hunt: window {window} must be inside the fit range "
                         f"[{edges[0]}, {edges[-1]}] and on bin edges")
    counts, _ = np.histogram(np.asarray(mjj, np.float64), edges)
    if n_params == "auto":
        # the dijet searches' rule: add the fourth parameter only if the data ask for it,
        # here a likelihood-ratio (Wilks, 1 dof) test at 95 %: deviance drop > 3.84
        fit = fit_dijet(edges, counts, exclude=window, n_params=3, sqrt_s=sqrt_s)
        fit4 = fit_dijet(edges, counts, exclude=window, n_params=4, sqrt_s=sqrt_s)
        if fit.deviance - fit4.deviance > 3.84:
            fit = fit4
    else:
        fit = fit_dijet(edges, counts, exclude=window, n_params=n_params, sqrt_s=sqrt_s)
    inside = (edges[:-1] >= lo - 1e-9) & (edges[1:] <= hi + 1e-9)
    n = int(counts[inside].sum())
    b, sigma_b = fit.predict(lo, hi, seed=seed)
    return {"fit": fit, "n": n, "b": b, "sigma_b": sigma_b, "s": n - b,
            "z": float(asimov_significance(n - b, b)),
            "z_with_sigma_b": float(asimov_significance(n - b, b, sigma_b))
            if np.isfinite(sigma_b) else float("nan"),
            "fit_deviance": fit.deviance, "fit_ndf": fit.ndf, "n_params": len(fit.theta)}


def scan(mjj, *, edges, width_bins: int, n_params: int | str = "auto", sqrt_s: float = 13000.0,
         min_sideband_bins: int = 2) -> list[dict]:
    """``bump_hunt`` for every window of ``width_bins`` bins that leaves at least
    ``min_sideband_bins`` fitted bins on each side: [{'window', 'n', 'b', 'z'}]."""
    edges = np.asarray(edges, np.float64)
    out = []
    for i in range(min_sideband_bins, len(edges) - 1 - width_bins - min_sideband_bins + 1):
        window = (float(edges[i]), float(edges[i + width_bins]))
        r = bump_hunt(mjj, window, edges=edges, n_params=n_params, sqrt_s=sqrt_s)
        out.append({"window": window, "n": r["n"], "b": r["b"], "sigma_b": r["sigma_b"],
                    "z": r["z"]})
    return out
