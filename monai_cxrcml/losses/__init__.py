"""Losses of CXR-CML: the triplet loss on mixture pseudo-labels and the combined contrastive + metric loss."""

from __future__ import annotations

from .cxrcml import CXRCMLLoss
from .triplet import PseudoLabelTripletLoss

__all__ = ["CXRCMLLoss", "PseudoLabelTripletLoss"]
