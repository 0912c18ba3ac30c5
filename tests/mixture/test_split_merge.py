"""GaussianMixture's split-and-merge moves: the predictions they rank moves by, and what a fit gains from them."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from _mixture_data import t_mixture

from monai_cxrcml.mixture import GaussianMixture
from monai_cxrcml.mixture._covariance import covariance_model
from monai_cxrcml.mixture._em import MixtureParameters
from monai_cxrcml.mixture._split_merge import Pairs, merge_losses, split_gains


@pytest.fixture(scope="module")
def heavy_tails():
    """Ten overlapping t (nu = 5) clusters of unequal sizes (benchmark case 1, smaller): a Gaussian fit gains by
    spending two components on one cluster's core and tail and one on two clusters."""
    return t_mixture(10000, 32, 10, nu=5.0, separation=1.5, seed=0, sizes=5.0, scale_range=(0.2, 1.0))


def _gaussian_log_density(x: np.ndarray, mean: np.ndarray, cov: np.ndarray) -> np.ndarray:
    diff = x - mean
    _, log_det = np.linalg.slogdet(cov)
    maha = np.einsum("nd,nd->n", diff @ np.linalg.inv(cov), diff)
    return -0.5 * (x.shape[1] * math.log(2 * math.pi) + log_det + maha)


