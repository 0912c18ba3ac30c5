"""Temperature / bias calibration and ECE: recovery of known parameters, masking, degenerate classes, files."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from monai_cxrcml.metrics import (
    Calibration,
    apply_calibration,
    calibration_summary,
    classwise_ece,
    expected_calibration_error,
    fit_calibration,
    reliability_bins,
)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _synthetic(temperature, bias=0.0, n: int = 20000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Logits [n, C] and labels drawn from sigmoid(z / T + b) with known T, b per class."""
    temperature = np.atleast_1d(np.asarray(temperature, dtype=np.float64))
    rng = np.random.default_rng(seed)
    z = rng.normal(0.0, 3.0, size=(n, temperature.size))
    y = (rng.random(z.shape) < _sigmoid(z / temperature + bias)).astype(np.float32)
    return z.astype(np.float32), y


# ---------------------------------------------------------------------------------------------- ECE


def test_ece_matches_a_hand_computed_example_and_puts_one_in_the_last_bin():
    probs = np.array([0.05, 0.15, 0.95, 1.0])
    labels = np.array([0, 1, 1, 1])
    # bins of width 0.1: |0 - .05| + |1 - .15| + 2 * |1 - .975|, over 4 labels
    assert expected_calibration_error(probs, labels, n_bins=10) == pytest.approx((0.05 + 0.85 + 0.05) / 4)
    table = reliability_bins(probs, labels, n_bins=10)
    assert table["count"].tolist() == [1, 1, 0, 0, 0, 0, 0, 0, 0, 2]
    assert table.loc[9, "confidence"] == pytest.approx(0.975)
    assert np.isnan(table.loc[5, "frequency"])


def test_ece_of_calibrated_scores_is_near_zero_and_of_miscalibrated_ones_large():
    rng = np.random.default_rng(0)
    p = rng.random((50000, 3))
    y = (rng.random(p.shape) < p).astype(np.float32)
    assert expected_calibration_error(p, y) < 0.01
    assert np.nanmax(classwise_ece(p, y)) < 0.02
    overconfident = _sigmoid(4 * np.log(p / (1 - p)))
    assert expected_calibration_error(overconfident, y) > 0.1
    assert calibration_summary(overconfident, y)["nll"] > calibration_summary(p, y)["nll"]


def test_ece_refuses_values_that_are_not_probabilities_or_labels():
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        expected_calibration_error(np.array([1.5, 0.2]), np.array([1, 0]))
    with pytest.raises(ValueError, match="mask uncertain"):
        expected_calibration_error(np.array([0.5, 0.2]), np.array([-1, 0]))
    with pytest.raises(ValueError, match="no known label"):
        expected_calibration_error(np.array([0.5]), np.array([1]), mask=np.array([False]))


# ---------------------------------------------------------------------------------------------- fitting


def test_fit_recovers_a_known_global_temperature():
    z, y = _synthetic([2.5, 2.5, 2.5])
    calibration = fit_calibration(z, y)
    assert calibration.temperature == pytest.approx([2.5] * 3, rel=0.05)
    assert (calibration.bias == 0).all() and calibration.fallback_classes == ()
    shifted = fit_calibration(*_synthetic([2.5, 2.5, 2.5], np.array([-1.0, 0.0, 1.0])), bias=True)
    assert shifted.temperature == pytest.approx([2.5] * 3, rel=0.05)  # one temperature, a bias per class
    assert shifted.bias == pytest.approx([-1.0, 0.0, 1.0], abs=0.1)


def test_fit_recovers_per_class_temperatures_and_biases():
    true_t, true_b = np.array([0.5, 1.0, 2.0, 4.0]), np.array([-1.0, 0.0, 0.5, 1.0])
    z, y = _synthetic(true_t, true_b, n=40000)
    calibration = fit_calibration(z, y, class_names=list("abcd"), per_class=True, bias=True)
    assert calibration.temperature == pytest.approx(true_t, rel=0.1)
    assert calibration.bias == pytest.approx(true_b, abs=0.1)
    only_t = fit_calibration(*_synthetic(true_t, n=40000), per_class=True)
    assert only_t.temperature == pytest.approx(true_t, rel=0.1)


def test_calibration_lowers_ece_in_sample_and_on_held_out_films():
    z, y = _synthetic([0.4, 0.6], n=40000)  # logits 2-3x too confident
    calibration = fit_calibration(z[:20000], y[:20000], per_class=True)
    assert calibration.after["ece"] < calibration.before["ece"] / 3
    assert calibration.after["classwise_ece"] < calibration.before["classwise_ece"]
    assert calibration.after["nll"] < calibration.before["nll"]
    held_out_before = expected_calibration_error(_sigmoid(z[20000:]), y[20000:])
    assert expected_calibration_error(calibration.probabilities(z[20000:]), y[20000:]) < held_out_before / 3


