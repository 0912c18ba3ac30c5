"""ignite/MONAI handlers of CXR-CML, each usable on its own in another MONAI project."""

from .epoch_seeding import EpochSeeding
from .lr_schedule import LR_SCHEDULES, lr_schedule_handler, lr_scheduler
from .multilabel_auc import MultiLabelAUC
from .prediction_writer import PredictionWriter
from .pseudo_labels import PseudoLabelHandler, cluster_purity
from .report_writer import MetricsReportWriter
from .resume import BestModelTracking, checkpoint_epoch, latest_checkpoint, resume_training
from .submission_writer import SubmissionWriter

__all__ = [
    "BestModelTracking",
    "EpochSeeding",
    "LR_SCHEDULES",
    "MetricsReportWriter",
    "MultiLabelAUC",
    "PredictionWriter",
    "PseudoLabelHandler",
    "SubmissionWriter",
    "checkpoint_epoch",
    "cluster_purity",
    "latest_checkpoint",
    "lr_schedule_handler",
    "lr_scheduler",
    "resume_training",
]
