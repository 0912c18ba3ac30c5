"""Per-class AUC of multi-label predictions as an ignite metric, with base/rare group means.

MONAI's ``ROCAUC`` handler keeps only class 0 with ``average="none"`` and turns NaN with ``average="macro"``
when one class has a single label value in the split (../shared/FACTS.md). This metric scores every class,
reports undefined classes instead of propagating NaN, and puts the group means beside the key metric.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import ignite.distributed as idist
import torch
from ignite.engine import Engine
from ignite.metrics import Metric
from ignite.metrics.metric import reinit__is_reduced

from monai_cxrcml.distributed import all_gather_rows
from monai_cxrcml.metrics import MultiLabelReport, multilabel_report

__all__ = ["MultiLabelAUC"]

SUMMARY_KEYS = ("macro_auc", "base_auc", "rare_auc", "common_auc", "medium_auc", "macro_ap")


class MultiLabelAUC(Metric):
    """Accumulate [B, C] scores and labels over an epoch; compute per-class AUC/AP and their means.

    The metric's value (``engine.state.metrics[name]``, the key metric for checkpoints and schedulers) is the
    macro AUC over classes with a defined AUC. At completion the other summaries (``base_auc``, ``rare_auc``,
    ``common_auc``, ``medium_auc``, ``macro_ap``; a mean over an empty group is left out) are also written to
    ``engine.state.metrics``, and the full :class:`~monai_cxrcml.metrics.MultiLabelReport` to
    ``engine.state.metric_details[name]``. Under ``ignite.distributed`` the predictions of every rank are gathered
    before scoring, so each rank reports the same values.

    Parameters
    ----------
    class_names
        The C class names, in column order.
    groups, prevalence_groups
        Class name -> "base"/"rare" and -> "common"/"medium"/"rare".
    n_bootstrap
        Bootstrap resamples for 95% intervals (0 = none: the cheap choice for per-epoch validation).
    ci_level, seed
        Interval coverage and the bootstrap seed.
    output_transform
        Maps ``engine.state.output`` to ``(pred [B, C], label [B, C])`` or ``(pred, label, label_mask [B, C] | None,
        subject_id [B] | None)``; with subject ids the bootstrap resamples patients. Default: those keys of the
        output dict of :class:`~monai_cxrcml.engines.ZeroShotEvaluator` (mask and subject ids when present).
    """

    def __init__(
        self,
        class_names: Sequence[str],
        groups: Mapping[str, str] | None = None,
        prevalence_groups: Mapping[str, str] | None = None,
        n_bootstrap: int = 0,
        ci_level: float = 0.95,
        seed: int = 0,
        output_transform: Callable | None = None,
    ) -> None:
        self.class_names = tuple(class_names)
        self.groups = dict(groups or {})
        self.prevalence_groups = dict(prevalence_groups or {})
        self.n_bootstrap = n_bootstrap
        self.ci_level = ci_level
        self.seed = seed
        self.report: MultiLabelReport | None = None
        super().__init__(output_transform=output_transform or _evaluator_output)

    @reinit__is_reduced
    def reset(self) -> None:
        self._preds: list[torch.Tensor] = []
        self._labels: list[torch.Tensor] = []
        self._masks: list[torch.Tensor] = []
        self._subjects: list[str] = []
        self.report = None

    @reinit__is_reduced
    def update(self, output: Sequence) -> None:
        pred, label = output[0], output[1]
        mask = output[2] if len(output) > 2 and output[2] is not None else torch.ones_like(torch.as_tensor(label))
        subjects = output[3] if len(output) > 3 else None
        pred, label, mask = (torch.as_tensor(x).detach().float().cpu() for x in (pred, label, mask))
        if pred.ndim != 2 or pred.shape != label.shape or pred.shape[1] != len(self.class_names):
            raise ValueError(
                f"MultiLabelAUC expects pred and label of shape [B, {len(self.class_names)}], "
                f"got {tuple(pred.shape)} and {tuple(label.shape)}: check the evaluator's output_transform."
            )
        self._preds.append(pred)
        self._labels.append(label)
        self._masks.append(mask.reshape(pred.shape))
        if subjects is not None:
            subjects = [str(s) for s in (subjects.tolist() if torch.is_tensor(subjects) else subjects)]
            if len(subjects) != len(pred):
                raise ValueError(f"{len(subjects)} subject ids for a batch of {len(pred)} predictions.")
            self._subjects.extend(subjects)

    def compute(self) -> float:
        if not self._preds:
            raise RuntimeError("MultiLabelAUC.compute() called before any update: the evaluation saw no batch.")
        pred, label, mask = (all_gather_rows(torch.cat(x)) for x in (self._preds, self._labels, self._masks))
        # all_gather of a Python list returns one list per rank
        subjects = [s for rank in idist.all_gather(self._subjects) for s in rank] if self._subjects else None
        if subjects is not None and len(subjects) != len(pred):
            raise ValueError("some evaluation batches carried subject ids and others did not.")
        self.report = multilabel_report(
            label.numpy(),
            pred.numpy(),
            self.class_names,
            groups=self.groups,
            prevalence_groups=self.prevalence_groups,
            mask=mask.numpy() > 0.5,
            subject_ids=subjects,
            n_bootstrap=self.n_bootstrap,
            ci_level=self.ci_level,
            seed=self.seed,
        )
        value = self.report.summary["macro_auc"]
        if value is None:
            raise ValueError(
                f"no class has both a positive and a negative image among the {len(pred)} evaluated images, so no "
                "AUC is defined: evaluate on a larger split (e.g. raise val_fraction or use more patients)."
            )
        return float(value)

    def completed(self, engine: Engine, name: str) -> None:
        engine.state.metrics[name] = self.compute()
        for key in SUMMARY_KEYS:
            value = self.report.summary.get(key)
            if key != name and value is not None:
                engine.state.metrics[key] = value
        if not hasattr(engine.state, "metric_details"):
            engine.state.metric_details = {}
        engine.state.metric_details[name] = self.report


def _evaluator_output(output: Mapping) -> tuple:
    return output["pred"], output["label"], output.get("label_mask"), output.get("subject_id")
