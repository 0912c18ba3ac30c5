"""Scoring protocols: how a model turns films into class probabilities, as one named object.

A protocol fixes the image preprocessing (resize path, JPEG decoding, normalisation), the prompt set, the scoring
rule (learned logit scale or a fixed one; pooled negatives come with the prompt set; an optional calibration) and
the numeric precision. :data:`PROTOCOLS` names the standard ones; ``docs/design.md`` ("Scoring protocols") says why
each exists and what was measured.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from monai.transforms import Compose

from monai_cxrcml.data.chexzero_films import CHEXZERO_SIZE
from monai_cxrcml.metrics.temperature import apply_calibration
from monai_cxrcml.networks import PROMPT_PRESETS, PromptSet, ZeroShotClassifier
from monai_cxrcml.transforms import chest_film_transforms

__all__ = ["DEFAULT_PROTOCOL", "PROTOCOLS", "ScoringProtocol", "get_protocol"]

logger = logging.getLogger(__name__)

_RESIZES = ("longest_side", "chexzero")
_NORMALIZATIONS = ("chexzero", "clip")
_PRECISIONS = ("fp32", "autocast")


@dataclasses.dataclass(frozen=True)
class ScoringProtocol:
    """Preprocessing + prompts + scoring rule + precision of zero-shot scoring (see the module docstring).

    Parameters
    ----------
    name
        The protocol's name (a key of :data:`PROTOCOLS`, or any label for a custom one).
    resize
        ``"longest_side"`` (longest side to the model's size, bicubic, antialiased, zero-padded; JPEGs may be
        decoded at reduced scale) or ``"chexzero"`` (CheXzero's 8-bit 320 px LANCZOS square, normalised, then
        bicubic to the model's size).
    normalization
        ``"chexzero"`` or ``"clip"`` intensity statistics.
    jpeg_draft
        With ``resize="longest_side"``: decode JPEGs at 1/2, 1/4 or 1/8 scale when that stays above the size.
    antialias
        With ``resize="chexzero"``: antialias the final bicubic resize (torchvision >= 0.17's default).
    prompts
        Prompt preset name or :class:`~monai_cxrcml.networks.PromptSet` (or its mapping).
    scale
        ``"model"`` (the learned logit scale) or a fixed scale (1.0: raw cosines).
    precision
        ``"fp32"`` or ``"autocast"`` (bfloat16/float16 autocast on CUDA; fp32 on the CPU).
    calibration
        A calibration JSON file (:class:`~monai_cxrcml.metrics.Calibration`) applied to the classifier, or None.
    defects
        Known defects the protocol keeps on purpose (a reproduction), logged when it scores; the double negation of
        a normality class by the prompt set is found from the prompts and the classes.
    overridden
        Names of the fields set on top of the named protocol (filled by :meth:`with_knobs`).
    """

    name: str
    resize: str = "longest_side"
    normalization: str = "chexzero"
    jpeg_draft: bool = True
    antialias: bool = True
    prompts: str | PromptSet | Mapping = "present_absent"
    scale: str | float = "model"
    precision: str = "fp32"
    calibration: str | None = None
    defects: tuple[str, ...] = ()
    overridden: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for field, value, allowed in (("resize", self.resize, _RESIZES), ("normalization", self.normalization,
                                      _NORMALIZATIONS), ("precision", self.precision, _PRECISIONS)):
            if value not in allowed:
                raise ValueError(f"protocol {self.name!r}: {field}={value!r}; expected one of {allowed}.")
        if self.scale != "model" and not (isinstance(self.scale, (int, float)) and math.isfinite(self.scale)
                                          and self.scale > 0):
            raise ValueError(f"protocol {self.name!r}: scale={self.scale!r}; use 'model' or a number > 0.")
        object.__setattr__(self, "prompts", PromptSet.create(self.prompts))
        object.__setattr__(self, "defects", tuple(self.defects))
        object.__setattr__(self, "overridden", tuple(self.overridden))

    @property
    def autocast(self) -> bool:
        """Whether scoring runs under autocast (on CUDA)."""
        return self.precision == "autocast"

    def with_knobs(self, **knobs: Any) -> ScoringProtocol:
        """This protocol with the given fields replaced; ``None`` values are ignored (the protocol's own stand).

        Changed fields are recorded in ``overridden``, so logs and saved protocols show what differs from the name.
        """
        changes = {key: value for key, value in knobs.items() if value is not None}
        unknown = sorted(set(changes) - {f.name for f in dataclasses.fields(self)} - {"name", "overridden"})
        if unknown:
            raise ValueError(f"protocol {self.name!r} has no settable field {unknown}.")
        if "prompts" in changes:
            changes["prompts"] = PromptSet.create(changes["prompts"])
        changed = tuple(key for key, value in changes.items() if getattr(self, key) != value)
        if not changed:
            return self
        overridden = tuple(dict.fromkeys(self.overridden + changed))
        return dataclasses.replace(self, **changes, overridden=overridden)

    def transforms(
        self,
        image_size: int,
        *,
        train: bool = False,
        augment: bool | Mapping[str, Any] | None = None,
        cache_dir: str | os.PathLike | None = None,
        on_error: str = "raise",
        tokenizer: Callable | None = None,
        caption: Mapping[str, Any] | None = None,
    ) -> Compose:
        """The film pipeline of this protocol for a model of input size ``image_size``.

        See :func:`~monai_cxrcml.transforms.chest_film_transforms` for the other parameters; the result maps a
        datalist item to ``{"image": float32 [3, image_size, image_size], ...}``.
        """
        return chest_film_transforms(
            train, image_size, self.normalization, augment=augment, cache_dir=cache_dir, on_error=on_error,
            tokenizer=tokenizer, caption=caption, draft=self.jpeg_draft, resize=self.resize,
            antialias=self.antialias, chexzero_size=CHEXZERO_SIZE,
        )

    def classifier(
        self,
        model: str | torch.nn.Module,
        class_names: Sequence[str] | str | None,
        checkpoint: str | os.PathLike | None = None,
        tokenizer: Callable | None = None,
        device: str | torch.device = "cpu",
    ) -> ZeroShotClassifier:
        """A :class:`~monai_cxrcml.networks.ZeroShotClassifier` scoring ``class_names`` under this protocol.

        ``model`` is an open_clip config name (with ``checkpoint``) or a CLIP instance (with its ``tokenizer``);
        the protocol's calibration, when set, is applied.
        """
        network = ZeroShotClassifier(model, class_names, self.prompts, checkpoint, tokenizer=tokenizer, device=device,
                                     scale=self.scale)
        return apply_calibration(network, self.calibration)

    def announce(self, class_names: Sequence[str]) -> None:
        """Log the effective protocol (INFO) and, in one WARNING, the known defects it keeps for these classes."""
        logger.info("scoring protocol: %s", self.describe())
        defects = list(self.defects)
        denied = [name for name in class_names if self.prompts.denies_findings(name)]
        if denied:
            defects.insert(0, f"the double negation of {', '.join(map(repr, denied))} in its negative prompts "
                              f"({self.prompts.negative[0].format(denied[0])!r}; CheXzero issue #19: AUC 0.07 for "
                              "'No Finding')")
        if defects:
            logger.warning("protocol %r keeps, as a reproduction, %s. Protocol 'chexzero_corrected' avoids %s.",
                           self.name, "; ".join(defects), "them" if len(defects) > 1 else "it")

    def describe(self) -> str:
        """One line: the name, what was overridden, and every setting."""
        extra = f" with {', '.join(self.overridden)} overridden" if self.overridden else ""
        scale = "learned logit scale" if self.scale == "model" else f"fixed scale {self.scale:g}"
        resize = (f"CheXzero's {CHEXZERO_SIZE} px LANCZOS square then bicubic (antialias={self.antialias})"
                  if self.resize == "chexzero" else f"longest side, bicubic (JPEG draft decoding={self.jpeg_draft})")
        return (f"{self.name}{extra}: {resize}, {self.normalization} normalisation, prompts {self.prompts.name}"
                f"{' (pooled negative)' if self.prompts.pooled_negative else ''}, {scale}, {self.precision}"
                f"{', calibration ' + self.calibration if self.calibration else ''}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields; a preset prompt set is stored by name (:func:`get_protocol` reads it back)."""
        data = dataclasses.asdict(self)
        preset = PROMPT_PRESETS.get(self.prompts.name)
        data["prompts"] = self.prompts.name if preset == self.prompts else self.prompts.to_dict()
        data["defects"], data["overridden"] = list(self.defects), list(self.overridden)
        return data

    def save(self, path: str | os.PathLike) -> Path:
        """Write :meth:`to_dict` as JSON (folders created); returns the path."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        return path


_RAW_COSINES = ("raw cosines (s = 1): every probability sits near 0.5 (CheXzero issue #17), so AUC is meaningful "
                "but thresholds and calibration are not")

PROTOCOLS: dict[str, ScoringProtocol] = {
    protocol.name: protocol
    for protocol in (
        ScoringProtocol("present_absent"),
        ScoringProtocol("present_absent_pooled", normalization="clip", prompts="present_absent_pooled"),
        ScoringProtocol("chexzero", resize="chexzero", jpeg_draft=False, prompts="chexzero", scale=1.0,
                        defects=(_RAW_COSINES,)),
        ScoringProtocol("chexzero_corrected", resize="chexzero", jpeg_draft=False, prompts="plain_negation"),
    )
}
"""The named protocols (``docs/design.md``, "Scoring protocols"):

``present_absent``
    This project's trained models: longest side to the model's size, CheXzero's normalisation, "{} is present" /
    "{} is absent", the learned logit scale, fp32.
``present_absent_pooled``
    The phantom demo's: CLIP normalisation, and every class against one negative pooled over the classes.
``chexzero``
    CheXzero's pipeline exactly (``../shared/FACTS.md``): OpenCV's 8-bit reading, 320 px LANCZOS square, CheXzero's
    normalisation, bicubic to 224, "{}" / "no {}" with the class names as given, raw cosines, fp32.
``chexzero_corrected``
    CheXzero's preprocessing with its two defects removed: report phrases for normality classes and the learned
    logit scale.
"""

DEFAULT_PROTOCOL = "present_absent"
"""The protocol of the bundle's training config, and of inference where nothing else is known."""


def get_protocol(protocol: str | Mapping | ScoringProtocol | None = None, **knobs: Any) -> ScoringProtocol:
    """A protocol by name (:data:`PROTOCOLS`), from a saved mapping, or as given, with explicit knobs on top.

    Parameters
    ----------
    protocol
        Name, :meth:`ScoringProtocol.to_dict` mapping or a protocol; None is :data:`DEFAULT_PROTOCOL`.
    knobs
        Fields set on top (``prompts``, ``normalization``, ``scale``, ``precision``, ``calibration``, ...); None
        values keep the protocol's.

    Raises
    ------
    ValueError
        For an unknown name (the message lists the known ones) or an invalid field value.
    """
    if protocol is None:
        protocol = DEFAULT_PROTOCOL
    if isinstance(protocol, str):
        if protocol not in PROTOCOLS:
            raise ValueError(f"unknown scoring protocol {protocol!r}: choose one of {sorted(PROTOCOLS)}.")
        protocol = PROTOCOLS[protocol]
    elif isinstance(protocol, Mapping):
        unknown = sorted(set(protocol) - {f.name for f in dataclasses.fields(ScoringProtocol)})
        if unknown or "name" not in protocol:
            raise ValueError(f"a scoring protocol mapping needs 'name' and takes the fields of ScoringProtocol; "
                             f"unknown: {unknown}.")
        protocol = ScoringProtocol(**protocol)
    elif not isinstance(protocol, ScoringProtocol):
        raise TypeError(f"protocol must be a name, a mapping or a ScoringProtocol, got {type(protocol).__name__}.")
    return protocol.with_knobs(**knobs)
