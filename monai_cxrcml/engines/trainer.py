"""The CXR-CML training engine: a MONAI ``SupervisedTrainer`` for image + caption batches."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch
from ignite.engine import Engine, EventEnum
from ignite.metrics import Metric
from monai.engines import SupervisedTrainer
from monai.engines.utils import IterationEvents, default_metric_cmp_fn
from monai.inferers import Inferer
from monai.transforms import Transform
from torch.optim.optimizer import Optimizer
from torch.utils.data import DataLoader

from monai_cxrcml.losses import CXRCMLLoss

__all__ = ["CXRCMLTrainer", "prepare_clip_batch", "NONFINITE_POLICIES"]

NONFINITE_POLICIES = ("raise", "skip")
_AMP_DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16}


def prepare_clip_batch(
    batchdata: dict[str, Any], device: str | torch.device | None = None, non_blocking: bool = False, **kwargs: Any
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Move ``image`` [B, 3, S, S], ``text`` tokens [B, L] and ``sample_id`` [B] of a collated batch to ``device``."""
    missing = [k for k in ("image", "text", "sample_id") if k not in batchdata]
    if missing:
        raise KeyError(
            f"training batch lacks {missing}: the training transforms must produce 'image' (LoadFilmd, "
            "CLIPNormalized), 'text' (Tokenized of the caption) and the datalist's 'sample_id'."
        )
    return tuple(  # type: ignore[return-value]
        torch.as_tensor(batchdata[k]).to(device=device, non_blocking=non_blocking, **kwargs)
        for k in ("image", "text", "sample_id")
    )


