"""Clustering diagnostics of a refit: cluster sizes, assignment entropy, the estimator's fit figures and, given the
films' findings, how much the clusters say about them (adjusted mutual information)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from sklearn.metrics import adjusted_mutual_info_score

__all__ = ["ClusterDiagnostics", "cluster_purity", "describe", "label_combinations"]

class ClusterDiagnostics:
    """Computes the diagnostics of each refit.

    Parameters
    ----------
    reference_labels
        Optional true labels ``[N, C]`` of the films (by sample id), only for the ``ami`` diagnostics.
    """

    def __init__(self, reference_labels: np.ndarray | None = None) -> None:
        self.findings = None if reference_labels is None else np.asarray(reference_labels) > 0.5
        self.combinations = None if reference_labels is None else label_combinations(reference_labels)

    def __call__(
        self, estimator: Any, proba: torch.Tensor, labels: torch.Tensor, ids: torch.Tensor, seconds: float
    ) -> dict[str, float]:
        """Diagnostics of a fit whose responsibilities ``[n, K']`` and hard labels ``[n]`` (-1: none) belong to films
        ``ids`` ``[n]``.

        Returns
        -------
        dict
            ``n_films``, ``clusters_used``, ``size_min``, ``size_median``, ``size_max``, ``entropy`` (mean entropy of
            the assigned rows' responsibilities), ``dof_mean``, ``log_likelihood`` and ``n_iter`` where the estimator
            has ``dofs_``, ``lower_bound_`` and ``n_iter_``, ``seconds``, and with reference labels
            :func:`cluster_purity`'s ``ami`` and ``ami_findings``.
        """
        labels = labels.cpu().numpy()
        assigned = labels >= 0
        sizes = np.bincount(labels[assigned], minlength=proba.shape[1])
        used = sizes[sizes > 0]
        row_entropy = -(proba.clamp_min(1e-12).log() * proba).sum(dim=1)
        entropy = max(0.0, row_entropy[torch.from_numpy(assigned).to(proba.device)].mean().item())
        d = {
            "n_films": float(len(labels)),
            "clusters_used": float(len(used)),
            "size_min": float(used.min()),
            "size_median": float(np.median(used)),
            "size_max": float(used.max()),
            "entropy": entropy,
        }
        if hasattr(estimator, "dofs_"):
            d["dof_mean"] = float(torch.as_tensor(estimator.dofs_).float().mean())
        if hasattr(estimator, "lower_bound_"):
            d["log_likelihood"] = float(estimator.lower_bound_)
        if hasattr(estimator, "n_iter_"):
            d["n_iter"] = float(estimator.n_iter_)
        d["seconds"] = seconds
        if self.combinations is not None:
            rows = ids.cpu().numpy()[assigned]
            d.update(cluster_purity(labels[assigned], self.findings[rows], self.combinations[rows]))
        return d


def describe(d: dict[str, float]) -> str:
    """One log line of the diagnostics ``d`` of :class:`ClusterDiagnostics` (counts truncated to integers)."""
    parts = [
        "%d clusters used, sizes min/median/max %d/%d/%d" % (d["clusters_used"], d["size_min"], d["size_median"],
                                                             d["size_max"]),
        "assignment entropy %.3f" % d["entropy"],
    ]
    optional = (("dof_mean", "nu %.2f"), ("log_likelihood", "log-likelihood %.3f"), ("n_iter", "%d EM iterations"),
                ("seconds", "%.2f s"), ("ami", "AMI vs finding combinations %.4f"),
                ("ami_findings", "mean AMI vs each finding %.4f"))
    parts += [text % d[key] for key, text in optional if key in d]
    return ", ".join(parts)


def cluster_purity(
    clusters: np.ndarray, findings: np.ndarray, combinations: np.ndarray | None = None
) -> dict[str, float]:
    """How much the clusters say about the findings: the handler's ``ami`` and ``ami_findings`` diagnostics.

    Parameters
    ----------
    clusters
        Cluster label of each film [N].
    findings
        Binary finding matrix of the same films [N, C].
    combinations
        One integer per distinct finding combination [N] (``label_combinations(findings)`` when None; the handler
        passes its precomputed ones).

    Returns
    -------
    dict
        ``ami``: adjusted mutual information of the clusters with the finding combinations; ``ami_findings``: its
        mean over the single findings with at least 2 positive and 2 negative films (absent when none has).
    """
    findings = np.asarray(findings) > 0.5
    combinations = label_combinations(findings) if combinations is None else combinations
    purity = {"ami": float(adjusted_mutual_info_score(combinations, clusters))}
    scorable = [c for c in range(findings.shape[1]) if 2 <= findings[:, c].sum() <= len(clusters) - 2]
    if scorable:
        purity["ami_findings"] = float(np.mean([adjusted_mutual_info_score(findings[:, c], clusters)
                                                for c in scorable]))
    return purity


def label_combinations(labels: np.ndarray) -> np.ndarray:
    """One integer per distinct finding combination of the rows of a binary ``[N, C]`` matrix, ``[N]``."""
    _, combination = np.unique(np.asarray(labels) > 0.5, axis=0, return_inverse=True)
    return combination.reshape(-1)
