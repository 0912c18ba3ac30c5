"""Gaussian mixture fitted by EM in torch: the ``nu -> infinity`` limit of the Student-t mixture, plus split-and-merge.

Same EM loop with every ``u_ik = 1`` and a Gaussian component log density; rows ``[N, d]`` on any device. It has
the parameters of :class:`~monai_cxrcml.mixture.base.BaseMixture` and no ``dof``, so none can be set by mistake;
``split_merge_moves`` adds the moves of ``_split_merge.py`` after EM from a seeded start.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ._em_loop import EMRun
from ._fit_context import ComponentDensity, FitContext
from ._split_merge import split_merge
from .base import BaseMixture, ParameterCheck

__all__ = ["GaussianMixture"]


@dataclass(repr=False, eq=False, kw_only=True)
class GaussianMixture(BaseMixture):
    """Mixture of ``K`` Gaussians fitted by EM on the data's device.

    EM is that of ``StudentTMixture(dof=float("inf"))``; ``dofs_`` is ``inf`` for every component.

    Parameters
    ----------
    split_merge_moves
        After EM from a seeded start has converged, try at most this many split-and-merge moves (merge two
        components, split a third into a core and a tail, EM again, keep if the log-likelihood rose); 0 = plain
        EM, as ``StudentTMixture(dof=float("inf"))``. Not applied after warm or explicit starts.
    **base
        ``n_components`` (positional) and every other parameter of
        :class:`~monai_cxrcml.mixture.base.BaseMixture`.
    """

    split_merge_moves: int = 1

    def _parameter_checks(self, p: Mapping[str, Any]) -> list[ParameterCheck]:
        return [
            *super()._parameter_checks(p),
            (isinstance(p["split_merge_moves"], int) and p["split_merge_moves"] >= 0, "split_merge_moves",
             "an int >= 0"),
        ]

    def _component_density(self) -> ComponentDensity:
        return ComponentDensity(math.inf)

    def _refine(self, ctx: FitContext, run: EMRun) -> EMRun:
        return split_merge(ctx, run, self.split_merge_moves)