class CXRCMLTrainer(SupervisedTrainer):
    """Train an open_clip CLIP model with L = L_c + w * L_m on image + caption batches.

    Each iteration encodes the films and captions, fires ``IterationEvents.FORWARD_COMPLETED`` (the
    :class:`~monai_cxrcml.handlers.StudentTMixtureHandler` stores the image embeddings there and, under its
    ``"batch"`` schedule, fits the mixture), looks up the pseudo-labels of the batch's films on
    ``engine.state.pseudo_labels`` / ``engine.state.responsibilities``, computes the loss, steps the optimiser
    and clamps the learned logit scale to [0, ln 100] as CLIP does.

    ``engine.state.output`` holds ``loss``, ``loss_contrastive``, ``loss_metric`` and ``logit_scale`` (floats
    as 0-d tensors, for ``StatsHandler``/``TensorBoardStatsHandler``) and, during the iteration, the detached
    ``image_features`` [B, D].

    Parameters
    ----------
    device, max_epochs, train_data_loader, network, optimizer, epoch_length, non_blocking, iteration_update,
    postprocessing, key_train_metric, additional_metrics, metric_cmp_fn, train_handlers, event_names,
    event_to_attr, optim_set_to_none, to_kwargs
        As in :class:`monai.engines.SupervisedTrainer`.
    loss_function
        A :class:`~monai_cxrcml.losses.CXRCMLLoss`.
    prepare_batch
        Returns ``(image, text, sample_id)`` on the device; :func:`prepare_clip_batch` by default.
    amp
        Mixed precision on CUDA (ignored on the CPU).
    amp_dtype
        ``"bfloat16"`` (default: no loss scaling needed) or ``"float16"`` (with a gradient scaler).
    grad_clip_norm
        Clip the global gradient norm to this value; None = no clipping.
    nonfinite_loss
        ``"raise"`` stops training on a NaN/inf loss with a message naming the iteration and the batch's
        sample ids; ``"skip"`` logs it, skips the optimiser step and counts it in ``engine.state.skipped_steps``.

    Films that the transforms skipped as unreadable (``on_error="skip"`` with
    :func:`~monai_cxrcml.transforms.skip_unreadable_collate`) are counted in ``engine.state.skipped_films``; a
    batch left without any film is skipped.
    """

    def __init__(
        self,
        device: str | torch.device,
        max_epochs: int,
        train_data_loader: Iterable | DataLoader,
        network: torch.nn.Module,
        optimizer: Optimizer,
        loss_function: CXRCMLLoss,
        epoch_length: int | None = None,
        non_blocking: bool = False,
        prepare_batch: Callable = prepare_clip_batch,
        iteration_update: Callable[[Engine, Any], Any] | None = None,
        inferer: Inferer | None = None,
        postprocessing: Transform | None = None,
        key_train_metric: dict[str, Metric] | None = None,
        additional_metrics: dict[str, Metric] | None = None,
        metric_cmp_fn: Callable = default_metric_cmp_fn,
        train_handlers: Sequence | None = None,
        amp: bool = False,
        amp_dtype: str = "bfloat16",
        grad_clip_norm: float | None = None,
        nonfinite_loss: str = "raise",
        event_names: list[str | EventEnum | type[EventEnum]] | None = None,
        event_to_attr: dict | None = None,
        optim_set_to_none: bool = True,
        to_kwargs: dict | None = None,
    ) -> None:
        if amp_dtype not in _AMP_DTYPES:
            raise ValueError(f"amp_dtype={amp_dtype!r} is not one of {sorted(_AMP_DTYPES)}.")
        if nonfinite_loss not in NONFINITE_POLICIES:
            raise ValueError(f"nonfinite_loss={nonfinite_loss!r} is not one of {NONFINITE_POLICIES}.")
        use_amp = bool(amp) and torch.device(device).type == "cuda"
        super().__init__(
            device=device,
            max_epochs=max_epochs,
            train_data_loader=train_data_loader,
            network=network,
            optimizer=optimizer,
            loss_function=loss_function,
            epoch_length=epoch_length,
            non_blocking=non_blocking,
            prepare_batch=prepare_batch,
            iteration_update=iteration_update,
            inferer=inferer,
            postprocessing=postprocessing,
            key_train_metric=key_train_metric,
            additional_metrics=additional_metrics,
            metric_cmp_fn=metric_cmp_fn,
            train_handlers=train_handlers,
            amp=use_amp,
            event_names=event_names,
            event_to_attr=event_to_attr,
            decollate=False,
            optim_set_to_none=optim_set_to_none,
            to_kwargs=to_kwargs,
            amp_kwargs={"dtype": _AMP_DTYPES[amp_dtype]},
        )
        # bf16 needs no loss scaling; SupervisedTrainer made a GradScaler for any amp
        self.scaler = torch.amp.GradScaler("cuda") if use_amp and amp_dtype == "float16" else None
        self.grad_clip_norm = grad_clip_norm
        self.nonfinite_loss = nonfinite_loss
        self.logger = logging.getLogger("monai_cxrcml")
        self.state.skipped_steps = 0
        self.state.skipped_films = 0

    def _iteration(self, engine: CXRCMLTrainer, batchdata: dict[str, Any]) -> dict[str, torch.Tensor]:
        if batchdata is None:
            raise ValueError("Must provide batch data for current iteration.")
        engine.state.skipped_films += int(batchdata.get("num_skipped", 0))
        if "image" not in batchdata and "num_skipped" in batchdata:  # every film of the batch was unreadable
            self.logger.warning("iteration %d: every film of the batch was unreadable and skipped", engine.state.iteration)
            return engine.state.output
        images, texts, sample_ids = engine.prepare_batch(
            batchdata, engine.state.device, engine.non_blocking, **engine.to_kwargs
        )
        model = engine.network
        model.train()
        engine.optimizer.zero_grad(set_to_none=engine.optim_set_to_none)
        with torch.autocast(torch.device(engine.state.device).type, enabled=engine.amp, **engine.amp_kwargs):
            image_features, text_features, logit_scale = _encode(model, images, texts)
            engine.state.output = {"image_features": image_features.detach(), "sample_id": sample_ids}
            engine.fire_event(IterationEvents.FORWARD_COMPLETED)
            pseudo_labels, responsibilities = _lookup(engine.state, sample_ids)
            parts = engine.loss_function(
                image_features,
                text_features,
                logit_scale,
                pseudo_labels=pseudo_labels,
                responsibilities=responsibilities,
                metric_scale=getattr(engine.state, "metric_loss_scale", 1.0),
            )
        loss = parts["loss"]
        engine.state.output.update({k: v.detach() for k, v in parts.items()})
        engine.state.output["logit_scale"] = logit_scale.detach()
        engine.fire_event(IterationEvents.LOSS_COMPLETED)

        if not torch.isfinite(loss):
            self._on_nonfinite(engine, parts, sample_ids)
            return engine.state.output
        if engine.scaler is not None:
            engine.scaler.scale(loss).backward()
            engine.fire_event(IterationEvents.BACKWARD_COMPLETED)
            if self.grad_clip_norm is not None:
                engine.scaler.unscale_(engine.optimizer)
                torch.nn.utils.clip_grad_norm_(model.parameters(), self.grad_clip_norm)
            engine.scaler.step(engine.optimizer)
            engine.scaler.update()
        else:
            loss.backward()
            engine.fire_event(IterationEvents.BACKWARD_COMPLETED)
            if self.grad_clip_norm is not None:
                torch.nn.utils.clip_grad_norm_(model.parameters(), self.grad_clip_norm)
            engine.optimizer.step()
        engine.fire_event(IterationEvents.MODEL_COMPLETED)
        with torch.no_grad():
            _unwrap(model).logit_scale.clamp_(0, math.log(100))
        return engine.state.output

    def _on_nonfinite(self, engine: CXRCMLTrainer, parts: dict[str, torch.Tensor], sample_ids: torch.Tensor) -> None:
        values = ", ".join(f"{k}={v.item():.4g}" for k, v in parts.items())
        where = f"iteration {engine.state.iteration} (epoch {engine.state.epoch}), sample ids {sample_ids.tolist()}"
        if self.nonfinite_loss == "raise":
            raise FloatingPointError(
                f"non-finite loss at {where}: {values}. Lower lr, enable grad_clip_norm, or set "
                "nonfinite_loss='skip' to skip such steps."
            )
        engine.state.skipped_steps += 1
        self.logger.warning("skipped the step at %s: non-finite loss (%s)", where, values)


def _encode(model: torch.nn.Module, images: torch.Tensor, texts: torch.Tensor):
    """(image_features [B, D], text_features [B, D], logit_scale 0-d) from an open_clip model (or its DDP wrapper)."""
    out = model(image=images, text=texts)
    if isinstance(out, dict):
        return out["image_features"], out["text_features"], out["logit_scale"]
    return out[0], out[1], out[2]


def _lookup(state: Any, sample_ids: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    labels = getattr(state, "pseudo_labels", None)
    if labels is None:
        return None, None
    responsibilities = getattr(state, "responsibilities", None)
    return labels[sample_ids], None if responsibilities is None else responsibilities[sample_ids]


def _unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return model.module if hasattr(model, "module") else model
