"""Write an evaluation's multi-label report (``metrics.json``, ``per_class.csv``) and log its AUC table."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import ignite.distributed as idist
import pandas as pd
from ignite.engine import Engine, Events

__all__ = ["MetricsReportWriter"]


class MetricsReportWriter:
    """At the end of each evaluation run, save the :class:`~monai_cxrcml.metrics.MultiLabelReport` of a metric.

    The report is the one :class:`~monai_cxrcml.handlers.MultiLabelAUC` leaves in
    ``engine.state.metric_details[metric_name]``. Only rank 0 writes.

    Parameters
    ----------
    output_dir
        Folder for ``metrics.json`` and ``per_class.csv`` (created if missing).
    metric_name
        Name the :class:`MultiLabelAUC` metric was attached under.
    title
        First line of the logged table.
    logger_name
        Logger that receives the table (INFO).
    protocol
        The scoring protocol of the evaluation (a JSON-ready mapping), saved in ``metrics.json`` under
        ``"protocol"``.
    class_info
        Extra columns per class (index = class name), e.g. the name each class was scored under; saved with the
        scores (:meth:`~monai_cxrcml.metrics.MultiLabelReport.with_class_info`).
    """

    def __init__(
        self,
        output_dir: str | Path,
        metric_name: str = "macro_auc",
        title: str = "Zero-shot AUC",
        logger_name: str = __name__,
        protocol: Mapping[str, Any] | None = None,
        class_info: pd.DataFrame | None = None,
    ) -> None:
        self.output_dir = Path(output_dir)
        self.protocol = None if protocol is None else dict(protocol)
        self.class_info = class_info
        self.metric_name = metric_name
        self.title = title
        self.logger = logging.getLogger(logger_name)

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.COMPLETED, self)

    def __call__(self, engine: Engine) -> None:
        report = getattr(engine.state, "metric_details", {}).get(self.metric_name)
        if report is None:
            raise RuntimeError(
                f"MetricsReportWriter found no report under metric_details[{self.metric_name!r}]: attach a "
                f"MultiLabelAUC metric named {self.metric_name!r} to the same evaluator."
            )
        if idist.get_rank() != 0:
            return
        extra = None if self.protocol is None else {"protocol": self.protocol}
        if self.class_info is not None:
            report = report.with_class_info(self.class_info)
        json_path, _ = report.save(self.output_dir, extra=extra)
        self.logger.info("%s\n(written to %s)", report.format_table(self.title), json_path)
