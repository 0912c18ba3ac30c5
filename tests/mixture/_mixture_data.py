"""Data and fitting helpers of the mixture tests: t-mixture samples, a common start, fits without convergence noise."""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning


def t_mixture(n: int, d: int, k: int, nu: float, separation: float, seed: int, diagonal: bool = False,
              sizes: float | None = None, scale_range: tuple[float, float] = (0.5, 1.5)):
    """Rows of a ``k``-component t mixture (random anisotropic scales in ``scale_range``; ``nu=inf``: Gaussian) and
    their labels; components of equal probability, or of Dirichlet(``sizes``) probabilities."""
    rng = np.random.default_rng(seed)
    p = None if sizes is None else rng.dirichlet(np.full(k, sizes))
    labels = rng.choice(k, size=n, p=p) if p is not None else rng.integers(0, k, size=n)
    means = rng.normal(scale=separation, size=(k, d))
    x = np.empty((n, d))
    for c in range(k):
        rows = np.flatnonzero(labels == c)
        scales = rng.uniform(*scale_range, size=d)
        z = rng.normal(size=(rows.size, d)) * scales
        if not diagonal:
            z = z @ np.linalg.qr(rng.normal(size=(d, d)))[0]
        mix = 1.0 if np.isinf(nu) else np.sqrt(rng.chisquare(nu, size=(rows.size, 1)) / nu)
        x[rows] = means[c] + z / mix
    return x, labels


def quiet_fit(model, x):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return model.fit(x)


def start_parameters(x: np.ndarray, k: int, seed: int = 1):
    """A common start: k rows as means, the data covariance for every component, equal weights."""
    rng = np.random.default_rng(seed)
    means = x[rng.choice(len(x), size=k, replace=False)]
    cov = np.cov(x, rowvar=False) + 1e-6 * np.eye(x.shape[1])
    return means, np.stack([cov] * k), np.full(k, 1.0 / k)
