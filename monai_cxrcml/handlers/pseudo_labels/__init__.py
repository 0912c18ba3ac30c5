"""Pseudo-labels of CXR-CML's metric loss: the handler, its embedding bank, refits and clustering diagnostics."""

from .background import BackgroundRefit
from .diagnostics import ClusterDiagnostics, cluster_purity
from .embedding_bank import EmbeddingBank
from .handler import SCHEDULES, PseudoLabelHandler

__all__ = ["BackgroundRefit", "ClusterDiagnostics", "EmbeddingBank", "PseudoLabelHandler", "SCHEDULES",
           "cluster_purity"]
