"""The Gaussian limit (monai_cxrcml.mixture.GaussianMixture) against scikit-learn's GaussianMixture."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from _mixture_data import quiet_fit, start_parameters
from sklearn.exceptions import ConvergenceWarning

from monai_cxrcml.mixture import GaussianMixture, StudentTMixture


@pytest.mark.parametrize("covariance_type", ["full", "diag"])
def test_gaussian_limit_matches_sklearn(small_t, covariance_type):
    from sklearn.mixture import GaussianMixture as SklearnGaussianMixture

    x, _ = small_t
    means0, covs0, weights0 = start_parameters(x, 3)
    if covariance_type == "diag":
        covs0 = np.diagonal(covs0, axis1=1, axis2=2).copy()
    start = dict(means_init=means0, weights_init=weights0)
    reference = SklearnGaussianMixture(
        3, covariance_type=covariance_type, tol=0.0, max_iter=20, reg_covar=1e-6, precisions_init=1 / covs0
        if covariance_type == "diag" else np.linalg.inv(covs0), **start,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        reference.fit(x)
    common = dict(covariance_type=covariance_type, tol=0.0, max_iter=20, reg_covar=1e-6, covariances_init=covs0)
    gaussian = quiet_fit(GaussianMixture(3, **common, **start), x)
    np.testing.assert_allclose(gaussian.lower_bounds_, reference.lower_bounds_, rtol=0, atol=1e-9)
    np.testing.assert_allclose(gaussian.means_.numpy(), reference.means_, atol=1e-8)
    np.testing.assert_allclose(gaussian.covariances_.numpy(), reference.covariances_, atol=1e-8)
    assert torch.isinf(gaussian.dofs_).all()
    # a Student-t mixture with a huge fixed nu approaches the Gaussian one (per-sample log-likelihood)
    heavy = quiet_fit(StudentTMixture(3, dof=1e7, **common, **start), x)
    np.testing.assert_allclose(heavy.lower_bounds_, reference.lower_bounds_, rtol=0, atol=1e-3)


def test_gaussian_mixture_has_no_degrees_of_freedom_to_set():
    model = GaussianMixture(3, covariance_type="diag")
    assert set(StudentTMixture().get_params()) - set(model.get_params()) == {
        "dof", "estimate_dof", "max_dof", "gaussian_start"}
    assert repr(model) == "GaussianMixture(covariance_type='diag', n_components=3)"
    with pytest.raises(TypeError, match="dof"):
        GaussianMixture(3, dof=4.0)
    with pytest.raises(ValueError, match="Invalid parameter 'dof'"):
        model.set_params(dof=4.0)
    x = torch.randn(200, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert torch.isinf(model.fit(x).dofs_).all()
