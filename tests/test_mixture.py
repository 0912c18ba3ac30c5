"""Student-t / Gaussian mixture EM (monai_cxrcml.mixture) against scipy, studenttmixture and scikit-learn."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from scipy.special import logsumexp
from scipy.stats import multivariate_t
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import adjusted_rand_score

from monai_cxrcml.mixture import GaussianMixture, StudentTMixture, kmeans_plusplus


def t_mixture(n: int, d: int, k: int, nu: float, separation: float, seed: int, diagonal: bool = False):
    """Rows of a ``k``-component t mixture (random anisotropic scales; ``nu=inf``: Gaussian) and their labels."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, k, size=n)
    means = rng.normal(scale=separation, size=(k, d))
    x = np.empty((n, d))
    for c in range(k):
        rows = np.flatnonzero(labels == c)
        scales = rng.uniform(0.5, 1.5, size=d)
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


@pytest.fixture(scope="module")
def small_t():
    return t_mixture(600, 4, 3, nu=5.0, separation=3.0, seed=0)


def start_parameters(x: np.ndarray, k: int, seed: int = 1):
    """A common start: k rows as means, the data covariance for every component, equal weights."""
    rng = np.random.default_rng(seed)
    means = x[rng.choice(len(x), size=k, replace=False)]
    cov = np.cov(x, rowvar=False) + 1e-6 * np.eye(x.shape[1])
    return means, np.stack([cov] * k), np.full(k, 1.0 / k)


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
    # the ML estimate on these Gaussian samples is 75-220 (and drifts slowly there): the cap must hold it
    model = quiet_fit(StudentTMixture(2, estimate_dof=True, dof=29.0, max_dof=30.0, random_state=0, max_iter=20), gauss)
    np.testing.assert_allclose(model.dofs_.numpy(), 30.0, rtol=1e-6)


def test_warm_start_converges_in_fewer_iterations():
    x, _ = t_mixture(2000, 6, 4, nu=4.0, separation=2.5, seed=5)
    model = StudentTMixture(4, warm_start=True, tol=1e-4, random_state=0).fit(x)
    cold_iterations = model.n_iter_
    model.fit(x + 1e-3)
    assert model.n_iter_ < cold_iterations and model.n_iter_ <= 3


@pytest.mark.parametrize("covariance_type", ["full", "diag"])
def test_gaussian_start_is_student_t_em_from_the_fitted_gaussian_mixture(small_t, covariance_type):
    """The paper's "GMM refined by Student-t": a Gaussian fit from the seeded start, then t EM from its parameters."""
    x, _ = small_t
    gmm = GaussianMixture(3, covariance_type=covariance_type, tol=1e-6, random_state=3).fit(x)
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


def test_chunked_equals_unchunked_and_deterministic(small_t):
    x, _ = small_t
    whole = StudentTMixture(3, random_state=7, estimate_dof=True).fit(x)
    chunked = StudentTMixture(3, random_state=7, estimate_dof=True, chunk_size=37).fit(x)
    again = StudentTMixture(3, random_state=7, estimate_dof=True).fit(x)
    for name in ("means_", "covariances_", "weights_", "dofs_"):
        np.testing.assert_allclose(getattr(chunked, name).numpy(), getattr(whole, name).numpy(), rtol=1e-9, atol=1e-12)
        assert torch.equal(getattr(again, name), getattr(whole, name))
    assert chunked.n_iter_ == whole.n_iter_


@pytest.mark.parametrize("covariance_type", ["full", "diag"])
def test_fewer_rows_than_components(covariance_type):
    batch = torch.nn.functional.normalize(torch.randn(32, 24, generator=torch.Generator().manual_seed(0)), dim=1)
    model = StudentTMixture(40, covariance_type=covariance_type, warm_start=True, max_iter=20, random_state=0)
    with pytest.warns(RuntimeWarning, match="fitting 16 components"):
        quiet_fit(model, batch)
    assert model.n_components_ == 16 and model.means_.shape == (16, 24)
    proba = model.predict_proba(batch)
    assert proba.shape == (32, 16) and torch.isfinite(proba).all()
    torch.testing.assert_close(proba.sum(1), torch.ones(32))
    labels = model.predict(batch)
    assert labels.min() >= 0 and labels.max() < 16
    with pytest.warns(RuntimeWarning) as record:
        quiet_fit(model, batch[:9])
    assert model.n_components_ == 4 and any("warm_start ignored" in str(w.message) for w in record)
    with pytest.warns(RuntimeWarning, match="fitting 1 components"):
        quiet_fit(StudentTMixture(40, covariance_type=covariance_type), batch[:1])


