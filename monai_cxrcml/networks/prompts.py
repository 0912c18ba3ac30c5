"""Zero-shot class prompts: positive/negative template sets, named presets, and their text embeddings.

A class is scored by comparing an image with a *positive* prompt ("pleural effusion is present") and a *negative*
prompt ("pleural effusion is absent"); several templates per side are averaged as in CLIP's prompt ensembles
(L2-normalise each text embedding, average, re-normalise).

Presets (:data:`PROMPT_PRESETS`):

- ``"present_absent"``: ``"{} is present"`` / ``"{} is absent"``, the grammar of this project's meta-label
  captions, for models trained with them.
- ``"chexzero"``: ``"{}"`` / ``"no {}"``, CheXzero's pair, for CheXzero weights used as they are.
- ``"ensemble"``: both grammars plus report phrasings, averaged.
- ``"present_absent_pooled"``: ``"{} is present"`` against one negative shared by all classes, the re-normalised
  mean of every class's ``"{} is absent"`` embedding (``pooled_negative=True``). A text tower trained from scratch
  on meta-label captions barely tells one "x is absent" from another (their embeddings have a mean pairwise cosine
  of 0.91-0.94 on the demo's model), so the class's own negative adds mostly noise, and for "Normal" it behaves like
  a double negation (AUC 0.05 with its own negative, 0.93 with the pooled one, same checkpoint); the pooled
  negative is a per-film reference level instead (BENCHMARKS.md, "Prompts").

Normality classes ("Normal" of CXR-LT, "No Finding" of CheXpert) are statements about the absence of findings,
so a negative template would make a double negation ("no normal", "no finding is absent"); CheXzero's "no No
Finding" scored AUC 0.07 (its issue #19). Every preset therefore gives them explicit prompts, and a prompt set
without them refuses to build their prompts. ``"present_absent"`` keeps "normal is present" / "normal is
absent", the phrases its captions write for Normal films (no double negation); ``"chexzero"`` uses the report
phrase "no acute cardiopulmonary process" against "acute cardiopulmonary process", i.e. the negation sits on the
abnormality, as in radiology reports. "No Finding" shares Normal's prompts in every preset.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from monai_cxrcml.data.classes import finding_phrase

__all__ = ["NORMALITY_PHRASES", "PROMPT_PRESETS", "PromptSet", "encode_class_prompts", "encode_texts"]

NORMALITY_PHRASES: frozenset[str] = frozenset({"normal", "no finding", "no findings"})
"""Class phrases (``finding_phrase``) that deny findings: templates must not negate them; overrides are required."""

_Texts = tuple[str, ...]


def _as_texts(value: str | Sequence[str], what: str) -> _Texts:
    texts = (value,) if isinstance(value, str) else tuple(str(v) for v in value)
    if not texts or any(not t.strip() for t in texts):
        raise ValueError(f"{what} must be a non-empty string or a non-empty list of non-empty strings, got {value!r}.")
    return texts


@dataclass(frozen=True)
class PromptSet:
    """Positive and negative prompt templates, with per-class prompt overrides.

    Parameters
    ----------
    positive
        Templates with one ``{}`` for the class phrase (``finding_phrase(name)``), e.g. ``("{} is present",)``.
    negative
        Templates of the negative prompt, e.g. ``("{} is absent",)``.
    overrides
        Class name -> ``(positive prompts, negative prompts)``, full texts used instead of the templates. Keys match
        class names through ``finding_phrase`` (``"Normal"`` and ``"normal"`` are the same key). From a config, each
        value may be a pair of lists or ``{"positive": [...], "negative": [...]}``.
    name
        Label shown in logs (the preset name, or ``"custom"``).
    pooled_negative
        Score every class against one negative embedding, the re-normalised mean of all the classes' negative
        embeddings, instead of its own (see ``"present_absent_pooled"``).
    """

    positive: _Texts
    negative: _Texts
    overrides: Mapping[str, tuple[_Texts, _Texts]] = field(default_factory=dict)
    name: str = "custom"
    pooled_negative: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "positive", _as_texts(self.positive, "PromptSet.positive"))
        object.__setattr__(self, "negative", _as_texts(self.negative, "PromptSet.negative"))
        for template in self.positive + self.negative:
            if template.count("{}") != 1 or template.replace("{}", "").count("{") or template.count("}") != 1:
                raise ValueError(f"prompt template {template!r} must contain exactly one '{{}}' for the class phrase.")
        overrides = {}
        for cls_name, value in dict(self.overrides).items():
            if isinstance(value, Mapping):
                pos, neg = value.get("positive"), value.get("negative")
            elif isinstance(value, Sequence) and not isinstance(value, str) and len(value) == 2:
                pos, neg = value
            else:
                raise ValueError(
                    f"PromptSet.overrides[{cls_name!r}] must be (positive prompts, negative prompts) or "
                    f"{{'positive': [...], 'negative': [...]}}, got {value!r}."
                )
            overrides[finding_phrase(cls_name)] = (
                _as_texts(pos, f"overrides[{cls_name!r}] positive"),
                _as_texts(neg, f"overrides[{cls_name!r}] negative"),
            )
        object.__setattr__(self, "overrides", overrides)

    @classmethod
    def create(cls, prompts: str | PromptSet | Mapping) -> PromptSet:
        """A PromptSet from a preset name, a PromptSet, or a config mapping of the constructor's arguments."""
        if isinstance(prompts, PromptSet):
            return prompts
        if isinstance(prompts, str):
            if prompts not in PROMPT_PRESETS:
                raise ValueError(f"unknown prompt preset {prompts!r}: choose one of {sorted(PROMPT_PRESETS)}.")
            return PROMPT_PRESETS[prompts]
        if isinstance(prompts, Mapping):
            return cls(**prompts)
        raise TypeError(f"prompts must be a preset name, a PromptSet or a mapping, got {type(prompts).__name__}.")

    def texts(self, class_name: str) -> tuple[_Texts, _Texts]:
        """Positive and negative prompt texts of one class.

        Raises
        ------
        ValueError
            For a normality class ("Normal", "No Finding") without an override: a negative template would negate a
            statement of no finding.
        """
        phrase = finding_phrase(class_name)
        if phrase in self.overrides:
            return self.overrides[phrase]
        if phrase in NORMALITY_PHRASES:
            raise ValueError(
                f"class {class_name!r} denies findings, so the negative template(s) {list(self.negative)} would make a "
                f"double negation (e.g. {self.negative[0].format(phrase)!r}). Give it explicit prompts in "
                f"PromptSet.overrides, e.g. {{{class_name!r}: (['no acute cardiopulmonary process'], "
                "['acute cardiopulmonary process'])}."
            )
        return tuple(t.format(phrase) for t in self.positive), tuple(t.format(phrase) for t in self.negative)


