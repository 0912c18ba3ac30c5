"""MONAI engines for CXR-CML: the image + caption trainer and the zero-shot evaluator."""

from .evaluator import ZeroShotEvaluator
from .trainer import CXRCMLTrainer, prepare_clip_batch

__all__ = ["CXRCMLTrainer", "ZeroShotEvaluator", "prepare_clip_batch"]
