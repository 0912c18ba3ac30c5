"""Student-t mixture EM (monai_cxrcml.mixture.StudentTMixture) against scipy, studenttmixture and scikit-learn."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from _mixture_data import quiet_fit, start_parameters, t_mixture
from scipy.special import logsumexp
from scipy.stats import multivariate_t
from sklearn.metrics import adjusted_rand_score

from monai_cxrcml.mixture import GaussianMixture, StudentTMixture


@pytest.mark.parametrize("covariance_type", ["full", "diag"])
@pytest.mark.parametrize("d", [3, 64])
def test_log_density_matches_scipy(covariance_type, d):
    rng = np.random.default_rng(d)
    x = rng.normal(size=(200, d))
    means = rng.normal(size=(2, d))
    a = rng.normal(size=(2, d, d)) / np.sqrt(d)
    covs = a @ a.transpose(0, 2, 1) + 0.5 * np.eye(d)
    if covariance_type == "diag":
        covs = covs * np.eye(d)
    weights = np.array([0.3, 0.7])
    model = StudentTMixture(
        2, covariance_type=covariance_type, dof=4.0, max_iter=0, means_init=means, weights_init=weights,
        covariances_init=covs if covariance_type == "full" else np.diagonal(covs, axis1=1, axis2=2),
    ).fit(x)
    log_pdf = np.stack([multivariate_t.logpdf(x, means[k], covs[k], df=4.0) for k in range(2)], 1)
    expected = logsumexp(log_pdf + np.log(weights), axis=1)
    np.testing.assert_allclose(model.score_samples(x).numpy(), expected, rtol=0, atol=1e-9)


@pytest.mark.parametrize("estimate_dof", [False, True])
def test_matches_studenttmixture_from_same_start(small_t, estimate_dof):
    studenttmixture = pytest.importorskip("studenttmixture")
    x, _ = small_t
    means0, covs0, weights0 = start_parameters(x, 3)
    reference = studenttmixture.EMStudentMixture(
        n_components=3, tol=1e-300, reg_covar=1e-6, max_iter=15, df=4.0, fixed_df=not estimate_dof, init_type="k++"
    )
    chol0 = np.linalg.cholesky(covs0)
    # studenttmixture has no public way to pass a start: replace its initialiser (scales are [d, d, K] there)
    reference.initialize_params = lambda *_: (
        means0.copy(), covs0.transpose(1, 2, 0).copy(), weights0.copy(), chol0.transpose(1, 2, 0).copy()
    )
    bound, _, loc, scale, weights, dofs, _ = reference.fitting_restart(x, 0)
    ours = quiet_fit(
        StudentTMixture(
            3, dof=4.0, estimate_dof=estimate_dof, max_dof=1e3, tol=0.0, max_iter=15, reg_covar=1e-6,
            means_init=means0, covariances_init=covs0, weights_init=weights0,
        ),
        x,
    )
    np.testing.assert_allclose(ours.means_.numpy(), loc, atol=1e-6)
    np.testing.assert_allclose(ours.covariances_.numpy(), scale.transpose(2, 0, 1), atol=1e-6)
    np.testing.assert_allclose(ours.weights_.numpy(), weights, atol=1e-6)
    np.testing.assert_allclose(ours.dofs_.numpy(), dofs, atol=1e-6)
    assert abs(ours.lower_bound_ - bound) < 1e-6
    if estimate_dof:
        assert not np.allclose(dofs, 4.0)  # the test really exercised the nu update


@pytest.mark.parametrize("covariance_type", ["full", "diag"])
@pytest.mark.parametrize("dof, estimate_dof", [(4.0, False), (float("inf"), False), (4.0, True)])
def test_log_likelihood_never_decreases(covariance_type, dof, estimate_dof):
    x, _ = t_mixture(1500, 6, 4, nu=4.0, separation=2.0, seed=3)
    model = quiet_fit(
        StudentTMixture(
            4, covariance_type=covariance_type, dof=dof, estimate_dof=estimate_dof, tol=0.0, max_iter=40,
            random_state=0,
        ),
        x,
    )
    assert model.n_reseeded_ == 0
    steps = np.diff(model.lower_bounds_)
    # the nu update (ECM) next to the covariance regulariser may cost ~1e-7 per sample near convergence
    assert steps.min() > (-1e-6 if estimate_dof else -1e-9), steps.min()


@pytest.mark.parametrize("init_params", ["k-means", "k-means++", "random"])
def test_recovers_well_separated_t_clusters(init_params):
    x, labels = t_mixture(2000, 8, 4, nu=4.0, separation=4.0, seed=1)
    x32 = torch.tensor(x, dtype=torch.float32)
    model = StudentTMixture(4, init_params=init_params, random_state=0).fit(x32)
    assert model.converged_
    assert adjusted_rand_score(labels, model.predict(x32).numpy()) >= 0.9
    assert model.predict_proba(x32).shape == (2000, 4)
    assert torch.equal(model.fit_predict(x32), model.predict(x32))
    # the float32 E-step (float64 statistics) lands where a float64 fit does
    model64 = StudentTMixture(4, init_params=init_params, random_state=0).fit(x)
    assert abs(model.score(x) - model64.score(x)) < 1e-3


def test_more_starts_never_end_lower():
    x, _ = t_mixture(1500, 6, 6, nu=4.0, separation=1.5, seed=8)
    for seed in range(3):
        one = StudentTMixture(6, random_state=seed).fit(x)
        three = StudentTMixture(6, random_state=seed, n_init=3).fit(x)
        assert three.lower_bound_ >= one.lower_bound_  # the first start is the same, the best one is kept


def test_diag_and_full_agree_on_diagonal_data():
    x, labels = t_mixture(3000, 5, 3, nu=6.0, separation=4.0, seed=2, diagonal=True)
    full = StudentTMixture(3, covariance_type="full", dof=6.0, random_state=0).fit(x)
    diag = StudentTMixture(3, covariance_type="diag", dof=6.0, random_state=0).fit(x)
    assert adjusted_rand_score(full.predict(x).numpy(), diag.predict(x).numpy()) > 0.99
    order = [int(torch.cdist(full.means_[k : k + 1], diag.means_).argmin()) for k in range(3)]
    np.testing.assert_allclose(full.means_.numpy(), diag.means_[order].numpy(), atol=0.1)
    full_var = torch.diagonal(full.covariances_, dim1=1, dim2=2)
    np.testing.assert_allclose(full_var.numpy(), diag.covariances_[order].numpy(), rtol=0.1)
    assert abs(full.score(x) - diag.score(x)) < 0.02


@pytest.mark.parametrize("covariance_type", ["full", "diag"])
def test_shrinkage_is_the_map_update_towards_the_data_covariance(small_t, covariance_type):
    """One EM step from a common start: S_k = (sum_i tau_ik u_ik (x_i - mu_k)(x_i - mu_k)^T + kappa Psi) /
    (W_k + kappa) + reg I, Psi the data covariance; kappa = 0 is the maximum-likelihood step."""
    x, _ = small_t
    means, covs, weights = start_parameters(x, 3)
    if covariance_type == "diag":
        covs = np.stack([np.diag(c) for c in covs])
    start = dict(means_init=means, covariances_init=covs, weights_init=weights, covariance_type=covariance_type,
                 dof=5.0, reg_covar=1e-4, random_state=0)
    at_start = quiet_fit(StudentTMixture(3, max_iter=0, **start), x)
    tau = at_start.predict_proba(x).numpy()
    chol = np.linalg.cholesky(covs if covariance_type == "full" else np.stack([np.diag(c) for c in covs]))
    delta = np.stack([np.sum(np.linalg.solve(chol[k], (x - means[k]).T) ** 2, 0) for k in range(3)], 1)
    w = tau * (5.0 + x.shape[1]) / (5.0 + delta)
    for kappa in (0.0, 7.0):
        fitted = quiet_fit(StudentTMixture(3, max_iter=1, shrinkage=kappa, **start), x)
        mu = (w.T @ x) / w.sum(0)[:, None]
        np.testing.assert_allclose(fitted.means_.numpy(), mu, rtol=1e-6, atol=1e-8)
        psi = np.cov(x, rowvar=False, bias=True)
        for k in range(3):
            z = x - mu[k]
            scatter = (w[:, k, None] * z).T @ z
            expected = (scatter + kappa * psi) / (w[:, k].sum() + kappa) + 1e-4 * np.eye(x.shape[1])
            got = fitted.covariances_[k].numpy()
            np.testing.assert_allclose(got, expected if covariance_type == "full" else np.diag(expected), rtol=1e-6)
    with pytest.raises(ValueError, match="shrinkage"):
        StudentTMixture(3, shrinkage=-1.0)


def test_estimated_dof_recovers_nu_and_caps_on_gaussian_data():
    x, _ = t_mixture(6000, 3, 2, nu=5.0, separation=8.0, seed=4)
    model = StudentTMixture(2, estimate_dof=True, dof=20.0, random_state=0, tol=1e-6, max_iter=300).fit(x)
    assert ((model.dofs_ > 3.5) & (model.dofs_ < 7.5)).all(), model.dofs_
    gauss, _ = t_mixture(6000, 3, 2, nu=float("inf"), separation=8.0, seed=4)
    # the ML estimate on these Gaussian samples is 75-220 (and drifts slowly there): the cap must hold it. tol=0 runs
    # all 20 iterations, so nu has drifted past 30 whenever EM stops (with tol=1e-3 it may stop while nu < 30)
    model = quiet_fit(StudentTMixture(2, estimate_dof=True, dof=29.0, max_dof=30.0, random_state=0, max_iter=20,
                                      tol=0.0), gauss)
    np.testing.assert_allclose(model.dofs_.numpy(), 30.0, rtol=1e-6)


@pytest.mark.parametrize("covariance_type", ["full", "diag"])
def test_gaussian_start_is_student_t_em_from_the_fitted_gaussian_mixture(small_t, covariance_type):
    """The paper's "GMM refined by Student-t": a Gaussian fit from the seeded start, then t EM from its parameters."""
    x, _ = small_t
    # the Gaussian stage is EM alone, without GaussianMixture's split-and-merge moves
    gmm = GaussianMixture(3, covariance_type=covariance_type, tol=1e-6, random_state=3, split_merge_moves=0).fit(x)
    refined = StudentTMixture(3, covariance_type=covariance_type, dof=4.0, tol=1e-6, random_state=3,
                              gaussian_start=True).fit(x)
    from_gmm = StudentTMixture(3, covariance_type=covariance_type, dof=4.0, tol=1e-6, means_init=gmm.means_,
                               weights_init=gmm.weights_, covariances_init=gmm.covariances_).fit(x)
    for name in ("means_", "covariances_", "weights_"):
        np.testing.assert_allclose(getattr(refined, name).numpy(), getattr(from_gmm, name).numpy(), rtol=1e-10)
    assert refined.n_iter_ == gmm.n_iter_ + from_gmm.n_iter_
    assert refined.lower_bounds_ == gmm.lower_bounds_ + from_gmm.lower_bounds_
    assert torch.equal(refined.dofs_, torch.full((3,), 4.0, dtype=torch.float64))
    plain = StudentTMixture(3, covariance_type=covariance_type, dof=4.0, tol=1e-6, random_state=3).fit(x)
    assert not torch.equal(plain.means_, refined.means_)