_NORMAL_REPORT = (("no acute cardiopulmonary process",), ("acute cardiopulmonary process",))

_PRESENT_ABSENT_NORMAL = {
    "Normal": (("normal is present",), ("normal is absent",)),
    "No Finding": (("normal is present",), ("normal is absent",)),
}

PROMPT_PRESETS: dict[str, PromptSet] = {
    "present_absent": PromptSet(
        positive=("{} is present",),
        negative=("{} is absent",),
        overrides=_PRESENT_ABSENT_NORMAL,
        name="present_absent",
    ),
    "present_absent_pooled": PromptSet(
        positive=("{} is present",),
        negative=("{} is absent",),
        overrides=_PRESENT_ABSENT_NORMAL,
        name="present_absent_pooled",
        pooled_negative=True,
    ),
    "chexzero": PromptSet(
        positive=("{}",),
        negative=("no {}",),
        overrides={"Normal": _NORMAL_REPORT, "No Finding": _NORMAL_REPORT},
        name="chexzero",
    ),
    "ensemble": PromptSet(
        positive=("{} is present", "{}", "findings consistent with {}"),
        negative=("{} is absent", "no {}", "no evidence of {}"),
        overrides={
            name: (
                ("normal is present", "normal chest radiograph", "no acute cardiopulmonary process"),
                ("normal is absent", "abnormal chest radiograph", "acute cardiopulmonary process"),
            )
            for name in ("Normal", "No Finding")
        },
        name="ensemble",
    ),
}
"""Named prompt sets; see the module docstring."""


@torch.no_grad()
def encode_texts(
    model: torch.nn.Module,
    tokenizer: Callable[[list[str]], torch.Tensor],
    texts: Sequence[str],
    device: str | torch.device | None = None,
    batch_size: int = 256,
) -> torch.Tensor:
    """L2-normalised text embeddings ``[N, D]`` (float32) of ``texts``, computed in eval mode without gradients.

    The model's training mode is restored afterwards.
    """
    device = torch.device(device) if device is not None else next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        chunks = [
            model.encode_text(tokenizer(list(texts[i : i + batch_size])).to(device)).float()
            for i in range(0, len(texts), batch_size)
        ]
    finally:
        model.train(was_training)
    return F.normalize(torch.cat(chunks), dim=-1)


def encode_class_prompts(
    model: torch.nn.Module,
    tokenizer: Callable[[list[str]], torch.Tensor],
    class_names: Sequence[str],
    prompts: str | PromptSet | Mapping = "present_absent",
    device: str | torch.device | None = None,
    batch_size: int = 256,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Positive and negative class embeddings of an open_clip model, averaged over templates.

    Parameters
    ----------
    model
        open_clip CLIP (``encode_text``); run in eval mode without gradients, its mode restored after.
    tokenizer
        ``open_clip.get_tokenizer(model_name)`` or any callable texts -> token ids ``[N, L]``.
    class_names
        Class names, e.g. ``CXRLT2024_CLASSES``; phrases come from ``finding_phrase``.
    prompts
        Preset name, :class:`PromptSet` or its config mapping.
    device
        Device to encode on; default the model's.
    batch_size
        Texts per forward pass.

    Returns
    -------
    tuple[torch.Tensor, torch.Tensor]
        ``pos [C, D]`` and ``neg [C, D]``, float32, L2-normalised: for each class the re-normalised mean of its
        L2-normalised prompt embeddings (every row of ``neg`` the re-normalised mean of those rows with
        ``pooled_negative``).
    """
    prompt_set = PromptSet.create(prompts)
    if not class_names:
        raise ValueError("class_names is empty: pass at least one class name.")
    per_class = [prompt_set.texts(name) for name in class_names]
    texts, owner = [], []  # owner: row of [pos classes; neg classes] each text belongs to
    for side in (0, 1):
        for c, pair in enumerate(per_class):
            texts += pair[side]
            owner += [side * len(class_names) + c] * len(pair[side])
    embeddings = encode_texts(model, tokenizer, texts, device=device, batch_size=batch_size)
    index = torch.tensor(owner, device=embeddings.device)
    sums = torch.zeros(2 * len(class_names), embeddings.shape[1], device=embeddings.device)
    sums.index_add_(0, index, embeddings)
    means = F.normalize(sums, dim=-1)  # re-normalising the sum equals re-normalising the mean
    pos, neg = means[: len(class_names)], means[len(class_names) :]
    if prompt_set.pooled_negative:
        neg = F.normalize(neg.mean(0, keepdim=True), dim=-1).expand_as(neg).contiguous()
    return pos, neg