@pytest.mark.parametrize("covariance_type", ["full", "diag"])
def test_merge_loss_is_the_log_likelihood_lost_by_the_moment_matched_merger(covariance_type):
    """With hard assignments and maximum-likelihood moments, the closed form equals the direct log-likelihoods."""
    x, labels = t_mixture(900, 3, 3, nu=math.inf, separation=2.0, seed=1, diagonal=covariance_type == "diag")
    n = len(x)
    groups = [x[labels == c] for c in range(3)]

    def moments(rows: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
        cov = np.cov(rows, rowvar=False, bias=True)
        return len(rows) / n, rows.mean(0), cov if covariance_type == "full" else np.diag(np.diag(cov))

    fitted = [moments(rows) for rows in groups]
    model = covariance_model(covariance_type, 3)
    covs = np.stack([c if covariance_type == "full" else np.diag(c) for _, _, c in fitted])
    covariances = torch.tensor(covs)
    weights = torch.tensor([w for w, _, _ in fitted], dtype=torch.float64)
    means = torch.tensor(np.stack([m for _, m, _ in fitted]))
    params = MixtureParameters(weights, means, covariances, model.factorize(covariances)[0],
                               torch.full((3,), math.inf, dtype=torch.float64))
    losses = merge_losses(params, model, n)

    def own(rows: np.ndarray) -> float:
        weight, mean, cov = moments(rows)
        return float(_gaussian_log_density(rows, mean, cov).sum() + len(rows) * math.log(weight))

    for i, j in [(0, 1), (0, 2), (1, 2)]:
        direct = own(groups[i]) + own(groups[j]) - own(np.concatenate([groups[i], groups[j]]))
        assert float(losses[i, j]) == pytest.approx(direct, rel=1e-9)
    assert torch.isinf(losses.diagonal()).all() and torch.isinf(losses[1, 0])


def test_split_gain_recovers_a_core_and_a_tail_and_their_log_likelihood_gain():
    """Rows of one component drawn from 0.6 N(0, 0.5 I) + 0.4 N(0, 3 I): the one-dimensional EM finds both scales
    relative to the component's covariance, and the gain is the log-likelihood the two-scale model adds."""
    rng = np.random.default_rng(0)
    d, n = 8, 20000
    scale = np.where(rng.random(n) < 0.6, 0.5, 3.0)
    x = rng.normal(size=(n, d)) * np.sqrt(scale)[:, None]
    cov = np.cov(x, rowvar=False, bias=True)  # ~1.5 I
    maha = np.einsum("nd,nd->n", x @ np.linalg.inv(cov), x)
    pairs = Pairs(torch.arange(n), torch.zeros(n, dtype=torch.long), torch.ones(n, dtype=torch.float64),
                  torch.tensor(maha))
    gain, weights, scales = split_gains(pairs, 1, d)
    np.testing.assert_allclose(weights[0].numpy(), [0.6, 0.4], atol=0.02)
    np.testing.assert_allclose(scales[0].numpy(), [0.5 / 1.5, 3.0 / 1.5], rtol=0.05)
    two_scale = np.logaddexp(*(math.log(a) + _gaussian_log_density(x, np.zeros(d), c * cov)
                               for a, c in zip(weights[0].tolist(), scales[0].tolist())))
    direct = float((two_scale - _gaussian_log_density(x, np.zeros(d), cov)).sum())
    assert float(gain[0]) == pytest.approx(direct, rel=1e-9)
    assert direct > 0.1 * n  # the gain is real: ~0.2 nats per row on these rows


def test_moves_reach_a_higher_likelihood_than_em_and_scikit_learn(heavy_tails):
    from sklearn.mixture import GaussianMixture as SklearnGaussianMixture

    x, _ = heavy_tails
    plain = GaussianMixture(10, random_state=0, split_merge_moves=0).fit(x)
    moved = GaussianMixture(10, random_state=0).fit(x)
    reference = SklearnGaussianMixture(10, random_state=0).fit(x)
    assert moved.score(x) > plain.score(x) + 0.1
    assert moved.score(x) > reference.score(x) + 0.1
    # one move kept: the history covers EM before it and EM after it, and ends converged at the better optimum
    assert moved.converged_ and moved.n_iter_ > plain.n_iter_
    assert moved.lower_bounds_[: plain.n_iter_] == plain.lower_bounds_
    assert moved.lower_bound_ > plain.lower_bound_
    assert moved.n_components_ == 10 and torch.isinf(moved.dofs_).all()


def test_a_move_is_kept_only_if_em_ends_higher(heavy_tails):
    """Diagonal covariances on the same rows: whatever the moves find, the fit never ends below plain EM."""
    x, _ = heavy_tails
    plain = GaussianMixture(10, covariance_type="diag", random_state=0, split_merge_moves=0).fit(x)
    moved = GaussianMixture(10, covariance_type="diag", random_state=0, split_merge_moves=3).fit(x)
    assert moved.lower_bound_ >= plain.lower_bound_


def test_no_move_on_gaussian_clusters_and_none_after_explicit_or_warm_starts(heavy_tails):
    """Where no move is predicted to gain (Gaussian clusters, one component each) the fit is plain EM; explicit
    and warm starts are never moved."""
    x, _ = t_mixture(3000, 4, 4, nu=math.inf, separation=5.0, seed=3)
    plain = GaussianMixture(4, random_state=0, split_merge_moves=0).fit(x)
    moved = GaussianMixture(4, random_state=0, split_merge_moves=3).fit(x)
    assert torch.equal(moved.means_, plain.means_) and moved.lower_bounds_ == plain.lower_bounds_

    x, _ = heavy_tails
    start = GaussianMixture(10, random_state=0, split_merge_moves=0).fit(x)
    explicit = dict(means_init=start.means_, weights_init=start.weights_, covariances_init=start.covariances_)
    from_explicit = GaussianMixture(10, **explicit).fit(x)
    assert from_explicit.n_iter_ <= 2 and from_explicit.score(x) == pytest.approx(start.score(x), abs=1e-3)
    warm = GaussianMixture(10, random_state=0, split_merge_moves=0, warm_start=True).fit(x)
    warm.set_params(split_merge_moves=1).fit(x)
    assert warm.score(x) == pytest.approx(start.score(x), abs=1e-3)


def test_split_merge_moves_is_checked():
    with pytest.raises(ValueError, match="split_merge_moves must be an int >= 0"):
        GaussianMixture(3, split_merge_moves=-1)
    assert GaussianMixture(3).get_params()["split_merge_moves"] == 1
