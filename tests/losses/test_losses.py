"""Triplet loss on pseudo-labels (against pytorch-metric-learning and by hand) and the combined CXR-CML loss."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from open_clip import ClipLoss

from monai_cxrcml.losses import CXRCMLLoss, PseudoLabelTripletLoss

pml_losses = pytest.importorskip("pytorch_metric_learning.losses")
pml_miners = pytest.importorskip("pytorch_metric_learning.miners")
pml_reducers = pytest.importorskip("pytorch_metric_learning.reducers")

_PML_REDUCERS = {"mean": "MeanReducer", "mean_nonzero": "AvgNonZeroReducer", "sum": "SumReducer"}


def _pml(embeddings, labels, mining, reduction, margin):
    """pytorch-metric-learning's value on the labelled samples only (ours ignores label -1)."""
    keep = labels >= 0
    x, y = embeddings[keep], labels[keep]
    loss = pml_losses.TripletMarginLoss(margin=margin, reducer=getattr(pml_reducers, _PML_REDUCERS[reduction])())
    if mining == "batch_hard":
        return loss(x, y, pml_miners.BatchHardMiner()(x, y))
    if mining == "semi_hard":
        return loss(x, y, pml_miners.TripletMarginMiner(margin=margin, type_of_triplets="semihard")(x, y))
    return loss(x, y)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("mining", ["batch_hard", "semi_hard", "all"])
@pytest.mark.parametrize("reduction", ["mean", "mean_nonzero", "sum"])
def test_equals_pytorch_metric_learning(seed, mining, reduction):
    gen = torch.Generator().manual_seed(seed)
    embeddings = torch.randn(48, 16, generator=gen)
    labels = torch.randint(-1, 5, (48,), generator=gen)  # about 1/6 unlabelled
    ours = PseudoLabelTripletLoss(margin=0.3, mining=mining, reduction=reduction)(embeddings, labels)
    torch.testing.assert_close(ours, _pml(embeddings, labels, mining, reduction, 0.3), atol=1e-5, rtol=1e-5)


def test_hand_computed_batch_hard():
    # unit vectors at angles 0, 90 (label 0) and 180, 270 degrees (label 1)
    e = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]])
    labels = torch.tensor([0, 0, 1, 1])
    # each anchor: farthest positive at 90 degrees (sqrt 2), nearest negative at 90 degrees (sqrt 2): loss = margin
    loss = PseudoLabelTripletLoss(margin=0.5)(e, labels)
    torch.testing.assert_close(loss, torch.tensor(0.5))
    # labels 0, 1, 0, 1: positives at 180 degrees (2), negatives at sqrt 2: loss = 2 - sqrt 2 + margin
    loss = PseudoLabelTripletLoss(margin=0.5)(e, torch.tensor([0, 1, 0, 1]))
    torch.testing.assert_close(loss, torch.tensor(2 - math.sqrt(2) + 0.5))


def test_hand_computed_all_with_unlabelled_sample():
    e = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    labels = torch.tensor([0, 0, 1, -1])  # the last one takes no part
    # triplets (0, 1, 2) and (1, 0, 2): d(a, p) = 0, d(a, n) = sqrt 2 -> relu(-sqrt 2 + 2) each
    loss = PseudoLabelTripletLoss(margin=2.0, mining="all")(e, labels)
    torch.testing.assert_close(loss, torch.tensor(2 - math.sqrt(2)), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("mining", ["batch_hard", "semi_hard", "all"])
@pytest.mark.parametrize(
    "labels",
    [
        pytest.param(torch.full((6,), -1), id="all_unlabelled"),
        pytest.param(torch.zeros(6, dtype=torch.long), id="one_cluster"),
        pytest.param(torch.arange(6), id="all_singletons"),
    ],
)
def test_no_valid_triplet_gives_zero_with_gradient(mining, labels):
    embeddings = torch.randn(6, 8, requires_grad=True)
    loss = PseudoLabelTripletLoss(mining=mining)(embeddings, labels)
    assert loss.item() == 0.0 and loss.requires_grad
    loss.backward()
    assert torch.equal(embeddings.grad, torch.zeros_like(embeddings))


@pytest.mark.parametrize("mining", ["batch_hard", "semi_hard", "all"])
def test_gradient_finite_with_duplicate_embeddings(mining):
    base = torch.randn(4, 8)
    embeddings = torch.cat([base, base]).requires_grad_()  # zero distances between copies
    labels = torch.tensor([0, 1, 0, 1, 0, 1, 0, 1])
    loss = PseudoLabelTripletLoss(margin=0.5, mining=mining)(embeddings, labels)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(embeddings.grad).all()


@pytest.mark.parametrize("mining", ["batch_hard", "semi_hard", "all"])
def test_soft_with_one_hot_responsibilities_is_the_hard_loss(mining):
    gen = torch.Generator().manual_seed(3)
    embeddings, labels = torch.randn(32, 8, generator=gen), torch.randint(0, 4, (32,), generator=gen)
    hard = PseudoLabelTripletLoss(mining=mining)(embeddings, labels)
    soft = PseudoLabelTripletLoss(mining=mining, soft=True)(embeddings, labels, F.one_hot(labels, 4).float())
    torch.testing.assert_close(soft, hard)


def test_soft_weights_hand_computed():
    # anchor 0 and positive 1 (label 0), negatives 2 and 3 (label 1); margin 2 keeps every triplet active
    e = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]])
    labels = torch.tensor([0, 0, 1, 1])
    tau = torch.tensor([[1.0, 0.0], [0.5, 0.5], [0.0, 1.0], [0.0, 1.0]])
    loss_fn = PseudoLabelTripletLoss(margin=2.0, mining="all", reduction="sum", soft=True)
    agree = tau @ tau.t()
    dist = torch.cdist(e, e)
    expected = sum(
        agree[a, p] * (1 - agree[a, n]) * (dist[a, p] - dist[a, n] + 2.0)
        for a, p in [(0, 1), (1, 0), (2, 3), (3, 2)]
        for n in ([2, 3] if a < 2 else [0, 1])
    )
    torch.testing.assert_close(loss_fn(e, labels, tau), expected, atol=1e-5, rtol=1e-5)


