"""Mixture of multivariate Student-t distributions (CXR-CML's clusters: ``K = 40``, ``nu = 4``), fitted by EM in torch.

Rows ``[N, d]`` on any device; see :class:`~monai_cxrcml.mixture.base.BaseMixture` for the shared parameters, the
fitted attributes and prediction. Why the defaults are what they are: docs/design.md, "Student-t mixture EM".
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ._fit_context import ComponentDensity
from .base import BaseMixture, ParameterCheck

__all__ = ["StudentTMixture"]


@dataclass(repr=False, eq=False, kw_only=True)
class StudentTMixture(BaseMixture):
    """Mixture of ``K`` multivariate Student-t distributions, fitted by EM on the data's device.

    Parameters
    ----------
    dof
        Degrees of freedom ``nu`` of every component (CXR-CML: 4), or the start value when ``estimate_dof``.
        ``float("inf")`` gives a Gaussian mixture.
    estimate_dof
        Estimate ``nu_k`` per component (ECM step, bisection in ``log nu`` on ``[1, max_dof]``).
    max_dof
        Cap of estimated ``nu`` (near-Gaussian components drift towards infinity; 100 is already close to
        Gaussian for the tails that matter).
    gaussian_start
        Fit a Gaussian mixture from each start first and refine it with Student-t EM (the paper's "GMM
        refined by Student-t"); ignored for warm starts and for ``dof = inf``. ``n_iter_`` and
        ``lower_bounds_`` then cover both stages.
    **base
        ``n_components`` (positional) and every other parameter of
        :class:`~monai_cxrcml.mixture.base.BaseMixture`.

    Examples
    --------
    >>> mix = StudentTMixture(n_components=40, dof=4.0, random_state=0).fit(embeddings)  # doctest: +SKIP
    >>> pseudo_labels = mix.predict(embeddings)  # long [N], -1 for non-finite rows  # doctest: +SKIP
    """

    dof: float = 4.0
    estimate_dof: bool = False
    max_dof: float = 100.0
    gaussian_start: bool = False

    def _parameter_checks(self, p: Mapping[str, Any]) -> list[ParameterCheck]:
        return [
            *super()._parameter_checks(p),
            (float(p["dof"]) >= 1.0, "dof", "a float >= 1 (or float('inf') for a Gaussian mixture)"),
            (not (p["estimate_dof"] and math.isinf(p["dof"])), "estimate_dof", "False when dof is infinite"),
            (math.isfinite(p["max_dof"]) and p["max_dof"] > 1.0, "max_dof", "a finite float > 1"),
            (isinstance(p["gaussian_start"], bool), "gaussian_start", "True or False"),
        ]

    def _component_density(self) -> ComponentDensity:
        return ComponentDensity(float(self.dof), self.estimate_dof, self.max_dof, self.gaussian_start)