def test_masked_labels_take_no_part_in_the_fit_or_the_ece():
    z, y = _synthetic([2.0, 0.5], n=10000)
    mask = np.random.default_rng(1).random(y.shape) > 0.3
    garbage = np.where(mask, y, -1.0)  # uncertain labels left in place where masked
    garbage[~mask & (np.arange(y.shape[0])[:, None] % 2 == 0)] = 7.0
    masked = fit_calibration(z, garbage, mask, per_class=True, bias=True)
    z[~mask] = np.nan  # and NaN scores where masked change nothing either
    again = fit_calibration(z, garbage, mask, per_class=True, bias=True)
    np.testing.assert_allclose(masked.temperature, again.temperature)
    only_known = [fit_calibration(z[mask[:, c], c], y[mask[:, c], c], bias=True) for c in range(2)]
    assert masked.temperature == pytest.approx([c.temperature[0] for c in only_known], rel=1e-3)
    assert masked.before["n_labels"] == int(mask.sum())


def test_degenerate_classes_fall_back_to_the_global_temperature_without_nan(caplog):
    z, y = _synthetic([1.5, 1.5, 1.5], n=5000)
    y[:, 1] = 0.0  # no positive at all
    y[:3, 2], y[3:, 2] = 1.0, 0.0  # three positives: too few for a fit of its own
    mask = np.ones_like(y, dtype=bool)
    with caplog.at_level(logging.WARNING):
        calibration = fit_calibration(z, y, mask, class_names=["ok", "none", "three"], per_class=True, bias=True)
    assert calibration.fallback_classes == ("none", "three")
    assert "none" in caplog.text
    assert np.isfinite(calibration.temperature).all() and np.isfinite(calibration.bias).all()
    assert calibration.temperature[1:] == pytest.approx([calibration.fallback_temperature] * 2)
    assert (calibration.bias[1:] == 0).all()
    assert np.isfinite(calibration.probabilities(z)).all()
    assert all(v is not None and np.isfinite(v) for v in calibration.after["per_class"].values())


def test_a_class_without_any_known_label_is_left_out_of_classwise_ece():
    z, y = _synthetic([1.0, 1.0], n=2000)
    mask = np.ones_like(y, dtype=bool)
    mask[:, 1] = False
    calibration = fit_calibration(z, y, mask, class_names=["a", "b"], per_class=True)
    assert calibration.after["per_class"]["b"] is None
    assert calibration.after["classwise_ece"] == pytest.approx(calibration.after["per_class"]["a"])
    assert calibration.fallback_classes == ("b",)


# ---------------------------------------------------------------------------------------------- files, classifiers


def test_json_round_trip_and_a_clear_error_for_other_files(tmp_path: Path):
    z, y = _synthetic([0.5, 2.0], n=4000)
    calibration = fit_calibration(z, y, class_names=["a", "b"], per_class=True, bias=True, fitted_on={"part": "val"})
    path = calibration.save(tmp_path / "sub" / "calibration.json")
    data = json.loads(path.read_text())
    assert {"ece_before", "ece_after", "temperature", "bias", "fallback_temperature"} <= set(data)
    loaded = Calibration.load(path)
    np.testing.assert_allclose(loaded.probabilities(z), calibration.probabilities(z))
    assert loaded.after == calibration.after and loaded.fitted_on == {"part": "val"}
    (tmp_path / "other.json").write_text('{"temperature": 2}')
    with pytest.raises(ValueError, match="other.json"):
        Calibration.load(tmp_path / "other.json")


def test_applied_to_a_classifier_it_sets_its_temperature_and_bias_by_class_name(caplog):
    from monai_cxrcml.networks import ZeroShotClassifier

    classifier = ZeroShotClassifier("cxrcml-tiny", class_names=["Hernia", "Bulla", "Edema"])
    calibration = Calibration(("Edema", "Hernia"), [2.0, 3.0], [0.5, -0.5], fallback_temperature=1.5,
                              fitted_on={"prompts": "present_absent"})
    image = torch.rand(2, 3, 64, 64)
    raw = classifier.logits(image)
    with caplog.at_level(logging.WARNING):
        assert apply_calibration(classifier, calibration) is classifier
    assert "Bulla" in caplog.text  # unseen class: global temperature, no bias
    assert classifier.temperature.tolist() == [3.0, 1.5, 2.0] and classifier.bias.tolist() == [-0.5, 0.0, 0.5]
    expected = torch.sigmoid(raw / torch.tensor([3.0, 1.5, 2.0]) + torch.tensor([-0.5, 0.0, 0.5]))
    torch.testing.assert_close(classifier(image), expected)
    assert apply_calibration(classifier, None) is classifier