def test_empty_component_is_reseeded(small_t):
    x, _ = small_t
    means0 = np.concatenate([x[[0, 300]], np.full((1, 4), 1e3)])  # third component far from every row
    with pytest.warns(RuntimeWarning, match="re-seeded"):
        model = StudentTMixture(3, means_init=means0, random_state=0).fit(x)
    assert model.n_reseeded_ >= 1
    assert (model.weights_ * len(x) >= 1.5).all()  # every component holds data again
    assert model.means_.abs().max() < np.abs(x).max()


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("covariance_type", ["full", "diag"])
def test_cpu_and_gpu_agree(covariance_type):
    x, _ = t_mixture(3000, 16, 4, nu=4.0, separation=3.0, seed=6)
    cpu = StudentTMixture(4, covariance_type=covariance_type, random_state=0, estimate_dof=True).fit(x)
    gpu = StudentTMixture(4, covariance_type=covariance_type, random_state=0, estimate_dof=True).fit(
        torch.tensor(x, device="cuda")
    )
    assert gpu.means_.is_cuda and gpu.predict(torch.tensor(x, device="cuda")).is_cuda
    torch.testing.assert_close(gpu.means_.cpu(), cpu.means_, rtol=1e-6, atol=1e-8)
    torch.testing.assert_close(gpu.covariances_.cpu(), cpu.covariances_, rtol=1e-6, atol=1e-8)
    assert abs(gpu.lower_bound_ - cpu.lower_bound_) < 1e-6
