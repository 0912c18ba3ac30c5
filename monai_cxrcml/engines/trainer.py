"""The CXR-CML training engine: a MONAI ``SupervisedTrainer`` for image + caption batches, L = L_c + w L_m.

An iteration waits for nothing on the device (the non-finite loss guard is a device flag read by a fused
optimizer), and under torchrun the loss is computed on the gathered global batch; ``docs/design.md`` ("The training
step") says why and what it requires.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from ignite.engine import Engine, EventEnum, Events
from ignite.metrics import Metric
from monai.engines import SupervisedTrainer
from monai.engines.utils import IterationEvents, default_metric_cmp_fn
from monai.inferers import Inferer
from monai.transforms import Transform
from monai.utils import convert_to_tensor
from torch.nn.parallel import DistributedDataParallel
from torch.optim.optimizer import Optimizer
from torch.utils.data import DataLoader, RandomSampler, SequentialSampler

from monai_cxrcml.data.sampler import ClusterBalancedSampler
from monai_cxrcml.distributed import all_gather_rows, all_reduce_max, gather_counts, get_world_size
from monai_cxrcml.losses import CXRCMLLoss
from monai_cxrcml.networks import unwrap_parallel

__all__ = ["CXRCMLTrainer", "prepare_clip_batch", "NONFINITE_POLICIES"]

NONFINITE_POLICIES = ("raise", "skip")
_AMP_DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16}


def prepare_clip_batch(
    batchdata: dict[str, Any], device: str | torch.device | None = None, non_blocking: bool = False, **kwargs: Any
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Move ``image`` [B, 3, S, S], ``text`` tokens [B, L] and ``sample_id`` [B] of a collated batch to ``device``.

    ``MetaTensor`` inputs become plain tensors (their metadata is not needed past the transforms).
    """
    missing = [k for k in ("image", "text", "sample_id") if k not in batchdata]
    if missing:
        raise KeyError(
            f"training batch lacks {missing}: the training transforms must produce 'image' (LoadFilmd, "
            "CLIPNormalized), 'text' (Tokenized of the caption) and the datalist's 'sample_id'."
        )
    return tuple(  # type: ignore[return-value]
        convert_to_tensor(torch.as_tensor(batchdata[k]), track_meta=False).to(
            device=device, non_blocking=non_blocking, **kwargs
        )
        for k in ("image", "text", "sample_id")
    )


@dataclass
class _GuardedStep:
    """What the deferred non-finite check needs of one iteration (device tensors, read on the host later)."""

    iteration: int
    epoch: int
    found_inf: torch.Tensor  # 0-d float, 1 = the optimizer skipped this step
    parts: dict[str, torch.Tensor]
    sample_ids: torch.Tensor


