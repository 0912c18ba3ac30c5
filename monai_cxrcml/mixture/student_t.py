"""Mixture of multivariate Student-t distributions fitted by EM in torch, with a scikit-learn-like estimator API.

The model of CXR-CML (arXiv 2507.19398): ``K`` components with ``nu`` degrees of freedom fitted to image
embeddings; component assignments become pseudo-labels. Everything runs on the device of the data; the EM
maths is in ``_em.py`` and ``_covariance.py``; :class:`~monai_cxrcml.mixture.GaussianMixture` is the same
estimator with ``nu = inf``.

Decisions (each documented where it acts):

- **M-step**: scatter and location divided by ``W_k = sum tau u`` (as ``studenttmixture``; the textbook
  ``n_k`` divisor converges more slowly at high ``d``), see ``_em.py``. Matches ``studenttmixture`` to 1e-14.
- **Precision**: the E-step (the ``O(N K d^2)`` work) runs in the data's dtype; sufficient statistics are summed
  and all parameters, Cholesky factorisations and M-steps are kept in ``accumulate_dtype`` (float64 by default),
  so float32 embeddings fit at float32 speed with the log-likelihood of a float64 fit to ~1e-5 per sample.
- **Regulariser** ``reg_covar="auto"``: ``1e-3 x`` the mean per-feature variance of the fitted rows (CLIP unit
  vectors: variance ~2e-3 per feature, so ~2e-6, where scikit-learn's absolute 1e-6 would be 5e-4 of it and
  1e-6 is meaningless for data on another scale). It bounds every component's condition number by about
  ``1e3 x (largest variance / mean variance)`` so float32 E-steps stay accurate, and it keeps components with
  fewer points than dimensions well defined. Floor ``eps^2 x mean(x^2)`` (``eps`` of the compute dtype) for
  data whose rows all coincide.
- **Shrinkage** ``shrinkage=kappa`` (default 0: maximum likelihood): covariances are MAP estimates under an
  inverse-Wishart prior of ``kappa`` pseudo-points centred on the data covariance (``_covariance.py``). Needed
  when components hold fewer points than dimensions, i.e. whenever ``N / K`` is not large against ``d``: the
  maximum-likelihood fit then collapses components onto single points (measured on 796 phantom embeddings,
  ``d = 128, K = 40``, full covariances: 39 one-point components and one of 757, adjusted mutual information with
  the findings 0.00; BENCHMARKS.md, "Pseudo-labels"). ``lower_bound_`` stays the log-likelihood; with shrinkage EM
  increases the log-posterior, so the log-likelihood alone may dip.
- **Initialisation** (default ``"k-means"``): the best (lowest inertia) of 3 k-means runs, each greedy k-means++
  seeds + Lloyd to convergence, in torch; or k-means++ seeds alone (``"k-means++"``) or random rows
  (``"random"``). Every component starts with weight ``1/K`` and the isotropic covariance
  ``(mean variance + reg) I``, so the first E-step is a soft nearest-centre assignment. Measured (2 CPU threads,
  4 seeds, N=20000, d=128, K=40, t data): k-means start 1.7-4.6 s, 6-18 EM iterations, ARI 0.975-1.0;
  k-means++ start 2.7-7.1 s, 11-29 iterations, ARI 0.937-0.977. Lloyd costs ``O(N K d)`` per round against
  the EM's ``O(N K d^2)``, so the better start is nearly free and saves EM iterations.
- **"GMM refined by Student-t"** (the paper's words, ``gaussian_start=True``): from the seeded start, EM first
  fits a Gaussian mixture (the same loop with ``nu = inf``) to convergence, and Student-t EM then refines it from
  those parameters. Default ``False``: Student-t EM straight from the k-means start. Measured on the demo's trained
  phantom embeddings (BENCHMARKS.md, "GMM refined by Student-t"), both end at the same likelihood with the same
  clusters; the Gaussian stage costs EM iterations with diagonal covariances (20.6 against 13.6) and saves them
  with full ones (7.2 against 31.0), and training with it gained nothing.
- **Fewer rows than components** (per-batch fits): the fit uses ``K' = min(K, N // min_points_per_component,
  distinct rows)`` components (at least 1), reported as ``n_components_``; outputs have ``K'`` columns. A warm
  start from a fit with another ``K'`` is ignored with a warning.
- **Non-finite rows** (NaN/inf in any feature): left out of the fit with a warning naming their count and first
  rows; :meth:`predict` gives them label ``-1``, :meth:`predict_proba` an all-zero row (no component claims
  them, so they weigh nothing in a soft loss), :meth:`score_samples` NaN. A fit with no finite row is an error.
- **Re-seeding**: after an iteration in which some components hold fewer than ``min(1.5, 0.1 N / K')`` points
  (``sum_i tau_ik``), they are moved to the rows with the lowest log-likelihood (weight ``1/K'``, covariance the
  weighted mean of the others), each component at most once per fit (a component re-seeded at an outlier of
  heavy-tailed data stays there: re-seeding it again would only move it to the next outlier); counted in
  ``n_reseeded_``. The log-likelihood may drop at such an iteration.
- **Monotonicity**: without re-seeding and with fixed ``nu`` the log-likelihood never decreases as long as
  components hold more points than dimensions (with estimated ``nu``, the ECM step next to the regulariser may
  cost ~1e-7 per sample near convergence). With far fewer (per-batch fits, ``n_k << d``) the regulariser
  dominates the covariances, and EM with an additive regulariser is no longer an exact EM (the textbook
  ``n_k``-divisor update is not monotone there either): fits may then end at ``max_iter`` with a
  ``ConvergenceWarning``; give per-batch fits a small ``max_iter``.
"""

