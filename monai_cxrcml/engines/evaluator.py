"""Zero-shot evaluation of a CLIP model inside MONAI: class prompts encoded once per run, films scored in batches."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from ignite.engine import Engine, EventEnum, Events
from ignite.metrics import Metric
from monai.engines import SupervisedEvaluator
from monai.engines.utils import default_metric_cmp_fn, default_prepare_batch
from monai.inferers import Inferer
from monai.transforms import Transform
from monai.utils import ForwardMode
from torch.utils.data import DataLoader

from monai_cxrcml.networks import PromptSet, ZeroShotClassifier, unwrap_parallel

__all__ = ["ZeroShotEvaluator"]


class ZeroShotEvaluator(SupervisedEvaluator):
    """Score films against positive/negative class prompts with the current state of a CLIP model.

    At the start of every run the class prompts are encoded once with the model's text tower (so an evaluator
    attached to a training run sees the text tower as trained so far) and the image tower is shared with the
    training model, not copied. Each iteration's output holds ``pred`` (probabilities [B, C], scaled by the
    model's logit scale or a fixed one), ``label`` [B, C], ``image_features`` (the L2-normalised image embeddings
    [B, D] the scores were computed from, taken from the same forward pass) and, when the batch carries them,
    ``label_mask``, ``subject_id`` and ``dicom_id``, so :class:`~monai_cxrcml.handlers.MultiLabelAUC` can mask
    unknown labels and bootstrap by patient and :class:`~monai_cxrcml.handlers.PredictionWriter` can save the
    embeddings.

    Parameters
    ----------
    clip_model
        The open_clip CLIP being evaluated (a DDP wrapper is unwrapped); its prompts are encoded at each run start.
    tokenizer
        Its tokenizer (:func:`monai_cxrcml.networks.get_tokenizer`).
    classifier
        Instead of ``clip_model`` and ``tokenizer``: a ready :class:`~monai_cxrcml.networks.ZeroShotClassifier`
        (e.g. a trained model's, :func:`~monai_cxrcml.model_bundle.create_scorer`), scored as it is.
    class_names, prompts
        Classes to score and the prompt set (see :class:`~monai_cxrcml.networks.PromptSet`).
    scale
        ``"model"`` (the learned logit scale) or a fixed scale (1.0: CheXzero's raw cosines); see
        :class:`~monai_cxrcml.networks.ZeroShotClassifier`.
    passthrough_keys
        Batch keys copied into ``engine.state.output``.
    val_handlers
        As in :class:`monai.engines.SupervisedEvaluator`; ``None`` entries (a component a config disabled) are
        skipped.
    device, val_data_loader, epoch_length, non_blocking, prepare_batch, iteration_update, inferer,
    postprocessing, key_val_metric, additional_metrics, metric_cmp_fn, amp, mode, event_names,
    event_to_attr, to_kwargs, amp_kwargs
        As in :class:`monai.engines.SupervisedEvaluator` (batches are not decollated).
    """

    def __init__(
        self,
        device: torch.device | str,
        val_data_loader: Iterable | DataLoader,
        clip_model: torch.nn.Module | None = None,
        tokenizer: Callable | None = None,
        class_names: Sequence[str] | str | None = "cxrlt2024",
        prompts: str | PromptSet | Mapping = "present_absent",
        scale: str | float = "model",
        passthrough_keys: Sequence[str] = ("label_mask", "subject_id", "dicom_id"),
        epoch_length: int | None = None,
        non_blocking: bool = False,
        prepare_batch: Callable = default_prepare_batch,
        iteration_update: Callable[[Engine, Any], Any] | None = None,
        inferer: Inferer | None = None,
        postprocessing: Transform | None = None,
        key_val_metric: dict[str, Metric] | None = None,
        additional_metrics: dict[str, Metric] | None = None,
        metric_cmp_fn: Callable = default_metric_cmp_fn,
        val_handlers: Sequence | None = None,
        amp: bool = False,
        mode: ForwardMode | str = ForwardMode.EVAL,
        event_names: list[str | EventEnum | type[EventEnum]] | None = None,
        event_to_attr: dict | None = None,
        to_kwargs: dict | None = None,
        amp_kwargs: dict | None = None,
        classifier: ZeroShotClassifier | None = None,
    ) -> None:
        if (classifier is None) == (clip_model is None or tokenizer is None):
            raise ValueError("ZeroShotEvaluator scores either a CLIP (clip_model and tokenizer) or a ready classifier.")
        if classifier is None:
            clip_model = unwrap_parallel(clip_model)
            classifier = ZeroShotClassifier.from_clip(clip_model, tokenizer, class_names, prompts, scale)
        super().__init__(
            device=device,
            val_data_loader=val_data_loader,
            network=classifier,
            epoch_length=epoch_length,
            non_blocking=non_blocking,
            prepare_batch=prepare_batch,
            iteration_update=iteration_update,
            inferer=inferer,
            postprocessing=postprocessing,
            key_val_metric=key_val_metric,
            additional_metrics=additional_metrics,
            metric_cmp_fn=metric_cmp_fn,
            val_handlers=[h for h in (val_handlers or ()) if h is not None],
            amp=amp and torch.device(device).type == "cuda",
            mode=mode,
            event_names=event_names,
            event_to_attr=event_to_attr,
            decollate=False,
            to_kwargs=to_kwargs,
            amp_kwargs=amp_kwargs,
        )
        self.clip_model = clip_model
        self.tokenizer = tokenizer
        self.passthrough_keys = tuple(passthrough_keys)
        if clip_model is not None:
            self.add_event_handler(Events.STARTED, self._encode_prompts)

    def _encode_prompts(self, engine: ZeroShotEvaluator) -> None:
        was_training = self.clip_model.training
        self.network.encode_prompts(self.clip_model, self.tokenizer)
        self.clip_model.train(was_training)

    def _iteration(self, engine: ZeroShotEvaluator, batchdata: dict[str, Any]) -> dict:
        features: list[torch.Tensor] = []
        hook = self.network.visual.register_forward_hook(lambda module, args, out: features.append(out.detach()))
        try:
            output = super()._iteration(engine, batchdata)
        finally:
            hook.remove()
        if len(features) == 1:  # one image-tower call (an inferer that calls it more often has no single embedding)
            output["image_features"] = F.normalize(features[0].float(), dim=-1)
        output.update({k: batchdata[k] for k in self.passthrough_keys if k in batchdata})
        return output
