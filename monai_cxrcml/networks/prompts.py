"""Zero-shot class prompts: positive/negative template sets, named presets, and their text embeddings.

A class is scored by comparing an image with a *positive* prompt ("pleural effusion is present") and a *negative*
prompt ("pleural effusion is absent"); several templates per side are averaged as in CLIP's prompt ensembles
(L2-normalise each text embedding, average, re-normalise). :data:`PROMPT_PRESETS` names the sets this project
uses; ``docs/design.md`` ("Prompts") gives the measurements behind them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from monai_cxrcml.data.classes import finding_phrase
from monai_cxrcml.data.mapping_files import read_mapping_file

__all__ = [
    "NORMALITY_PHRASES",
    "PROMPT_PRESETS",
    "PromptSet",
    "encode_class_prompts",
    "encode_texts",
    "read_prompts",
]

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
    phrase
        What fills ``{}``: ``"finding"`` (:func:`~monai_cxrcml.data.classes.finding_phrase`, lower case, e.g.
        "rounded atelectasis") or ``"as_given"`` (the class name itself, as CheXzero formats its templates).
    double_negation
        Let the templates negate a normality class without an override ("no Normal"), as CheXzero does (its issue
        #19); off, such a class without an override is refused.
    """

    positive: _Texts
    negative: _Texts
    overrides: Mapping[str, tuple[_Texts, _Texts]] = field(default_factory=dict)
    name: str = "custom"
    pooled_negative: bool = False
    phrase: str = "finding"
    double_negation: bool = False

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
        if self.phrase not in ("finding", "as_given"):
            raise ValueError(f"PromptSet.phrase={self.phrase!r}: use 'finding' or 'as_given'.")

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
        if phrase in NORMALITY_PHRASES and not self.double_negation:
            raise ValueError(
                f"class {class_name!r} denies findings, so the negative template(s) {list(self.negative)} would make a "
                f"double negation (e.g. {self.negative[0].format(phrase)!r}). Give it explicit prompts in "
                f"PromptSet.overrides, e.g. {{{class_name!r}: (['no acute cardiopulmonary process'], "
                "['acute cardiopulmonary process'])}."
            )
        filler = class_name if self.phrase == "as_given" else phrase
        return tuple(t.format(filler) for t in self.positive), tuple(t.format(filler) for t in self.negative)

    def to_dict(self) -> dict:
        """The constructor's arguments as plain lists and strings (JSON/YAML-ready; :meth:`create` reads it back)."""
        return {
            "name": self.name,
            "positive": list(self.positive),
            "negative": list(self.negative),
            "overrides": {key: {"positive": list(pos), "negative": list(neg)}
                          for key, (pos, neg) in self.overrides.items()},
            "pooled_negative": self.pooled_negative,
            "phrase": self.phrase,
            "double_negation": self.double_negation,
        }

    def denies_findings(self, class_name: str) -> bool:
        """Whether the negative prompt of a normality class negates it ("no Normal"): CheXzero's issue #19."""
        phrase = finding_phrase(class_name)
        return phrase in NORMALITY_PHRASES and phrase not in self.overrides and self.double_negation


_NORMAL_REPORT = (("no acute cardiopulmonary process",), ("acute cardiopulmonary process",))

_PRESENT_ABSENT_NORMAL = {
    "Normal": (("normal is present",), ("normal is absent",)),
    "No Finding": (("normal is present",), ("normal is absent",)),
}

PROMPT_PRESETS: dict[str, PromptSet] = {
    # "{} is present" / "{} is absent": the grammar of this project's meta-label captions; Normal keeps
    # "normal is present/absent", the phrases its captions write for normal films (no double negation)
    "present_absent": PromptSet(
        positive=("{} is present",),
        negative=("{} is absent",),
        overrides=_PRESENT_ABSENT_NORMAL,
        name="present_absent",
    ),
    # the same against one negative shared by every class: the re-normalised mean of the "{} is absent" embeddings
    "present_absent_pooled": PromptSet(
        positive=("{} is present",),
        negative=("{} is absent",),
        overrides=_PRESENT_ABSENT_NORMAL,
        name="present_absent_pooled",
        pooled_negative=True,
    ),
    # CheXzero's pair exactly: "{}" / "no {}" with the class name as given, "no Normal" included (its issue #19)
    "chexzero": PromptSet(
        positive=("{}",), negative=("no {}",), name="chexzero", phrase="as_given", double_negation=True
    ),
    # CheXzero's grammar with the negation on the abnormality for normality classes, as radiology reports write it
    "plain_negation": PromptSet(
        positive=("{}",),
        negative=("no {}",),
        overrides={"Normal": _NORMAL_REPORT, "No Finding": _NORMAL_REPORT},
        name="plain_negation",
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
"""Named prompt sets (``docs/design.md``, "Prompts")."""


def read_prompts(value: str | None) -> str | dict | None:
    """A prompt preset name as given, or the PromptSet mapping of a JSON/YAML file (checked); None stays None.

    A file holds ``{"positive": [...], "negative": [...], "overrides": {class: [[positives], [negatives]]}}``.

    Raises
    ------
    ValueError
        For a value that is neither a preset nor a file, or a file that does not hold a valid prompt set (the
        message names the file).
    """
    if value is None or value in PROMPT_PRESETS:
        return value
    if not Path(value).is_file():
        raise ValueError(f"prompts {value!r}: not a preset ({', '.join(PROMPT_PRESETS)}) and not a file.")
    mapping = read_mapping_file(value, "a prompt set with 'positive', 'negative' and 'overrides'")
    try:
        PromptSet.create(mapping)  # fail here, naming the file, rather than after the model is built
    except (TypeError, ValueError) as e:
        raise ValueError(f"{value}: not a valid prompt set ({e}).") from e
    return dict(mapping)


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