from __future__ import annotations

import math
import os
import sys
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from sklearn.exceptions import ConvergenceWarning

from ._covariance import CovarianceModel, CovariancePrior, covariance_model
from ._em import EStepResult, MixtureParameters, e_step, m_step, prepare_operands
from .kmeans import kmeans, kmeans_plusplus

__all__ = ["StudentTMixture"]

RESEED_BELOW = 1.5
"""A component whose responsibility mass ``sum_i tau_ik`` falls below this is re-seeded (empty or one point)..."""

RESEED_FRACTION = 0.1
"""... or below this fraction of the mean mass ``N / K'``, whichever is smaller: in per-batch fits with a few rows
per component, one-point components are sampling noise, and only (nearly) empty ones are re-seeded."""

KMEANS_RUNS = 3
"""k-means runs (k-means++ seeds + Lloyd) behind ``init_params="k-means"``; the lowest inertia wins."""

KMEANS_MAX_ITER = 100
"""Lloyd iteration cap of each of those runs (they stop earlier when no assignment changes)."""

_CHUNK_BYTES = {"cuda": 1 << 30}
_CHUNK_BYTES_DEFAULT = 1 << 26
_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


def _warn(message: str, category: type[Warning] = RuntimeWarning) -> None:
    """``warnings.warn`` attributed to the caller's first frame outside this package."""
    frame, level = sys._getframe(1), 2
    while frame is not None and os.path.dirname(os.path.abspath(frame.f_code.co_filename)) == _PACKAGE_DIR:
        frame, level = frame.f_back, level + 1
    warnings.warn(message, category, stacklevel=level)


