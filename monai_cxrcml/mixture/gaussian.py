"""Gaussian mixture: the ``nu -> infinity`` limit of :class:`~monai_cxrcml.mixture.StudentTMixture`.

Same estimator, same EM loop: every ``u_ik = 1`` and the component log density is Gaussian. Kept as a class so
configurations can name it and so that ``dof``/``estimate_dof`` cannot be set by mistake.
"""

from __future__ import annotations

import torch

from .student_t import StudentTMixture

__all__ = ["GaussianMixture"]


class GaussianMixture(StudentTMixture):
    """Mixture of ``K`` Gaussians fitted by EM on the data's device; ``StudentTMixture(dof=float("inf"))``.

    Parameters are those of :class:`StudentTMixture` without ``dof``, ``estimate_dof`` and ``max_dof``;
    ``dofs_`` is ``inf`` for every component.
    """

    def __init__(
        self,
        n_components: int = 40,
        *,
        covariance_type: str = "full",
        tol: float = 1e-3,
        max_iter: int = 100,
        reg_covar: float | str = "auto",
        shrinkage: float = 0.0,
        init_params: str = "k-means",
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
        super().__init__(
            n_components,
            covariance_type=covariance_type,
            dof=float("inf"),
            estimate_dof=False,
            tol=tol,
            max_iter=max_iter,
            reg_covar=reg_covar,
            shrinkage=shrinkage,
            init_params=init_params,
            n_init=n_init,
            means_init=means_init,
            weights_init=weights_init,
            covariances_init=covariances_init,
            warm_start=warm_start,
            random_state=random_state,
            chunk_size=chunk_size,
            accumulate_dtype=accumulate_dtype,
            min_points_per_component=min_points_per_component,
            device=device,
            verbose=verbose,
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}(n_components={self.n_components}, covariance_type={self.covariance_type!r})"
