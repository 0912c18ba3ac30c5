"""Write per-film class probabilities of an inference run as a CXR-LT submission CSV."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import ignite.distributed as idist
import numpy as np
import pandas as pd
import torch
from ignite.engine import Engine, Events

from monai_cxrcml.data.films import FilmReadError, read_film
from monai_cxrcml.distributed import all_gather_rows

__all__ = ["SubmissionWriter", "AGGREGATIONS"]

AGGREGATIONS = ("mean", "max")


class SubmissionWriter:
    """Collect ``pred`` [B, C] with the batch's ids during a run and write ``id, class_1, ..., class_C`` at the end.

    The columns follow ``class_names`` exactly (CXR-LT's submission order when those are the CXR-LT classes);
    the rows follow ``expected_ids`` (the datalist's order, e.g. the test CSV's rows) when given, else the order
    films were scored. Films of ``expected_ids`` that produced no prediction (unreadable films skipped under
    ``on_error="skip"``) keep their row with empty probabilities when ``keep_unreadable_rows`` (a CXR-LT submission
    must list every dicom_id of the test CSV), else get no row; either way they are named in the log and listed in
    ``<output>.unreadable.csv`` (with their path and the
    reason when ``expected_images`` is given: the film is read once more after the run to say what is wrong with
    it, since a skipped sample cannot carry its error out of MONAI's ``Compose``). With ``aggregate`` every
    film of a study gets the study's mean or maximum probability (CXR-LT labels are study level). Under
    ``ignite.distributed`` the predictions of all ranks are gathered and rank 0 writes.

    Parameters
    ----------
    output_path
        The submission CSV to write (folders are created); None keeps the table in :attr:`submission` only.
    class_names
        The C class columns, in order.
    expected_ids
        Ids of every film that should get a row, in row order.
    expected_images
        The film path of each of ``expected_ids`` (same order), to name and diagnose unreadable films.
    id_column
        Name of the first column (``dicom_id`` for CXR-LT; ``path`` for a folder).
    id_key, pred_key
        Keys of the ids in ``engine.state.batch`` and of the probabilities in ``engine.state.output``.
    aggregate
        None, ``"mean"`` or ``"max"`` over the films of a study (needs ``study_key`` in the batches).
    study_key
        Batch key of the study id.
    keep_unreadable_rows
        True: every id of ``expected_ids`` gets a row, an unreadable film's probabilities left empty (NaN);
        False: unreadable films get no row.
    protocol
        The scoring protocol of the run (a JSON-ready mapping), written beside the submission as
        ``<output>.protocol.json`` so that every submission says how it was scored.
    class_info
        Per class column (index = column name, in ``class_names`` order) what the column was scored under, e.g.
        ``scored_name`` and ``mapping``; written beside the submission as ``<output>.classes.csv``.

    Attributes
    ----------
    submission
        The table written (``id_column`` + class columns), set when the run completes.
    unreadable
        One row per film of ``expected_ids`` without a prediction: ``id_column``, and ``image`` and ``reason`` when
        ``expected_images`` is given.
    """

    def __init__(
        self,
        output_path: str | Path | None,
        class_names: Sequence[str],
        expected_ids: Sequence[str] | None = None,
        id_column: str = "dicom_id",
        id_key: str = "id",
        pred_key: str = "pred",
        aggregate: str | None = None,
        study_key: str = "study_id",
        expected_images: Sequence[str] | None = None,
        keep_unreadable_rows: bool = False,
        protocol: Mapping[str, Any] | None = None,
        class_info: pd.DataFrame | None = None,
    ) -> None:
        if aggregate not in (None, *AGGREGATIONS):
            raise ValueError(f"aggregate={aggregate!r} is not one of None, {AGGREGATIONS}.")
        if expected_images is not None and (expected_ids is None or len(expected_images) != len(expected_ids)):
            raise ValueError("expected_images needs expected_ids of the same length (one film path per id).")
        self.output_path = None if output_path is None else Path(output_path)
        self.class_names = tuple(class_names)
        self.expected_ids = None if expected_ids is None else [str(i) for i in expected_ids]
        self.expected_images = None if expected_images is None else [str(i) for i in expected_images]
        self.id_column = id_column
        self.id_key = id_key
        self.pred_key = pred_key
        self.aggregate = aggregate
        self.study_key = study_key
        self.keep_unreadable_rows = keep_unreadable_rows
        self.protocol = None if protocol is None else dict(protocol)
        if class_info is not None and list(class_info.index) != list(self.class_names):
            raise ValueError(f"class_info is indexed by {list(class_info.index)}, not by the columns "
                             f"{list(self.class_names)}.")
        self.class_info = class_info
        self.logger = logging.getLogger(__name__)
        self.submission: pd.DataFrame | None = None
        self.unreadable: pd.DataFrame | None = None

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, self._reset)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._collect)
        engine.add_event_handler(Events.COMPLETED, self._write)

    def _reset(self, engine: Engine) -> None:
        self._ids: list[str] = []
        self._studies: list[str] = []
        self._preds: list[np.ndarray] = []

    def _collect(self, engine: Engine) -> None:
        batch = engine.state.batch
        if self.id_key not in batch:  # every film of the batch was unreadable
            return
        pred = torch.as_tensor(engine.state.output[self.pred_key]).detach().float().cpu().numpy()
        ids = [str(i) for i in batch[self.id_key]]
        if pred.ndim != 2 or pred.shape != (len(ids), len(self.class_names)):
            raise ValueError(
                f"SubmissionWriter expects {self.pred_key!r} of shape [{len(ids)}, {len(self.class_names)}], got "
                f"{tuple(pred.shape)}: the network's classes must be class_names."
            )
        self._ids.extend(ids)
        self._preds.append(pred)
        if self.aggregate is not None:
            if self.study_key not in batch:
                raise KeyError(
                    f"aggregate={self.aggregate!r} needs {self.study_key!r} in every batch: the input list has no "
                    "study ids (a CXR-LT CSV with a study_id column has them)."
                )
            self._studies.extend(str(s) for s in batch[self.study_key])

    def _write(self, engine: Engine) -> None:
        ids = [i for rank in idist.all_gather(self._ids) for i in rank]
        studies = [s for rank in idist.all_gather(self._studies) for s in rank]
        local = np.concatenate(self._preds) if self._preds else np.zeros((0, len(self.class_names)), np.float32)
        preds = all_gather_rows(torch.from_numpy(local)).numpy()
        if idist.get_rank() != 0:
            return
        if self.output_path is not None:
            self.output_path.parent.mkdir(parents=True, exist_ok=True)
        frame = pd.DataFrame(preds, columns=list(self.class_names))
        frame.insert(0, self.id_column, ids)
        frame = frame.drop_duplicates(self.id_column)  # a DistributedSampler pads with repeated films
        if self.aggregate is not None:
            study = pd.Series(studies[: len(ids)], index=range(len(ids))).loc[frame.index]
            columns = list(self.class_names)
            frame[columns] = frame.groupby(study.to_numpy())[columns].transform(self.aggregate)
        if self.expected_ids is not None:
            scored = set(frame[self.id_column])
            unread = [i for i in self.expected_ids if i not in scored]
            rows = self.expected_ids if self.keep_unreadable_rows else [i for i in self.expected_ids if i in scored]
            frame = frame.set_index(self.id_column).reindex(rows).reset_index()
            self._report_unreadable(unread)
        self.submission = frame
        if self.output_path is None:
            return
        frame.to_csv(self.output_path, index=False, float_format="%.6f")
        if self.protocol is not None:
            self.output_path.with_suffix(".protocol.json").write_text(json.dumps(self.protocol, indent=2) + "\n")
        if self.class_info is not None:
            self.class_info.rename_axis("class").to_csv(self.output_path.with_suffix(".classes.csv"))
        self.logger.info("submission: %d films x %d classes written to %s", len(frame), len(self.class_names),
                         self.output_path)

    def _report_unreadable(self, unread: list[str]) -> None:
        table = pd.DataFrame({self.id_column: unread})
        if self.expected_images is not None:
            image_of = dict(zip(self.expected_ids, self.expected_images))
            table["image"] = [image_of[i] for i in unread]
            table["reason"] = [_unreadable_reason(path) for path in table["image"]]
        self.unreadable = table
        path = None if self.output_path is None else self.output_path.with_suffix(".unreadable.csv")
        if not unread:
            if path is not None:
                path.unlink(missing_ok=True)
            return
        if path is not None:
            table.to_csv(path, index=False)
        reasons = table["reason"] if "reason" in table else None
        shown = unread[:10] if reasons is None else [f"{i} ({r})" for i, r in zip(unread[:10], reasons)]
        self.logger.warning(
            "%d film(s) could not be read and have %s in the submission%s: %s%s", len(unread),
            "empty probabilities" if self.keep_unreadable_rows else "no row",
            "" if path is None else f" (listed in {path})", "; ".join(shown),
            " ..." if len(unread) > 10 else "",
        )


def _unreadable_reason(path: str) -> str:
    """What is wrong with a film that was skipped during the run (read again, in full, to find out)."""
    try:
        read_film(path)
    except FilmReadError as e:
        return e.reason
    except Exception as e:  # noqa: BLE001 - only to describe the failure; the run has already skipped the film
        return f"{type(e).__name__}: {e}"
    return "skipped during the run but readable now (a transient I/O error?): run inference again"