class StudentTMixture:
    """Mixture of ``K`` multivariate Student-t distributions, fitted by EM on the data's device.

    Parameters
    ----------
    n_components
        Number of components ``K`` (CXR-CML: 40).
    covariance_type
        ``"full"`` (``[K, d, d]`` scale matrices) or ``"diag"`` (``[K, d]`` variances).
    dof
        Degrees of freedom ``nu`` of every component (CXR-CML: 4), or the start value when ``estimate_dof``.
        ``float("inf")`` gives a Gaussian mixture.
    estimate_dof
        Estimate ``nu_k`` per component (ECM step, bisection in ``log nu`` on ``[1, max_dof]``).
    max_dof
        Cap of estimated ``nu`` (near-Gaussian components drift towards infinity; 100 is already close to
        Gaussian for the tails that matter).
    tol
        Convergence threshold on the change of the mean log-likelihood per sample between iterations.
    max_iter
        Maximum EM iterations; ``0`` only initialises.
    reg_covar
        Added to every covariance diagonal: a float, or ``"auto"`` (``1e-3 x`` mean per-feature variance of X;
        see the module docstring). The value used is ``reg_covar_``.
    shrinkage
        Pseudo-points ``kappa >= 0`` of the inverse-Wishart prior centred on the data covariance (0 = maximum
        likelihood); see the module docstring.
    init_params
        ``"k-means"`` (best of 3 k-means runs), ``"k-means++"`` (seeds only) or ``"random"`` (rows); see the
        module docstring.
    gaussian_start
        Fit a Gaussian mixture from each start first and refine it with Student-t EM (the paper's "GMM
        refined by Student-t"); ignored for warm starts and for ``dof = inf``. ``n_iter_`` and
        ``lower_bounds_`` then cover both stages.
    n_init
        Number of seeded starts; the fit with the highest final log-likelihood is kept (ignored for warm and
        explicit starts). On overlapping clusters one start finds the best optimum only for some seeds
        (benchmark case 1: 5 of 8 seeds with "k-means", 3 of 8 with "k-means++"), so 3-5 starts pay off when
        quality matters.
    means_init, weights_init, covariances_init
        Explicit start (array-likes ``[K, d]``, ``[K]``, ``[K, d, d]``/``[K, d]``), overriding ``init_params``
        for what they give. Needs ``N >= K x min_points_per_component`` rows.
    warm_start
        Start a repeated :meth:`fit` from the previous parameters (means, covariances, weights, dofs).
    random_state
        Seed (int) or ``torch.Generator`` (CPU) for the initialisation; same seed, same fit.
    chunk_size
        Rows per E-step block; ``None`` keeps the block's intermediates near 64 MiB (CPU) or 1 GiB (CUDA): at
        ``N = 200k, d = 512, K = 40`` (float32, CUDA) the fit then holds X (0.4 GB), one block (~1 GB) and
        ``[N, K]`` responsibilities; nothing of size ``[N, K, d]`` is ever formed.
    accumulate_dtype
        Dtype of the sufficient statistics and of the parameters (factorisations, M-step); ``None`` = the data's
        dtype. The E-step runs in the data's dtype (float32 or float64; other dtypes are cast to float32).
    min_points_per_component
        The per-batch rule: at most ``N // min_points_per_component`` components are fitted.
    device
        Device to fit on; ``None`` = the device of X.
    verbose
        Print the log-likelihood of every iteration.

    Attributes
    ----------
    weights_, means_, covariances_, dofs_
        ``[K']``, ``[K', d]``, ``[K', d, d]`` or ``[K', d]``, ``[K']`` (accumulation dtype, fit device).
    precisions_cholesky_
        ``P_k`` with ``S_k^-1 = P_k P_k^T`` (scikit-learn's convention; upper triangular for "full").
    n_components_
        ``K'``, the number of components actually fitted.
    converged_, n_iter_, lower_bound_, lower_bounds_
        As scikit-learn: ``lower_bounds_[i]`` is the mean log-likelihood per sample of the parameters entering
        iteration ``i + 1`` (computed in its E-step); ``lower_bound_`` the last of them.
    reg_covar_, n_reseeded_, n_features_in_
        Regulariser used, components re-seeded during the last fit, feature count.

    Examples
    --------
    >>> mix = StudentTMixture(n_components=40, dof=4.0, random_state=0).fit(embeddings)  # doctest: +SKIP
    >>> pseudo_labels = mix.predict(embeddings)  # long [N], -1 for non-finite rows  # doctest: +SKIP
    """

    def __init__(
        self,
        n_components: int = 40,
        *,
        covariance_type: str = "full",
        dof: float = 4.0,
        estimate_dof: bool = False,
        max_dof: float = 100.0,
        tol: float = 1e-3,
        max_iter: int = 100,
        reg_covar: float | str = "auto",
        shrinkage: float = 0.0,
        init_params: str = "k-means",
        gaussian_start: bool = False,
        n_init: int = 1,
        means_init: object | None = None,
        weights_init: object | None = None,
        covariances_init: object | None = None,
        warm_start: bool = False,
        random_state: int | torch.Generator | None = None,
        chunk_size: int | None = None,
        accumulate_dtype: torch.dtype | None = torch.float64,
        min_points_per_component: int = 2,
        device: str | torch.device | None = None,
        verbose: bool = False,
    ) -> None:
        self.n_components = n_components
        self.covariance_type = covariance_type
        self.dof = dof
        self.estimate_dof = estimate_dof
        self.max_dof = max_dof
        self.tol = tol
        self.max_iter = max_iter
        self.reg_covar = reg_covar
        self.shrinkage = shrinkage
        self.init_params = init_params
        self.gaussian_start = gaussian_start
        self.n_init = n_init
        self.means_init = means_init
        self.weights_init = weights_init
        self.covariances_init = covariances_init
        self.warm_start = warm_start
        self.random_state = random_state
        self.chunk_size = chunk_size
        self.accumulate_dtype = accumulate_dtype
        self.min_points_per_component = min_points_per_component
        self.device = device
        self.verbose = verbose
        self._check_parameters()

    # ------------------------------------------------------------------ validation and data
    def _check_parameters(self) -> None:
        name = type(self).__name__
        checks = [
            (isinstance(self.n_components, int) and self.n_components >= 1, "n_components", "an int >= 1"),
            (self.covariance_type in ("full", "diag"), "covariance_type", "'full' or 'diag'"),
            (float(self.dof) >= 1.0, "dof", "a float >= 1 (or float('inf') for a Gaussian mixture)"),
            (not (self.estimate_dof and math.isinf(self.dof)), "estimate_dof", "False when dof is infinite"),
            (math.isfinite(self.max_dof) and self.max_dof > 1.0, "max_dof", "a finite float > 1"),
            (self.tol >= 0, "tol", "a float >= 0"),
            (isinstance(self.max_iter, int) and self.max_iter >= 0, "max_iter", "an int >= 0"),
            (self.reg_covar == "auto" or (not isinstance(self.reg_covar, str) and self.reg_covar >= 0),
             "reg_covar", "'auto' or a float >= 0"),
            (not isinstance(self.shrinkage, str) and self.shrinkage >= 0, "shrinkage", "a float >= 0"),
            (self.init_params in ("k-means++", "k-means", "random"), "init_params",
             "'k-means++', 'k-means' or 'random'"),
            (isinstance(self.gaussian_start, bool), "gaussian_start", "True or False"),
            (isinstance(self.n_init, int) and self.n_init >= 1, "n_init", "an int >= 1"),
            (self.chunk_size is None or (isinstance(self.chunk_size, int) and self.chunk_size >= 1), "chunk_size",
             "None or an int >= 1"),
            (self.accumulate_dtype in (None, torch.float32, torch.float64), "accumulate_dtype",
             "None, torch.float32 or torch.float64"),
            (isinstance(self.min_points_per_component, int) and self.min_points_per_component >= 1,
             "min_points_per_component", "an int >= 1"),
        ]
        for ok, param, expected in checks:
            if not ok:
                raise ValueError(f"{name}({param}={getattr(self, param)!r}): {param} must be {expected}.")

    def _as_data(self, X: object, where: str) -> torch.Tensor:
        """X as a 2-D float tensor on the fit device (numpy and array-likes accepted)."""
        x = torch.from_numpy(np.ascontiguousarray(X)) if isinstance(X, np.ndarray) else torch.as_tensor(X)
        if x.ndim != 2:
            raise ValueError(
                f"{type(self).__name__}.{where}: X must be 2-D [n_samples, n_features], got shape "
                f"{tuple(x.shape)}; reshape a single feature with X.reshape(-1, 1) or a single sample with "
                "X.reshape(1, -1)."
            )
        if x.dtype not in (torch.float32, torch.float64):
            x = x.to(torch.float32)
        if self.device is not None:
            x = x.to(self.device)
        return x.detach()

    def _finite_rows(self, x: torch.Tensor, where: str) -> torch.Tensor | None:
        """Mask of finite rows, or None when all are finite; warns about the others."""
        finite = torch.isfinite(x).all(1)
        n_bad = x.shape[0] - int(finite.sum())
        if n_bad == 0:
            return None
        first = (~finite).nonzero()[:10, 0].tolist()
        if n_bad == x.shape[0]:
            raise ValueError(
                f"{type(self).__name__}.{where}: every row of X holds NaN or inf (rows {first}...); nothing to fit. "
                "Check the embeddings (e.g. a diverged model or an unfilled memory bank)."
            )
        consequence = (
            "left out of the fit" if where == "fit" else "given label -1, zero responsibilities and NaN log-likelihood"
        )
        _warn(
            f"{type(self).__name__}.{where}: {n_bad} of {x.shape[0]} rows of X hold NaN or inf (first rows {first}); "
            f"they are {consequence}.",
            RuntimeWarning,
        )
        return finite

    def _generator(self) -> torch.Generator:
        if isinstance(self.random_state, torch.Generator):
            return self.random_state
        generator = torch.Generator()
        if self.random_state is None:
            generator.seed()
        else:
            generator.manual_seed(int(self.random_state))
        return generator

    def _chunk_rows(self, n: int, k: int, model: CovarianceModel, x: torch.Tensor) -> int:
        if self.chunk_size is not None:
            return self.chunk_size
        budget = _CHUNK_BYTES.get(x.device.type, _CHUNK_BYTES_DEFAULT)
        return max(1, min(n, budget // model.bytes_per_row(k, x.element_size())))

    @property
    def _gaussian(self) -> bool:
        return math.isinf(self.dof)

    # ------------------------------------------------------------------ fitting
    def fit(self, X: object, y: object = None) -> StudentTMixture:
        """Fit the mixture to ``X`` by EM.

        Parameters
        ----------
        X
            ``[N, d]`` torch tensor (any device) or array-like.
        y
            Ignored (scikit-learn convention).

        Returns
        -------
        StudentTMixture
            ``self``.
        """
        with torch.no_grad():
            x = self._as_data(X, "fit")
            finite = self._finite_rows(x, "fit")
            if finite is not None:
                x = x[finite]
            n, d = x.shape
            acc = self.accumulate_dtype or x.dtype
            model = covariance_model(self.covariance_type, d)
            k = max(1, min(self.n_components, n // self.min_points_per_component))
            chunk = self._chunk_rows(n, k, model, x)
            center, mean_var, mean_sq = _data_moments(x, chunk, acc)
            reg = self._regulariser(mean_var, mean_sq, x.dtype)
            prior = None
            if self.shrinkage > 0:
                prior = CovariancePrior(float(self.shrinkage), model.data_scale(x, center, chunk))
            warm = self._warm_start(x, k, center.dtype)
            generator = self._generator()
            best = None
            for _ in range(1 if warm is not None or self._explicit_start else self.n_init):
                params = warm or self._seeded_start(x, k, model, center, mean_var, reg, chunk, generator)
                gaussian = None
                if warm is None and self.gaussian_start and not self._gaussian:
                    gaussian = self._em(x, params, model, center, mean_var, reg, chunk, prior, gaussian=True)
                    params = gaussian.params
                run = self._em(x, params, model, center, mean_var, reg, chunk, prior)
                if gaussian is not None:
                    run = run.after(gaussian)
                if best is None or run.lower_bound > best.lower_bound:
                    best = run
            self._store(best, model, center, reg, k)
        return self

    def _em(
        self,
        x: torch.Tensor,
        params: MixtureParameters,
        model: CovarianceModel,
        center: torch.Tensor,
        mean_var: float,
        reg: float,
        chunk: int,
        prior: CovariancePrior | None,
        gaussian: bool = False,
    ) -> _Run:
        """EM iterations from ``params`` (MAP covariance updates under ``prior`` when given); ``gaussian`` runs them
        with every ``nu = inf`` whatever ``dof`` is."""
        n, d = x.shape
        k, acc = params.means.shape[0], center.dtype
        reseed_below = min(RESEED_BELOW, RESEED_FRACTION * n / k)
        lower_bounds: list[float] = []
        previous, change = -math.inf, math.inf
        converged, n_iter = False, 0
        reseeded = torch.zeros(k, dtype=torch.bool, device=x.device)
        gaussian = gaussian or self._gaussian
        estimate_dof = self.estimate_dof and not gaussian
        tick = time.perf_counter()
        for n_iter in range(1, self.max_iter + 1):
            ops = prepare_operands(params, model, center, x.dtype, gaussian)
            stats = e_step(x, ops, model, chunk, statistics=True, dof_term=estimate_dof, accumulate_dtype=acc)
            weights, means, covariances, dofs = m_step(
                stats, x, params, model, center, reg, estimate_dof, self.max_dof, chunk, prior
            )
            factor, ok = model.factorize(covariances)
            small = (stats.resp_sum < reseed_below) & ~reseeded
            # the one host synchronisation of the iteration
            lower_bound, any_small, all_ok = torch.stack(
                [stats.log_lik.sum(dtype=acc) / n, small.any().to(acc), ok.all().to(acc)]
            ).tolist()
            if not all_ok:
                covariances, factor = self._repair(model, covariances, ok, reg, mean_var)
            params = MixtureParameters(weights, means, covariances, factor, dofs)
            lower_bounds.append(lower_bound)
            change, previous = lower_bound - previous, lower_bound
            if self.verbose:
                print(
                    f"  iteration {n_iter}: mean log-likelihood {lower_bound:.6f} (change {change:.3e}, "
                    f"{time.perf_counter() - tick:.2f} s)"
                )
            if abs(change) < self.tol:
                converged = True
                break
            if any_small and n_iter < self.max_iter:
                self._reseed(params, model, small, stats.log_lik, x, mean_var, reg)
                reseeded |= small
                previous = -math.inf

        return _Run(params, converged, n_iter, lower_bounds, int(reseeded.sum()), reseed_below, change)

    def _store(self, run: _Run, model: CovarianceModel, center: torch.Tensor, reg: float, k: int) -> None:
        """Set the fitted attributes from the chosen run and warn about what happened in it."""
        k_fitted = run.params.means.shape[0]
        if k_fitted < k:
            _warn(
                f"{type(self).__name__}: X has only {k_fitted} distinct rows; fitted {k_fitted} components instead "
                f"of {k}. n_components_ reports {k_fitted}.",
                RuntimeWarning,
            )
        if self.max_iter > 0 and not run.converged:
            _warn(
                f"{type(self).__name__}: EM did not converge in max_iter={self.max_iter} iterations (last change of "
                f"the mean log-likelihood {run.last_change:.3e}, tol={self.tol}); increase max_iter or tol.",
                ConvergenceWarning,
            )
        if run.n_reseeded:
            _warn(
                f"{type(self).__name__}: {run.n_reseeded} component(s) held fewer than {run.reseed_below:.3g} "
                "points and were re-seeded at the worst-fitted rows; consider fewer components.",
                RuntimeWarning,
            )
        self._set_fitted(run, model, center, reg)

    def _set_fitted(self, run: _Run, model: CovarianceModel, center: torch.Tensor, reg: float) -> None:
        params = run.params
        self._params, self._center, self._model = params, center, model
        self.weights_, self.means_, self.covariances_, self.dofs_ = (
            params.weights, params.means, params.covariances, params.dofs
        )
        self.precisions_cholesky_ = model.precisions_cholesky(params.factor)
        self.n_components_, self.n_features_in_ = params.means.shape
        self.converged_, self.n_iter_ = run.converged, run.n_iter
        self.lower_bounds_ = run.lower_bounds
        self.lower_bound_ = run.lower_bound
        self.reg_covar_, self.n_reseeded_ = reg, run.n_reseeded

    def state_dict(self) -> dict[str, object]:
        """The fitted state, as tensors and numbers (safe for ``torch.load(weights_only=True)``); ``{}`` unfitted.

        With :meth:`load_state_dict` it lets a training run resume with the same pseudo-labels and warm start.
        """
        if not hasattr(self, "_params"):
            return {}
        p = self._params
        return {
            "covariance_type": self.covariance_type,
            "weights": p.weights, "means": p.means, "covariances": p.covariances, "factor": p.factor, "dofs": p.dofs,
            "center": self._center, "reg_covar": self.reg_covar_, "converged": self.converged_,
            "n_iter": self.n_iter_, "lower_bounds": list(self.lower_bounds_), "n_reseeded": self.n_reseeded_,
        }

    def load_state_dict(self, state: dict[str, object]) -> None:
        """Restore a fitted state from :meth:`state_dict` (an empty one leaves the estimator as it is)."""
        if not state:
            return
        if state["covariance_type"] != self.covariance_type:
            raise ValueError(
                f"the saved mixture has covariance_type={state['covariance_type']!r}, this estimator "
                f"{self.covariance_type!r}: build the estimator with the same covariance_type to load it."
            )
        params = MixtureParameters(*(state[k] for k in ("weights", "means", "covariances", "factor", "dofs")))
        run = _Run(params, bool(state["converged"]), int(state["n_iter"]), list(state["lower_bounds"]),
                   int(state["n_reseeded"]), math.nan, math.nan)
        model = covariance_model(self.covariance_type, params.means.shape[1])
        self._set_fitted(run, model, state["center"], float(state["reg_covar"]))

    def _regulariser(self, mean_var: float, mean_sq: float, dtype: torch.dtype) -> float:
        if self.reg_covar != "auto":
            return float(self.reg_covar)
        eps = torch.finfo(dtype).eps
        return max(1e-3 * mean_var, eps * eps * mean_sq) or eps * eps

    @property
    def _explicit_start(self) -> bool:
        return self.means_init is not None or self.weights_init is not None or self.covariances_init is not None

    def _warm_start(self, x: torch.Tensor, k: int, dtype: torch.dtype) -> MixtureParameters | None:
        """The previous fit's parameters when warm starting applies, else None; checks and reports the ``K'``
        rule."""
        n, d = x.shape
        previous = getattr(self, "_params", None)
        if self.warm_start and previous is not None:
            if previous.means.shape == (k, d):
                return previous.to(x.device, dtype, copy=True)
            _warn(
                f"{type(self).__name__}: warm_start ignored: the previous fit had {previous.means.shape[0]} "
                f"components in {previous.means.shape[1]} dimensions, this one has {k} in {d} "
                f"(N={n} rows, min_points_per_component={self.min_points_per_component}); starting afresh.",
                RuntimeWarning,
            )
        if self._explicit_start and k != self.n_components:
            raise ValueError(
                f"{type(self).__name__}: means_init/weights_init/covariances_init describe {self.n_components} "
                f"components but X has only {n} finite rows ({self.min_points_per_component} per component "
                "needed); pass more rows or fewer components."
            )
        if k < self.n_components:
            _warn(
                f"{type(self).__name__}: {n} rows for {self.n_components} components; fitting {k} components "
                f"(at least {self.min_points_per_component} rows each). n_components_ reports {k}.",
                RuntimeWarning,
            )
        return None

    def _seeded_start(
        self,
        x: torch.Tensor,
        k: int,
        model: CovarianceModel,
        center: torch.Tensor,
        mean_var: float,
        reg: float,
        chunk: int,
        generator: torch.Generator,
    ) -> MixtureParameters:
        """Start parameters (factorised): explicit ones where given, the rest from ``init_params`` seeding.

        May return fewer than ``k`` components when X has fewer distinct rows.
        """
        n, d = x.shape
        acc, device = center.dtype, x.device
        if self.means_init is not None:
            means = _parameter(self.means_init, (k, d), "means_init", acc, device)
        else:
            xc = x - center.to(x.dtype)
            if self.init_params == "k-means":
                seeds = kmeans(xc, k, generator, KMEANS_RUNS, KMEANS_MAX_ITER, chunk)
            elif self.init_params == "random":
                seeds = xc[torch.randperm(n, generator=generator)[:k].to(device)]
            else:
                seeds = xc[kmeans_plusplus(xc, k, generator)]
            k = seeds.shape[0]
            means = seeds.to(acc) + center
        if self.weights_init is not None:
            weights = _parameter(self.weights_init, (k,), "weights_init", acc, device)
        else:
            weights = torch.full((k,), 1.0 / k, dtype=acc, device=device)
        if self.covariances_init is not None:
            shape = (k, d, d) if self.covariance_type == "full" else (k, d)
            covariances = _parameter(self.covariances_init, shape, "covariances_init", acc, device)
        else:
            covariances = model.isotropic(k, torch.tensor(mean_var + reg, dtype=acc, device=device))
        factor, ok = model.factorize(covariances)
        if not bool(ok.all()):
            if self.covariances_init is not None:
                bad = (~ok).nonzero()[:, 0].tolist()
                raise ValueError(
                    f"{type(self).__name__}: covariances_init of component(s) {bad} is not positive definite."
                )
            covariances, factor = self._repair(model, covariances, ok, reg, mean_var)
        dofs = torch.full((k,), float(self.dof), dtype=acc, device=device)
        return MixtureParameters(weights, means, covariances, factor, dofs)

    def _repair(
        self, model: CovarianceModel, covariances: torch.Tensor, ok: torch.Tensor, reg: float, mean_var: float
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Add growing diagonal jitter to the components whose factorisation failed (with a warning)."""
        bad = ~ok
        base = max(reg, torch.finfo(covariances.dtype).eps * mean_var, torch.finfo(covariances.dtype).tiny)
        for power in range(1, 10):
            amount = bad.to(covariances.dtype) * (base * 10.0**power)
            trial = model.add_to_diagonal(covariances, amount)
            factor, trial_ok = model.factorize(trial)
            if bool(trial_ok.all()):
                _warn(
                    f"{type(self).__name__}: covariance of component(s) {bad.nonzero()[:, 0].tolist()} was not "
                    f"positive definite in {covariances.dtype}; added {base * 10.0**power:.3g} to its diagonal. "
                    "A larger reg_covar or accumulate_dtype=torch.float64 avoids this.",
                    RuntimeWarning,
                )
                return trial, factor
        raise FloatingPointError(
            f"{type(self).__name__}: covariance of component(s) {bad.nonzero()[:, 0].tolist()} stays singular after "
            f"adding up to {base * 1e9:.3g} to the diagonal; X probably holds huge values. Standardise X or pass a "
            "larger reg_covar."
        )

    def _reseed(
        self,
        params: MixtureParameters,
        model: CovarianceModel,
        small: torch.Tensor,
        log_lik: torch.Tensor,
        x: torch.Tensor,
        mean_var: float,
        reg: float,
    ) -> None:
        """Move the ``small`` components to the worst-fitted rows (in place)."""
        targets = small.nonzero()[:, 0]
        keep = (~small).to(params.weights.dtype) * params.weights
        if float(keep.sum()) <= 0:
            keep = params.weights
        shape = (keep.view(-1, *[1] * (params.covariances.ndim - 1)) * params.covariances).sum(0) / keep.sum()
        rows = torch.topk(log_lik, targets.numel(), largest=False).indices
        params.means[targets] = x[rows].to(params.means.dtype)
        params.covariances[targets] = shape
        params.weights[targets] = 1.0 / params.weights.numel()
        params.weights /= params.weights.sum()
        params.dofs[targets] = float(self.dof)
        factor, ok = model.factorize(params.covariances)
        if not bool(ok.all()):
            params.covariances, factor = self._repair(model, params.covariances, ok, reg, mean_var)
        params.factor = factor

    # ------------------------------------------------------------------ prediction
    def _check_fitted(self, x: torch.Tensor, where: str) -> None:
        if not hasattr(self, "_params"):
            raise RuntimeError(f"{type(self).__name__}.{where}: call fit() first.")
        if x.shape[1] != self.n_features_in_:
            raise ValueError(
                f"{type(self).__name__}.{where}: X has {x.shape[1]} features but the mixture was fitted on "
                f"{self.n_features_in_}."
            )

    def _evaluate(self, X: object, where: str, keep_log_resp: bool) -> tuple[EStepResult, torch.Tensor | None]:
        """E-step of the fitted parameters on the finite rows of ``X``; returns (result, finite mask or None)."""
        x = self._as_data(X, where)
        self._check_fitted(x, where)
        finite = self._finite_rows(x, where)
        if finite is not None:
            x = x[finite]
        params = self._params.to(x.device)
        ops = prepare_operands(params, self._model, self._center.to(x.device), x.dtype, self._gaussian)
        chunk = self._chunk_rows(x.shape[0], self.n_components_, self._model, x)
        result = e_step(x, ops, self._model, chunk, keep_log_resp=keep_log_resp)
        return result, finite

    def predict_proba(self, X: object) -> torch.Tensor:
        """Responsibilities ``tau_ik``, ``[N, K']`` (rows of non-finite inputs are all zero)."""
        result, finite = self._evaluate(X, "predict_proba", keep_log_resp=True)
        proba = result.log_resp.exp()
        return proba if finite is None else _scatter_rows(proba, finite, 0.0)

    def predict(self, X: object) -> torch.Tensor:
        """Most responsible component, long ``[N]`` (``-1`` for rows of non-finite inputs)."""
        result, finite = self._evaluate(X, "predict", keep_log_resp=True)
        labels = result.log_resp.argmax(1)
        return labels if finite is None else _scatter_rows(labels, finite, -1)

    def score_samples(self, X: object) -> torch.Tensor:
        """Log-likelihood ``log p(x_i)`` per row, ``[N]`` (NaN for rows of non-finite inputs)."""
        result, finite = self._evaluate(X, "score_samples", keep_log_resp=False)
        return result.log_lik if finite is None else _scatter_rows(result.log_lik, finite, math.nan)

    def score(self, X: object, y: object = None) -> float:
        """Mean log-likelihood per sample over the finite rows of ``X``."""
        result, _ = self._evaluate(X, "score", keep_log_resp=False)
        return float(result.log_lik.mean(dtype=torch.float64))

    def fit_predict(self, X: object, y: object = None) -> torch.Tensor:
        """:meth:`fit` then :meth:`predict` on the same ``X``, long ``[N]``."""
        return self.fit(X).predict(X)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(n_components={self.n_components}, covariance_type={self.covariance_type!r}, "
            f"dof={self.dof}, estimate_dof={self.estimate_dof}, shrinkage={self.shrinkage})"
        )


@dataclass
class _Run:
    """Outcome of EM from one start."""

    params: MixtureParameters
    converged: bool
    n_iter: int
    lower_bounds: list[float]
    n_reseeded: int
    reseed_below: float
    last_change: float

    @property
    def lower_bound(self) -> float:
        return self.lower_bounds[-1] if self.lower_bounds else -math.inf

    def after(self, first: _Run) -> _Run:
        """This run as the second stage of ``first`` (iterations, log-likelihoods and re-seeds of both)."""
        return _Run(self.params, self.converged, first.n_iter + self.n_iter, first.lower_bounds + self.lower_bounds,
                    first.n_reseeded + self.n_reseeded, self.reseed_below, self.last_change)


def _data_moments(x: torch.Tensor, chunk: int, acc: torch.dtype) -> tuple[torch.Tensor, float, float]:
    """Column means ``[d]`` (``acc`` dtype), mean per-feature variance and mean square of ``x``, by chunks."""
    n = x.shape[0]
    center = x.sum(0, dtype=acc) / n
    sq = torch.zeros((), dtype=acc, device=x.device)
    for start in range(0, n, chunk):
        sq += (x[start : start + chunk].to(acc) - center).square().sum()
    mean_var = float(sq) / (n * x.shape[1])
    return center, mean_var, mean_var + float(center.square().mean())


def _parameter(
    value: object, shape: Sequence[int], name: str, dtype: torch.dtype, device: torch.device
) -> torch.Tensor:
    """A user-given start parameter as a tensor of ``shape`` (error naming ``name`` otherwise)."""
    tensor = value if isinstance(value, torch.Tensor) else torch.from_numpy(np.array(value, dtype=np.float64))
    if tuple(tensor.shape) != tuple(shape):
        raise ValueError(f"{name} must have shape {tuple(shape)}, got {tuple(tensor.shape)}.")
    return tensor.to(dtype=dtype, device=device).clone()


def _scatter_rows(values: torch.Tensor, mask: torch.Tensor, fill: float) -> torch.Tensor:
    """Rows of ``values`` placed at ``mask`` in a tensor of ``len(mask)`` rows filled with ``fill``."""
    out = torch.full((mask.numel(), *values.shape[1:]), fill, dtype=values.dtype, device=values.device)
    out[mask] = values
    return out