class CXRCMLTrainer(SupervisedTrainer):
    """Train an open_clip CLIP model with L = L_c + w * L_m on image + caption batches.

    Each iteration encodes the films and captions (under DDP: gathers the global batch, see the module docstring),
    fires ``IterationEvents.FORWARD_COMPLETED`` (the :class:`~monai_cxrcml.handlers.PseudoLabelHandler` stores
    the image embeddings there and, under its ``"batch"`` schedule, fits the mixture), looks up the pseudo-labels of
    the batch's films on ``engine.state.pseudo_labels`` / ``engine.state.responsibilities``, computes the loss,
    steps the optimiser unless the loss (or, with clipping, the gradient norm) is not finite, and clamps the learned
    logit scale to [0, ln 100] as CLIP does.

    ``engine.state.output`` holds ``loss``, ``loss_contrastive``, ``loss_metric`` and ``logit_scale`` (floats
    as 0-d tensors on the device, for ``StatsHandler``/``TensorBoardStatsHandler``: reading them synchronises, so
    log every few iterations) and, during the iteration, the detached ``image_features`` [B, D] and their
    ``sample_id`` [B] (the global batch under DDP).

    Parameters
    ----------
    device, max_epochs, train_data_loader, network, optimizer, epoch_length, iteration_update,
    postprocessing, key_train_metric, additional_metrics, metric_cmp_fn, event_names,
    event_to_attr, optim_set_to_none, to_kwargs
        As in :class:`monai.engines.SupervisedTrainer`.
    train_handlers
        As in :class:`monai.engines.SupervisedTrainer`; ``None`` entries (a component a config disabled) are skipped.
    pseudo_labels
        The source of the triplet term's pseudo-labels, a :class:`~monai_cxrcml.handlers.PseudoLabelHandler`
        (anything with ``attach(engine)`` that publishes ``engine.state.pseudo_labels``). It is attached before the
        other handlers, so its diagnostics are in ``engine.state.metrics`` when they log; None: no metric term.
    loss_function
        A :class:`~monai_cxrcml.losses.CXRCMLLoss`.
    non_blocking
        Copy batches to the device asynchronously (default; needs a DataLoader with ``pin_memory=True`` to overlap).
    prepare_batch
        Returns ``(image, text, sample_id)`` on the device; :func:`prepare_clip_batch` by default.
    amp
        Mixed precision on CUDA (ignored on the CPU).
    amp_dtype
        ``"bfloat16"`` (default: no loss scaling needed) or ``"float16"`` (with a gradient scaler).
    grad_clip_norm
        Clip the global gradient norm to this value; None = no clipping.
    channels_last
        Hand the image tower channels-last batches (convert the network too: ``network.to(memory_format=
        torch.channels_last)``, as ``bundle/configs/train.yaml`` does with ``channels_last: true``). Convolutions
        then skip layout conversions: +15-28% images/s for the demo's convolutional tower on the CPU, a loss for
        the ViTs (only their patch embedding is a convolution; ``benchmarks/bench_train_step.py``).
    nonfinite_loss
        ``"raise"`` stops training on a NaN/inf loss with a message naming the iteration and the batch's
        sample ids; ``"skip"`` logs it and counts it in ``engine.state.skipped_steps``. Either way the optimiser
        never steps on it.
    nonfinite_check_interval
        With a fused optimizer (on-device guard, see the module docstring): iterations between host reads of the
        guard's flags. A non-finite step is then raised or counted up to this many iterations late (and at the
        latest at the end of its epoch); the weights never see it.

    Films that the transforms skipped as unreadable (``on_error="skip"`` with
    :func:`~monai_cxrcml.transforms.skip_unreadable_collate`) are counted in ``engine.state.skipped_films`` and the
    count of each epoch is logged at its end; a
    batch left without any film is skipped (an error under DDP, where the other ranks would wait for this one).
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
        non_blocking: bool = True,
        prepare_batch: Callable = prepare_clip_batch,
        iteration_update: Callable[[Engine, Any], Any] | None = None,
        inferer: Inferer | None = None,
        postprocessing: Transform | None = None,
        key_train_metric: dict[str, Metric] | None = None,
        additional_metrics: dict[str, Metric] | None = None,
        metric_cmp_fn: Callable = default_metric_cmp_fn,
        train_handlers: Sequence | None = None,
        pseudo_labels: Any | None = None,
        amp: bool = False,
        amp_dtype: str = "bfloat16",
        grad_clip_norm: float | None = None,
        channels_last: bool = False,
        nonfinite_loss: str = "raise",
        nonfinite_check_interval: int = 50,
        event_names: list[str | EventEnum | type[EventEnum]] | None = None,
        event_to_attr: dict | None = None,
        optim_set_to_none: bool = True,
        to_kwargs: dict | None = None,
    ) -> None:
        if amp_dtype not in _AMP_DTYPES:
            raise ValueError(f"amp_dtype={amp_dtype!r} is not one of {sorted(_AMP_DTYPES)}.")
        if nonfinite_loss not in NONFINITE_POLICIES:
            raise ValueError(f"nonfinite_loss={nonfinite_loss!r} is not one of {NONFINITE_POLICIES}.")
        if nonfinite_check_interval < 1:
            raise ValueError(f"nonfinite_check_interval={nonfinite_check_interval} must be >= 1.")
        self.world_size = get_world_size()
        if self.world_size > 1:
            _check_distributed_setup(train_data_loader, network, loss_function)
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
            train_handlers=[h for h in (pseudo_labels, *(train_handlers or ())) if h is not None],
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
        self.channels_last = channels_last
        self.nonfinite_loss = nonfinite_loss
        self.nonfinite_check_interval = nonfinite_check_interval
        # the optimizer can skip a step on a device flag (fused Adam/AdamW/SGD; GradScaler's protocol)
        self.guard_on_device = self.scaler is None and bool(getattr(optimizer, "_step_supports_amp_scaling", False))
        self._unchecked: list[_GuardedStep] = []
        self.logger = logging.getLogger(__name__)
        self.state.skipped_steps = 0
        self.state.skipped_films = 0
        self._skipped_films_logged = 0
        self.add_event_handler(Events.EPOCH_COMPLETED, self.check_nonfinite)
        self.add_event_handler(Events.EPOCH_COMPLETED, self._report_skipped_films)

    def _iteration(self, engine: CXRCMLTrainer, batchdata: dict[str, Any]) -> dict[str, torch.Tensor]:
        if batchdata is None:
            raise ValueError("Must provide batch data for current iteration.")
        engine.state.skipped_films += int(batchdata.get("num_skipped", 0))
        if "image" not in batchdata and "num_skipped" in batchdata:  # every film of the batch was unreadable
            if self.world_size > 1:
                raise RuntimeError(
                    f"iteration {engine.state.iteration}: every film of this rank's batch was unreadable, and under "
                    "DDP the other ranks would wait for it: fix the image root or remove the unreadable films "
                    "(logged above) from the datalist."
                )
            self.logger.warning(
                "iteration %d: every film of the batch was unreadable and skipped", engine.state.iteration
            )
            return engine.state.output
        images, texts, sample_ids = engine.prepare_batch(
            batchdata, engine.state.device, engine.non_blocking, **engine.to_kwargs
        )
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        model = engine.network
        model.train()
        engine.optimizer.zero_grad(set_to_none=engine.optim_set_to_none)
        with torch.autocast(torch.device(engine.state.device).type, enabled=engine.amp, **engine.amp_kwargs):
            image_features, text_features, logit_scale = _encode(model, images, texts)
            if self.world_size > 1:
                image_features, text_features, sample_ids = _global_batch(image_features, text_features, sample_ids)
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

        if self.guard_on_device:
            self._guarded_step(engine, loss, sample_ids)
        elif not torch.isfinite(loss):  # host read: the only guard an optimizer without a skip flag allows
            self._on_nonfinite(engine, engine.state.output, sample_ids, engine.state.iteration, engine.state.epoch)
            return engine.state.output
        elif engine.scaler is not None:
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
            unwrap_parallel(model).logit_scale.clamp_(0, math.log(100))
        return engine.state.output

    def _guarded_step(self, engine: CXRCMLTrainer, loss: torch.Tensor, sample_ids: torch.Tensor) -> None:
        """Backward and a step that the optimizer skips on the device when the loss or gradient norm is not finite."""
        found_inf = (~torch.isfinite(loss.detach())).float()
        loss.backward()
        engine.fire_event(IterationEvents.BACKWARD_COMPLETED)
        parts = {k: v for k, v in engine.state.output.items() if v.ndim == 0}
        if self.grad_clip_norm is not None:
            norm = torch.nn.utils.clip_grad_norm_(engine.network.parameters(), self.grad_clip_norm)
            found_inf = torch.maximum(found_inf, (~torch.isfinite(norm)).float())
            parts["grad_norm"] = norm.detach()
        # every rank computes the same loss, but a replica must never step alone
        found_inf = all_reduce_max(found_inf)
        engine.optimizer.found_inf = found_inf
        try:
            engine.optimizer.step()
        finally:
            del engine.optimizer.found_inf
        self._unchecked.append(_GuardedStep(engine.state.iteration, engine.state.epoch, found_inf, parts, sample_ids))
        if len(self._unchecked) >= self.nonfinite_check_interval:
            self.check_nonfinite(engine)

    def check_nonfinite(self, engine: CXRCMLTrainer | None = None) -> None:
        """Read the on-device guard's flags of the iterations not yet checked (one host synchronisation).

        Raises or counts each skipped step as ``nonfinite_loss`` says. Runs every ``nonfinite_check_interval``
        iterations and at the end of every epoch; a no-op for the host guard.
        """
        if not self._unchecked:
            return
        steps, self._unchecked = self._unchecked, []
        flags = torch.stack([step.found_inf for step in steps]).cpu()
        for step, flag in zip(steps, flags.tolist()):
            if flag:
                self._on_nonfinite(self, step.parts, step.sample_ids, step.iteration, step.epoch)

    def _report_skipped_films(self, engine: CXRCMLTrainer) -> None:
        """Log how many unreadable films this epoch skipped (each was also logged with its path and reason)."""
        new = engine.state.skipped_films - self._skipped_films_logged
        if new:
            self.logger.warning(
                "epoch %d: %d unreadable film(s) skipped (%d in the run so far); their paths and reasons are logged "
                "above", engine.state.epoch, new, engine.state.skipped_films,
            )
        self._skipped_films_logged = engine.state.skipped_films

    def _on_nonfinite(
        self, engine: CXRCMLTrainer, parts: dict[str, torch.Tensor], sample_ids: torch.Tensor, iteration: int,
        epoch: int,
    ) -> None:
        scalars = {k: float(v) for k, v in parts.items() if torch.is_tensor(v) and v.ndim == 0}
        what = "loss" if not math.isfinite(scalars.get("loss", math.nan)) else "gradient norm"
        values = ", ".join(f"{k}={v:.4g}" for k, v in scalars.items())
        where = f"iteration {iteration} (epoch {epoch}), sample ids {sample_ids.tolist()}"
        if self.nonfinite_loss == "raise":
            raise FloatingPointError(
                f"non-finite {what} at {where}: {values}. Lower lr, enable grad_clip_norm, or set "
                "nonfinite_loss='skip' to skip such steps."
            )
        engine.state.skipped_steps += 1
        self.logger.warning("skipped the step at %s: non-finite %s (%s)", where, what, values)


def _check_distributed_setup(loader: Iterable, network: torch.nn.Module, loss_function: torch.nn.Module) -> None:
    """Refuse multi-process set-ups that would silently train wrong (see the module docstring)."""
    sampler = getattr(loader, "sampler", None)
    if isinstance(sampler, ClusterBalancedSampler):
        raise ValueError(
            "ClusterBalancedSampler (balanced_sampler: true) is single-process: under torchrun every rank would draw "
            "the same batches. Set balanced_sampler: false for multi-GPU training."
        )
    if isinstance(sampler, (RandomSampler, SequentialSampler)):
        raise ValueError(
            f"the training DataLoader's {type(sampler).__name__} gives every rank the whole data set: use a "
            "DistributedSampler (bundle/configs/multi_gpu_train.yaml sets train#sampler)."
        )
    if not isinstance(network, DistributedDataParallel):
        raise ValueError(
            "under torchrun the network must be wrapped in torch.nn.parallel.DistributedDataParallel, or its "
            "gradients are not averaged over ranks (bundle/configs/multi_gpu_train.yaml wraps it)."
        )
    contrastive = getattr(loss_function, "contrastive_loss", None)
    if getattr(contrastive, "world_size", 1) > 1:
        raise ValueError(
            "CXRCMLLoss was given rank/world_size, but CXRCMLTrainer already gathers the global batch for the loss: "
            "remove train#loss#rank, #world_size, #local_loss and #gather_with_grad from the config."
        )


def _global_batch(
    image_features: torch.Tensor, text_features: torch.Tensor, sample_ids: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Every rank's rows in rank order; embeddings keep their gradient to this rank's rows."""
    counts = gather_counts(sample_ids.shape[0])
    return (
        all_gather_rows(image_features, counts, with_grad=True),
        all_gather_rows(text_features, counts, with_grad=True),
        all_gather_rows(sample_ids, counts),
    )


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
