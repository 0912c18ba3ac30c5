"""MONAI engines for CXR-CML: the image + caption trainer and the zero-shot evaluator."""

from .embeddings import Embeddings, encode_images
from .evaluator import ZeroShotEvaluator
from .trainer import CXRCMLTrainer, prepare_clip_batch

__all__ = ["CXRCMLTrainer", "Embeddings", "ZeroShotEvaluator", "encode_images", "prepare_clip_batch"]
