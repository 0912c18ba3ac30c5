"""ignite/MONAI handlers of CXR-CML, each usable on its own in another MONAI project."""

from .lr_schedule import LR_SCHEDULES, lr_schedule_handler
from .mixture import StudentTMixtureHandler
from .multilabel_auc import MultiLabelAUC
from .prediction_writer import PredictionWriter
from .report_writer import MetricsReportWriter
from .submission_writer import SubmissionWriter

__all__ = [
    "LR_SCHEDULES",
    "MetricsReportWriter",
    "MultiLabelAUC",
    "PredictionWriter",
    "StudentTMixtureHandler",
    "SubmissionWriter",
    "lr_schedule_handler",
]