def test_soft_ignores_rows_of_unlabelled_samples():
    embeddings, labels = torch.randn(6, 4), torch.tensor([0, 0, 1, 1, -1, -1])
    tau = F.one_hot(labels.clamp_min(0), 2).float()
    tau[4:] = float("nan")
    loss = PseudoLabelTripletLoss(soft=True)(embeddings, labels, tau)
    torch.testing.assert_close(loss, PseudoLabelTripletLoss()(embeddings, labels))


@pytest.mark.parametrize(
    "kwargs, inputs, match",
    [
        ({"soft": True}, (torch.randn(4, 3), torch.zeros(4, dtype=torch.long)), "needs responsibilities"),
        ({"soft": True}, (torch.randn(4, 3), torch.zeros(4, dtype=torch.long), torch.full((4, 2), 0.4)), "sum to 1"),
        ({}, (torch.randn(4, 3), torch.zeros(4)), "integer tensor"),
        ({}, (torch.randn(4, 3, 2), torch.zeros(4, dtype=torch.long)), r"\[B, D\]"),
    ],
)
def test_invalid_inputs(kwargs, inputs, match):
    with pytest.raises(ValueError, match=match):
        PseudoLabelTripletLoss(**kwargs)(*inputs)


@pytest.mark.parametrize(
    "kwargs, match",
    [({"mining": "hard"}, "mining"), ({"reduction": "none"}, "reduction"), ({"margin": -0.1}, "margin")],
)
def test_invalid_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        PseudoLabelTripletLoss(**kwargs)


def test_bf16_autocast_gives_float32_loss():
    embeddings = torch.randn(16, 8, dtype=torch.bfloat16, requires_grad=True)
    labels = torch.randint(0, 3, (16,))
    loss = PseudoLabelTripletLoss()(embeddings, labels)
    loss.backward()
    assert loss.dtype == torch.float32 and torch.isfinite(embeddings.grad.float()).all()


def test_batch_256_semi_hard_runs():
    embeddings, labels = torch.randn(256, 32, requires_grad=True), torch.randint(-1, 40, (256,))
    loss = PseudoLabelTripletLoss(mining="semi_hard")(embeddings, labels)
    loss.backward()
    assert torch.isfinite(embeddings.grad).all()


def _features(batch=8, dim=16, seed=0):
    gen = torch.Generator().manual_seed(seed)
    image = F.normalize(torch.randn(batch, dim, generator=gen), dim=-1).requires_grad_()
    text = F.normalize(torch.randn(batch, dim, generator=gen), dim=-1).requires_grad_()
    return image, text, torch.tensor(1 / 0.07)


def test_combined_loss_is_clip_plus_weighted_triplet():
    image, text, scale = _features()
    labels = torch.tensor([0, 0, 1, 1, 2, 2, -1, 0])
    triplet = PseudoLabelTripletLoss(margin=0.2)
    loss_fn = CXRCMLLoss(triplet, metric_loss_weight=0.5)
    out = loss_fn(image, text, scale, pseudo_labels=labels)
    contrastive = ClipLoss()(image, text, scale)
    metric = triplet(image, labels)
    torch.testing.assert_close(out["loss_contrastive"], contrastive)
    torch.testing.assert_close(out["loss_metric"], metric)
    torch.testing.assert_close(out["loss"], contrastive + 0.5 * metric)
    loss_fn.metric_loss_weight = 2.0  # a handler ramps it at run time
    torch.testing.assert_close(loss_fn(image, text, scale, pseudo_labels=labels)["loss"], contrastive + 2.0 * metric)


@pytest.mark.parametrize(
    "metric_loss, weight, labels",
    [
        (None, 1.0, torch.zeros(8, dtype=torch.long)),
        (PseudoLabelTripletLoss(), 1.0, None),
        (PseudoLabelTripletLoss(), 0.0, torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])),
    ],
    ids=["no_metric_loss", "no_labels", "zero_weight"],
)
def test_metric_term_off_is_zero_with_gradient(metric_loss, weight, labels):
    image, text, scale = _features()
    out = CXRCMLLoss(metric_loss, metric_loss_weight=weight)(image, text, scale, pseudo_labels=labels)
    assert out["loss_metric"].item() == 0.0 and out["loss_metric"].requires_grad
    torch.testing.assert_close(out["loss"], ClipLoss()(image, text, scale))
    out["loss"].backward()
    assert torch.isfinite(image.grad).all()


def test_combined_loss_soft_and_clip_kwargs():
    image, text, scale = _features()
    labels = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    tau = F.one_hot(labels, 4).float()
    loss_fn = CXRCMLLoss(PseudoLabelTripletLoss(soft=True), cache_labels=True, local_loss=False)
    assert loss_fn.contrastive_loss.cache_labels
    out = loss_fn(image, text, scale, pseudo_labels=labels, responsibilities=tau)
    torch.testing.assert_close(out["loss_metric"], PseudoLabelTripletLoss()(image, labels))


@pytest.mark.parametrize("weight", [-1.0, float("nan"), float("inf")])
def test_invalid_weight(weight):
    with pytest.raises(ValueError, match="metric_loss_weight"):
        CXRCMLLoss(PseudoLabelTripletLoss(), metric_loss_weight=weight)
