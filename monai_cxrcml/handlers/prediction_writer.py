"""Save what an evaluation run saw, film by film (ids, labels, class probabilities, image embeddings) as a ``.npz``."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

import ignite.distributed as idist
import numpy as np
import torch
from ignite.engine import Engine, Events

__all__ = ["PredictionWriter", "PREDICTIONS_FILE"]

PREDICTIONS_FILE = "predictions.npz"
"""The file :class:`PredictionWriter` writes, the input of ``python -m monai_cxrcml.report``. Its arrays (plain numbers
or unicode strings, so ``np.load`` needs no ``allow_pickle``): ``dicom_id``, ``subject_id`` str ``[N]`` (``""`` where
the batches carried no such key); ``pred`` float32 ``[N, C]``; ``label`` float32 and ``label_mask`` bool ``[N, C]``
(True = known; all True when the batches carried no mask) when the run had labels; ``image_features`` float32
``[N, D]``, the L2-normalised image embeddings the probabilities came from (with ``save_embeddings``);
``class_names`` str ``[C]``."""


class PredictionWriter:
    """Collect per-film outputs of an evaluator and write ``output_dir/predictions.npz`` when the run completes.

    The arrays are those of :data:`PREDICTIONS_FILE`. Values are read from ``engine.state.output`` first and from
    ``engine.state.batch`` otherwise (ids, masks). Batches without ``pred`` (every film unreadable and skipped) are
    passed over. Under ``ignite.distributed`` the films of all ranks are gathered, the films a
    ``DistributedSampler`` repeated to pad its shards are dropped (by the first of ``id_keys``, when every film has
    one), and rank 0 writes. The file is written to a temporary name and renamed, so a crashed run never leaves a
    truncated ``predictions.npz``.

    Parameters
    ----------
    output_dir
        Folder of the run (created if missing).
    class_names
        The C classes of ``pred``, in column order.
    save_embeddings
        Also save ``image_features`` [N, D]. When the engine's output has none, a warning says so once and the
        file is written without them.
    filename
        Name of the file in ``output_dir``.
    pred_key, label_key, mask_key, features_key
        Keys of the probabilities [B, C], labels [B, C], label mask [B, C] and embeddings [B, D].
    id_keys
        Keys of the string ids saved per film; the first identifies a film (repeats are dropped).
    logger_name
        Logger for the summary line and warnings.

    Examples
    --------
    In a bundle config, next to ``MetricsReportWriter`` in ``test#handlers``::

        - _target_: monai_cxrcml.handlers.PredictionWriter
          output_dir: '@output_dir'
          class_names: $@data.class_names
    """

    def __init__(
        self,
        output_dir: str | os.PathLike,
        class_names: Sequence[str],
        save_embeddings: bool = True,
        filename: str = PREDICTIONS_FILE,
        pred_key: str = "pred",
        label_key: str = "label",
        mask_key: str = "label_mask",
        features_key: str = "image_features",
        id_keys: Sequence[str] = ("dicom_id", "subject_id"),
        logger_name: str = __name__,
    ) -> None:
        self.output_path = Path(output_dir) / filename
        self.class_names = tuple(str(c) for c in class_names)
        self.save_embeddings = save_embeddings
        self.pred_key = pred_key
        self.label_key = label_key
        self.mask_key = mask_key
        self.features_key = features_key
        self.id_keys = tuple(id_keys)
        self.logger = logging.getLogger(logger_name)
        self.arrays: dict[str, np.ndarray] | None = None

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, self._reset)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._collect)
        engine.add_event_handler(Events.COMPLETED, self._write)

    # ------------------------------------------------------------------------------------------------ events
    def _reset(self, engine: Engine) -> None:
        self._columns: dict[str, list] = {}
        self._warned_features = False

    def _collect(self, engine: Engine) -> None:
        output = engine.state.output if isinstance(engine.state.output, dict) else {}
        batch = engine.state.batch if isinstance(engine.state.batch, dict) else {}
        if self.pred_key not in output:  # every film of the batch was unreadable and skipped
            return
        pred = _numpy(output[self.pred_key], np.float32)
        n, num_classes = len(pred), len(self.class_names)
        if pred.shape != (n, num_classes):
            raise ValueError(
                f"PredictionWriter expects {self.pred_key!r} of shape [B, {num_classes}], got {pred.shape}: the "
                "evaluator's classes must be the writer's class_names (set both from the same list)."
            )
        columns = {"pred": pred}

        def lookup(key: str):
            return output[key] if key in output else batch.get(key)

        label = lookup(self.label_key)
        if label is not None:
            columns["label"] = _numpy(label, np.float32).reshape(n, num_classes)
            mask = lookup(self.mask_key)
            known = np.ones((n, num_classes)) if mask is None else _numpy(mask, np.float32).reshape(n, num_classes)
            columns["label_mask"] = known > 0.5
        for key in self.id_keys:
            ids = lookup(key)
            columns[key] = np.asarray([""] * n if ids is None else [str(i) for i in ids], dtype=str)
        if self.save_embeddings:
            features = lookup(self.features_key)
            if features is not None:
                columns["image_features"] = _numpy(features, np.float32).reshape(n, -1)
            elif not self._warned_features:
                self._warned_features = True
                self.logger.warning(
                    "PredictionWriter: the engine's output has no %r, so %s will hold no image embeddings (the "
                    "report's t-SNE needs them). Evaluate with monai_cxrcml.engines.ZeroShotEvaluator, which puts "
                    "them in its output, or set save_embeddings=False.", self.features_key, self.output_path,
                )
        for key, value in columns.items():
            self._columns.setdefault(key, []).append(value)

    def _write(self, engine: Engine) -> None:
        local = {key: np.concatenate(parts) for key, parts in self._columns.items()}
        n = len(local.get("pred", ()))
        for key in [k for k, v in local.items() if len(v) != n]:  # a key some batches carried and others did not
            self.logger.warning(
                "PredictionWriter: only %d of %d films had %r; it is left out of %s.", len(local.pop(key)), n, key,
                self.output_path,
            )
        gathered = idist.all_gather(local) if idist.get_world_size() > 1 else [local]
        if idist.get_rank() != 0:
            return
        arrays = _merge(gathered)
        if "pred" not in arrays:
            self.logger.warning("PredictionWriter: the run scored no film; %s was not written.", self.output_path)
            return
        if self.id_keys:
            arrays = _drop_repeats(arrays, self.id_keys[0])
        arrays["class_names"] = np.asarray(self.class_names, dtype=str)
        self.output_path.parent.mkdir(parents=True, exist_ok=True)
        partial = self.output_path.with_name(self.output_path.name + ".partial.npz")
        np.savez(partial, **arrays)
        partial.replace(self.output_path)
        self.arrays = arrays
        self.logger.info(
            "predictions of %d films x %d classes%s written to %s", len(arrays["pred"]), len(self.class_names),
            f" with embeddings [{arrays['image_features'].shape[1]}]" if "image_features" in arrays else "",
            self.output_path,
        )


def _numpy(value, dtype) -> np.ndarray:
    """A tensor, array or list as a numpy array of ``dtype`` on the CPU."""
    if isinstance(value, torch.Tensor):
        return value.detach().float().cpu().numpy().astype(dtype, copy=False)
    return np.asarray(value, dtype=dtype)


def _merge(per_rank: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Concatenate the columns of every rank; a column only some ranks have (e.g. embeddings) is dropped."""
    ranks = [r for r in per_rank if r]
    if not ranks:
        return {}
    keys = [k for k in ranks[0] if all(k in r for r in ranks)]
    return {k: np.concatenate([r[k] for r in ranks]) for k in keys}


def _drop_repeats(arrays: dict[str, np.ndarray], id_key: str) -> dict[str, np.ndarray]:
    """Keep the first row of each id (a ``DistributedSampler`` repeats films to pad its shards); empty ids stay."""
    ids = arrays.get(id_key)
    if ids is None or not ids.size or not (ids != "").all():
        return arrays
    _, first = np.unique(ids, return_index=True)
    if len(first) == len(ids):
        return arrays
    keep = np.sort(first)
    return {k: v[keep] for k, v in arrays.items()}
