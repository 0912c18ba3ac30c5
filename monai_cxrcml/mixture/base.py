"""Base class of the mixture estimators: shared parameters, the fit (starts, EM, fitted attributes) and prediction.

A fit takes ``X`` ``[N, d]`` (torch tensor on any device, or array-like) and runs on the data's device; the fitted
parameters are ``weights_`` ``[K']``, ``means_`` ``[K', d]``, ``covariances_`` ``[K', d, d]`` (full) or ``[K', d]``
(diag) and ``dofs_`` ``[K']``. Subclasses say which component density EM fits (:class:`StudentTMixture`,
:class:`GaussianMixture`). The estimator API is scikit-learn's (``get_params``/``set_params``, ``sklearn.base.clone``,
``fit`` never changes a parameter). Why the defaults are what they are: docs/design.md, "Student-t mixture EM".
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import KW_ONLY, dataclass
from typing import Any

import torch
from sklearn.base import BaseEstimator
from sklearn.exceptions import ConvergenceWarning

from ._covariance import CovariancePrior, covariance_model
from ._em import EStepResult, MixtureParameters, e_step, prepare_operands
from ._em_loop import EMRun, fit_from_start
from ._fit_context import ComponentDensity, FitContext, chunk_rows, data_moments, regulariser
from ._initialisation import seeded_start
from ._rows import as_rows, finite_rows, scatter_rows
from ._warnings import warn

__all__ = ["BaseMixture"]

ParameterCheck = tuple[bool, str, str]
"""``(holds, parameter, what it must be)``."""


@dataclass(repr=False, eq=False)
class BaseMixture(BaseEstimator, ABC):
    """Mixture of ``K`` elliptical components fitted by EM on the data's device.

    Parameters
    ----------
    n_components
        Number of components ``K`` (CXR-CML: 40).
    covariance_type
        ``"full"`` (``[K, d, d]`` scale matrices) or ``"diag"`` (``[K, d]`` variances).
    tol
        Convergence threshold on the change of the mean log-likelihood per sample between iterations.
    max_iter
        Maximum EM iterations; ``0`` only initialises.
    reg_covar
        Added to every covariance diagonal: a float, or ``"auto"`` (``1e-3 x min(1, d K / N) x`` the mean
        per-feature variance of X). The value used is ``reg_covar_``.
    shrinkage
        Pseudo-points ``kappa >= 0`` of an inverse-Wishart prior centred on the data covariance (0 = maximum
        likelihood).
    init_params
        ``"k-means"`` (:func:`~monai_cxrcml.mixture.kmeans.kmeans`: the best of 5 short k-means runs on a
        subsample, refined on all rows), ``"k-means++"`` (seeds only) or ``"random"`` (rows).
    n_init
        Number of seeded starts; the fit with the highest final log-likelihood is kept (ignored for warm and
        explicit starts).
    means_init, weights_init, covariances_init
        Explicit start (array-likes ``[K, d]``, ``[K]``, ``[K, d, d]``/``[K, d]``), overriding ``init_params``
        for what they give. Needs ``N >= K x min_points_per_component`` rows.
    warm_start
        Start a repeated :meth:`fit` from the previous fit's parameters.
    random_state
        Seed (int) or ``torch.Generator`` (CPU) for the initialisation; same seed, same fit.
    chunk_size
        Rows per E-step block; ``None`` keeps a block's intermediates near 8 MiB (CPU) or 1 GiB (CUDA). Nothing
        of size ``[N, K, d]`` is ever formed.
    accumulate_dtype
        Dtype of the sufficient statistics and of the parameters; ``None`` = the data's dtype. The E-step runs in
        the data's dtype (float32 or float64; other dtypes are cast to float32).
    min_points_per_component
        At most ``N // min_points_per_component`` components are fitted (per-batch fits).
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
        ``K'``, the number of components actually fitted (fewer than ``K`` for few or duplicated rows).
    converged_, n_iter_, lower_bound_, lower_bounds_
        As scikit-learn: ``lower_bounds_[i]`` is the mean log-likelihood per sample of the parameters entering
        iteration ``i + 1``; ``lower_bound_`` the last of them.
    reg_covar_, n_reseeded_, n_features_in_
        Regulariser used, components re-seeded during the last fit, feature count.
    """

    n_components: int = 40
    _: KW_ONLY
    covariance_type: str = "full"
    tol: float = 1e-3
    max_iter: int = 100
    reg_covar: float | str = "auto"
    shrinkage: float = 0.0
    init_params: str = "k-means"
    n_init: int = 1
    means_init: object | None = None
    weights_init: object | None = None
    covariances_init: object | None = None
    warm_start: bool = False
    random_state: int | torch.Generator | None = None
    chunk_size: int | None = None
    accumulate_dtype: torch.dtype | None = torch.float64
    min_points_per_component: int = 2
    device: str | torch.device | None = None
    verbose: bool = False

    def __post_init__(self) -> None:
        self._validate(self.get_params(deep=False))

    @abstractmethod
    def _component_density(self) -> ComponentDensity:
        """The component family this estimator fits."""

    # ------------------------------------------------------------------ parameters
    def _parameter_checks(self, p: Mapping[str, Any]) -> list[ParameterCheck]:
        """Checks of the shared parameters in ``p``; subclasses add theirs."""
        return [
            (isinstance(p["n_components"], int) and p["n_components"] >= 1, "n_components", "an int >= 1"),
            (p["covariance_type"] in ("full", "diag"), "covariance_type", "'full' or 'diag'"),
            (p["tol"] >= 0, "tol", "a float >= 0"),
            (isinstance(p["max_iter"], int) and p["max_iter"] >= 0, "max_iter", "an int >= 0"),
            (p["reg_covar"] == "auto" or (not isinstance(p["reg_covar"], str) and p["reg_covar"] >= 0),
             "reg_covar", "'auto' or a float >= 0"),
            (not isinstance(p["shrinkage"], str) and p["shrinkage"] >= 0, "shrinkage", "a float >= 0"),
            (p["init_params"] in ("k-means++", "k-means", "random"), "init_params",
             "'k-means++', 'k-means' or 'random'"),
            (isinstance(p["n_init"], int) and p["n_init"] >= 1, "n_init", "an int >= 1"),
            (p["chunk_size"] is None or (isinstance(p["chunk_size"], int) and p["chunk_size"] >= 1), "chunk_size",
             "None or an int >= 1"),
            (p["accumulate_dtype"] in (None, torch.float32, torch.float64), "accumulate_dtype",
             "None, torch.float32 or torch.float64"),
            (isinstance(p["min_points_per_component"], int) and p["min_points_per_component"] >= 1,
             "min_points_per_component", "an int >= 1"),
        ]

    def _validate(self, p: Mapping[str, Any]) -> None:
        """Raise a ValueError naming the first parameter of ``p`` that fails its check."""
        for ok, param, expected in self._parameter_checks(p):
            if not ok:
                raise ValueError(f"{type(self).__name__}({param}={p[param]!r}): {param} must be {expected}.")

    def set_params(self, **params: Any) -> BaseMixture:
        """Set parameters (scikit-learn's ``set_params``); the new values are checked before any is set."""
        if set(params) <= set(self._get_param_names()):
            self._validate({**self.get_params(deep=False), **params})
        return super().set_params(**params)  # unknown names: scikit-learn's error listing the valid ones

    # ------------------------------------------------------------------ fitting
    def fit(self, X: object, y: object = None) -> BaseMixture:
        """Fit the mixture to ``X`` ``[N, d]`` (torch tensor on any device, or array-like) by EM; ``y`` is ignored.

        Returns ``self``. Rows holding NaN or inf are left out with a warning.
        """
        self._validate(self.get_params(deep=False))
        with torch.no_grad():
            x = as_rows(X, type(self).__name__, "fit", self.device)
            finite = finite_rows(x, type(self).__name__, "fit")
            if finite is not None:
                x = x[finite]
            k = max(1, min(self.n_components, x.shape[0] // self.min_points_per_component))
            ctx = self._fit_context(x, k)
            warm = self._warm_parameters(ctx, k)
            generator = self._generator()
            best = None
            for _ in range(1 if warm is not None or ctx.explicit_start else self.n_init):
                start = warm if warm is not None else seeded_start(ctx, k, generator)
                run = fit_from_start(ctx, start, warm=warm is not None)
                if best is None or run.lower_bound > best.lower_bound:
                    best = run
            if warm is None and not ctx.explicit_start and best.converged:
                best = self._refine(ctx, best)
            self._store(best, ctx, k)
        return self

    def _refine(self, ctx: FitContext, run: EMRun) -> EMRun:
        """Improve the best run of the seeded starts once EM has converged (after warm or explicit starts, or an
        unconverged run, EM alone decides); the base class keeps it as it is."""
        return run

    def _fit_context(self, x: torch.Tensor, k: int) -> FitContext:
        """The data's constants and this estimator's settings for a fit of ``k`` components to ``x`` ``[N, d]``."""
        acc = self.accumulate_dtype or x.dtype
        model = covariance_model(self.covariance_type, x.shape[1])
        chunk = chunk_rows(self.chunk_size, k, model, x)
        center, mean_var, mean_sq = data_moments(x, chunk, acc)
        reg = regulariser(self.reg_covar, x, k, mean_var, mean_sq)
        prior = None
        if self.shrinkage > 0:
            prior = CovariancePrior(float(self.shrinkage), model.data_scale(x, center, chunk))
        return FitContext(
            x=x, model=model, center=center, mean_var=mean_var, reg=reg, chunk=chunk, prior=prior,
            density=self._component_density(), tol=self.tol, max_iter=self.max_iter, verbose=self.verbose,
            init_params=self.init_params, means_init=self.means_init, weights_init=self.weights_init,
            covariances_init=self.covariances_init, owner=type(self).__name__,
        )

    def _warm_parameters(self, ctx: FitContext, k: int) -> MixtureParameters | None:
        """The previous fit's parameters when warm starting applies, else None; checks and reports the ``K'`` rule."""
        n, d = ctx.x.shape
        previous = getattr(self, "_params", None)
        if self.warm_start and previous is not None:
            if previous.means.shape == (k, d):
                return previous.to(ctx.x.device, ctx.center.dtype, copy=True)
            warn(
                f"{ctx.owner}: warm_start ignored: the previous fit had {previous.means.shape[0]} components in "
                f"{previous.means.shape[1]} dimensions, this one has {k} in {d} (N={n} rows, "
                f"min_points_per_component={self.min_points_per_component}); starting afresh.",
                RuntimeWarning,
            )
        if ctx.explicit_start and k != self.n_components:
            raise ValueError(
                f"{ctx.owner}: means_init/weights_init/covariances_init describe {self.n_components} components but X "
                f"has only {n} finite rows ({self.min_points_per_component} per component needed); pass more rows or "
                "fewer components."
            )
        if k < self.n_components:
            warn(
                f"{ctx.owner}: {n} rows for {self.n_components} components; fitting {k} components (at least "
                f"{self.min_points_per_component} rows each). n_components_ reports {k}.",
                RuntimeWarning,
            )
        return None

    def _generator(self) -> torch.Generator:
        if isinstance(self.random_state, torch.Generator):
            return self.random_state
        generator = torch.Generator()
        if self.random_state is None:
            generator.seed()
        else:
            generator.manual_seed(int(self.random_state))
        return generator

    def _store(self, run: EMRun, ctx: FitContext, k: int) -> None:
        """Set the fitted attributes from the chosen run and warn about what happened in it."""
        k_fitted = run.params.means.shape[0]
        if k_fitted < k:
            warn(
                f"{ctx.owner}: X has only {k_fitted} distinct rows; fitted {k_fitted} components instead of {k}. "
                f"n_components_ reports {k_fitted}.",
                RuntimeWarning,
            )
        if self.max_iter > 0 and not run.converged:
            warn(
                f"{ctx.owner}: EM did not converge in max_iter={self.max_iter} iterations (last change of the mean "
                f"log-likelihood {run.last_change:.3e}, tol={self.tol}); increase max_iter or tol.",
                ConvergenceWarning,
            )
        if run.n_reseeded:
            warn(
                f"{ctx.owner}: {run.n_reseeded} component(s) held fewer than {run.reseed_below:.3g} points and were "
                "re-seeded at the worst-fitted rows; consider fewer components.",
                RuntimeWarning,
            )
        self._set_fitted(run, ctx.center, ctx.reg)

    def _set_fitted(self, run: EMRun, center: torch.Tensor, reg: float) -> None:
        params = run.params
        self._params, self._center = params, center
        self._model = covariance_model(self.covariance_type, params.means.shape[1])
        self.weights_, self.means_, self.covariances_, self.dofs_ = (
            params.weights, params.means, params.covariances, params.dofs
        )
        self.precisions_cholesky_ = self._model.precisions_cholesky(params.factor)
        self.n_components_, self.n_features_in_ = params.means.shape
        self.converged_, self.n_iter_ = run.converged, run.n_iter
        self.lower_bounds_ = run.lower_bounds
        self.lower_bound_ = run.lower_bound
        self.reg_covar_, self.n_reseeded_ = reg, run.n_reseeded

    # ------------------------------------------------------------------ checkpoints
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
        run = EMRun(params, bool(state["converged"]), int(state["n_iter"]), list(state["lower_bounds"]),
                    int(state["n_reseeded"]), math.nan, math.nan)
        self._set_fitted(run, state["center"], float(state["reg_covar"]))

    # ------------------------------------------------------------------ prediction
    def _evaluate(self, X: object, where: str, keep_log_resp: bool) -> tuple[EStepResult, torch.Tensor | None]:
        """E-step of the fitted parameters on the finite rows of ``X``; returns (result, finite mask or None)."""
        owner = type(self).__name__
        x = as_rows(X, owner, where, self.device)
        if not hasattr(self, "_params"):
            raise RuntimeError(f"{owner}.{where}: call fit() first.")
        if x.shape[1] != self.n_features_in_:
            raise ValueError(
                f"{owner}.{where}: X has {x.shape[1]} features but the mixture was fitted on {self.n_features_in_}."
            )
        finite = finite_rows(x, owner, where)
        if finite is not None:
            x = x[finite]
        params = self._params.to(x.device)
        gaussian = self._component_density().gaussian
        ops = prepare_operands(params, self._model, self._center.to(x.device), x.dtype, gaussian)
        chunk = chunk_rows(self.chunk_size, self.n_components_, self._model, x)
        return e_step(x, ops, self._model, chunk, keep_log_resp=keep_log_resp), finite

    def predict_proba(self, X: object) -> torch.Tensor:
        """Responsibilities ``tau_ik``, ``[N, K']`` (rows of non-finite inputs are all zero)."""
        result, finite = self._evaluate(X, "predict_proba", keep_log_resp=True)
        proba = result.log_resp.exp()
        return proba if finite is None else scatter_rows(proba, finite, 0.0)

    def predict(self, X: object) -> torch.Tensor:
        """Most responsible component, long ``[N]`` (``-1`` for rows of non-finite inputs)."""
        result, finite = self._evaluate(X, "predict", keep_log_resp=True)
        labels = result.log_resp.argmax(1)
        return labels if finite is None else scatter_rows(labels, finite, -1)

    def score_samples(self, X: object) -> torch.Tensor:
        """Log-likelihood ``log p(x_i)`` per row, ``[N]`` (NaN for rows of non-finite inputs)."""
        result, finite = self._evaluate(X, "score_samples", keep_log_resp=False)
        return result.log_lik if finite is None else scatter_rows(result.log_lik, finite, math.nan)

    def score(self, X: object, y: object = None) -> float:
        """Mean log-likelihood per sample over the finite rows of ``X``."""
        result, _ = self._evaluate(X, "score", keep_log_resp=False)
        return float(result.log_lik.mean(dtype=torch.float64))

    def fit_predict(self, X: object, y: object = None) -> torch.Tensor:
        """:meth:`fit` then :meth:`predict` on the same ``X``, long ``[N]``."""
        return self.fit(X).predict(X)
