"""Gaussian mixture fitted by EM in torch: the ``nu -> infinity`` limit of the Student-t mixture.

Same EM loop with every ``u_ik = 1`` and a Gaussian component log density; rows ``[N, d]`` on any device. It has
the parameters of :class:`~monai_cxrcml.mixture.base.BaseMixture` and no ``dof``, so none can be set by mistake.
"""

from __future__ import annotations

import math

from ._fit_context import ComponentDensity
from .base import BaseMixture

__all__ = ["GaussianMixture"]


class GaussianMixture(BaseMixture):
    """Mixture of ``K`` Gaussians fitted by EM on the data's device; ``StudentTMixture(dof=float("inf"))``.

    Parameters are those of :class:`~monai_cxrcml.mixture.base.BaseMixture`; ``dofs_`` is ``inf`` for every
    component.
    """

    def _component_density(self) -> ComponentDensity:
        return ComponentDensity(math.inf)
