"""Choosing the number of components (monai_cxrcml.mixture.selection)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from monai_cxrcml.mixture import StudentTMixture, bic, n_parameters, select_n_components


def test_component_selection_finds_the_true_number_of_clusters():
    gen = torch.Generator().manual_seed(0)
    centres = torch.randn(4, 5, generator=gen, dtype=torch.float64) * 8
    x = (centres.repeat_interleave(150, 0) + torch.randn(600, 5, generator=gen, dtype=torch.float64))
    template = StudentTMixture(n_components=2, covariance_type="diag", random_state=0)
    for criterion in ("bic", "heldout"):
        best, scores = select_n_components(x, template, [2, 4, 8], criterion)
        assert best == 4, (criterion, scores)
    fitted = StudentTMixture(n_components=4, covariance_type="full", random_state=0).fit(x)
    assert n_parameters(fitted) == 3 + 4 * 5 + 4 * 15
    assert bic(fitted, x) == pytest.approx(-2 * fitted.score(x) * 600 + n_parameters(fitted) * np.log(600))
    assert template.n_components == 2  # the template is not changed
