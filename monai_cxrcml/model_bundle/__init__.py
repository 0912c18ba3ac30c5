"""Trained models as self-contained MONAI bundles: written at the end of training or by export, read by everything
that scores films (inference, calibration, MONAI Label)."""

from .card import METADATA_KEY, MODEL_FORMAT, bundle_metadata, model_card
from .trained_model import BUNDLE_SUBDIR, Scorer, TrainedModel, create_scorer, find_model_bundle, load_model
from .training import FOLD_SETTINGS, bundle_training_run, fold_arguments, is_training_file, recorded_fold_settings
from .writer import CALIBRATION_FILE, file_fingerprint, write_bundle_calibration, write_model_bundle

__all__ = [
    "BUNDLE_SUBDIR",
    "FOLD_SETTINGS",
    "CALIBRATION_FILE",
    "METADATA_KEY",
    "MODEL_FORMAT",
    "Scorer",
    "TrainedModel",
    "bundle_metadata",
    "bundle_training_run",
    "create_scorer",
    "file_fingerprint",
    "find_model_bundle",
    "load_model",
    "fold_arguments",
    "is_training_file",
    "recorded_fold_settings",
    "model_card",
    "write_bundle_calibration",
    "write_model_bundle",
]
