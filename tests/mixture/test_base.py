"""What every mixture estimator shares (monai_cxrcml.mixture.base.BaseMixture): the estimator API, warm starts,
chunking, few or non-finite rows, errors and checkpoints."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from _mixture_data import quiet_fit, t_mixture
from sklearn.exceptions import ConvergenceWarning

from monai_cxrcml.mixture import StudentTMixture


def test_warm_start_converges_in_fewer_iterations():
    x, _ = t_mixture(2000, 6, 4, nu=4.0, separation=2.5, seed=5)
    model = StudentTMixture(4, warm_start=True, tol=1e-4, random_state=0).fit(x)
    cold_iterations = model.n_iter_
    model.fit(x + 1e-3)
    assert model.n_iter_ < cold_iterations and model.n_iter_ <= 3


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


def test_parameters_follow_scikit_learn_and_fit_never_changes_them(small_t):
    x, _ = small_t
    model = StudentTMixture(3, dof=6.0, warm_start=True, random_state=0)
    before = model.get_params()
    assert before["n_components"] == 3 and before["dof"] == 6.0 and before["covariance_type"] == "full"
    assert repr(model) == "StudentTMixture(dof=6.0, n_components=3, random_state=0, warm_start=True)"
    model.fit(x)
    with pytest.warns(RuntimeWarning) as record:
        quiet_fit(model.set_params(n_components=40), x[:8])  # fewer rows than components: K' = 4
    messages = " ".join(str(w.message) for w in record)
    assert "warm_start ignored" in messages and "fitting 4 components" in messages and model.n_components_ == 4
    assert model.get_params() == {**before, "n_components": 40}


def test_set_params_checks_values_before_setting_any():
    model = StudentTMixture(3)
    assert model.set_params(dof=6.0, tol=1e-4) is model and (model.dof, model.tol) == (6.0, 1e-4)
    with pytest.raises(ValueError, match=r"StudentTMixture\(max_dof=inf\): max_dof must be a finite float > 1"):
        model.set_params(dof=2.0, max_dof=float("inf"))
    assert (model.dof, model.max_dof) == (6.0, 100.0)  # nothing was set
    with pytest.raises(ValueError, match="Invalid parameter 'nu'.*Valid parameters are"):
        model.set_params(nu=2.0)
    model.n_components = 0  # set directly, as scikit-learn allows: fit refuses it
    with pytest.raises(ValueError, match="n_components must be an int >= 1"):
        model.fit(np.zeros((10, 2)))


def test_clone_is_an_unfitted_copy_that_fits_identically(small_t):
    from sklearn.base import clone

    x, _ = small_t
    fitted = StudentTMixture(3, covariance_type="diag", estimate_dof=True, random_state=5).fit(x)
    copy = clone(fitted)
    assert copy is not fitted and copy.get_params() == fitted.get_params()
    assert not hasattr(copy, "means_") and copy.state_dict() == {}
    copy.fit(x)
    for name in ("means_", "covariances_", "weights_", "dofs_"):
        assert torch.equal(getattr(copy, name), getattr(fitted, name))