@pytest.mark.parametrize("covariance_type", ["full", "diag"])
def test_identical_rows_give_one_component(covariance_type):
    x = torch.full((50, 8), 0.25)
    with pytest.warns(RuntimeWarning, match="only 1 distinct rows"):
        model = StudentTMixture(5, covariance_type=covariance_type, random_state=0).fit(x)
    assert model.n_components_ == 1
    assert model.predict(x).eq(0).all()
    assert np.isfinite(model.score(x))


def test_non_finite_rows_are_left_out_and_flagged(small_t):
    x, _ = small_t
    dirty = x.copy()
    dirty[[5, 17]] = np.nan
    dirty[40, 2] = np.inf
    clean_rows = np.setdiff1d(np.arange(len(x)), [5, 17, 40])
    with pytest.warns(RuntimeWarning, match=r"3 of 600 rows .* \[5, 17, 40\]"):
        model = StudentTMixture(3, random_state=0).fit(dirty)
    reference = StudentTMixture(3, random_state=0).fit(x[clean_rows])
    torch.testing.assert_close(model.means_, reference.means_)
    with pytest.warns(RuntimeWarning, match="label -1"):
        labels = model.predict(dirty)
    assert labels[[5, 17, 40]].tolist() == [-1, -1, -1] and labels[clean_rows].min() >= 0
    with pytest.warns(RuntimeWarning):
        proba = model.predict_proba(dirty)
    assert proba[[5, 17, 40]].eq(0).all() and torch.isfinite(proba).all()
    with pytest.warns(RuntimeWarning):
        assert torch.isnan(model.score_samples(dirty)[[5, 17, 40]]).all()
    with pytest.raises(ValueError, match="every row of X holds NaN"):
        StudentTMixture(3).fit(np.full((10, 4), np.nan))


def test_empty_component_is_reseeded(small_t):
    x, _ = small_t
    means0 = np.concatenate([x[[0, 300]], np.full((1, 4), 1e3)])  # third component far from every row
    with pytest.warns(RuntimeWarning, match="re-seeded"):
        model = StudentTMixture(3, means_init=means0, random_state=0).fit(x)
    assert model.n_reseeded_ >= 1
    assert (model.weights_ * len(x) >= 1.5).all()  # every component holds data again
    assert model.means_.abs().max() < np.abs(x).max()


def test_convergence_warning_and_parameter_errors(small_t):
    x, _ = small_t
    with pytest.warns(ConvergenceWarning, match="max_iter=1"):
        StudentTMixture(3, max_iter=1, random_state=0).fit(x)
    with pytest.raises(ValueError, match="covariance_type"):
        StudentTMixture(covariance_type="tied")
    with pytest.raises(ValueError, match="estimate_dof"):
        StudentTMixture(dof=float("inf"), estimate_dof=True)
    with pytest.raises(ValueError, match="2-D"):
        StudentTMixture(3).fit(x[:, 0])
    model = StudentTMixture(3, random_state=0).fit(x)
    with pytest.raises(ValueError, match="4"):
        model.predict(x[:, :2])


def test_kmeans_plusplus_stops_at_distinct_rows():
    x = torch.tensor([[0.0, 0.0], [1.0, 1.0], [0.0, 0.0], [1.0, 1.0]]).repeat(5, 1)
    rows = kmeans_plusplus(x, 4, torch.Generator().manual_seed(0))
    assert rows.numel() == 2 and not torch.equal(x[rows[0]], x[rows[1]])


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


def test_state_dict_round_trip_through_a_safe_checkpoint(tmp_path):
    x = torch.randn(300, 6, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    fitted = StudentTMixture(n_components=3, covariance_type="full", random_state=0).fit(x)
    torch.save({"mixture": fitted.state_dict()}, tmp_path / "ckpt.pt")
    state = torch.load(tmp_path / "ckpt.pt", weights_only=True)["mixture"]
    restored = StudentTMixture(n_components=3, covariance_type="full", warm_start=True)
    restored.load_state_dict(state)
    torch.testing.assert_close(restored.predict_proba(x), fitted.predict_proba(x))
    assert restored.lower_bound_ == fitted.lower_bound_ and restored.n_components_ == 3
    restored.fit(x)  # warm start from the loaded parameters: already converged
    assert restored.n_iter_ <= 2
    with pytest.raises(ValueError, match="covariance_type='full'"):
        StudentTMixture(n_components=3, covariance_type="diag").load_state_dict(state)
    assert StudentTMixture().state_dict() == {}


def test_component_selection_finds_the_true_number_of_clusters():
    from monai_cxrcml.mixture import bic, n_parameters, select_n_components

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
