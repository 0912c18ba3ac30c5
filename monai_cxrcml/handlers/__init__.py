"""ignite/MONAI handlers of CXR-CML, each usable on its own in another MONAI project."""

from .mixture import StudentTMixtureHandler
from .multilabel_auc import MultiLabelAUC
from .report_writer import MetricsReportWriter
from .submission_writer import SubmissionWriter

__all__ = ["MetricsReportWriter", "MultiLabelAUC", "StudentTMixtureHandler", "SubmissionWriter"]
