"""Tokenise captions with a CLIP tokenizer (``monai_cxrcml.networks.get_tokenizer(name)``), as a MapTransform."""

from __future__ import annotations

import logging
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any

import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform

__all__ = ["Tokenized"]

logger = logging.getLogger(__name__)


class Tokenized(MapTransform):
    """Caption string -> token ids LongTensor ``[L]`` (a list of captions -> ``[N, L]``).

    The tokenizer travels with the transform to DataLoader workers. A caption that fills the whole context (``L``
    tokens, 77 for CLIP) may have been cut short; the first such caption is logged as a warning per transform
    instance, since the findings at its end are lost.

    Parameters
    ----------
    keys
        Caption keys (default ``"caption"``).
    tokenizer
        Texts -> token ids ``[N, L]``, e.g. ``monai_cxrcml.networks.get_tokenizer("ViT-B-32-quickgelu")``.
    output_key
        Key for the token ids (default ``"text"``); one per caption key, or ``None`` to replace the caption.
    allow_missing_keys
        Do not raise when a key is absent.
    """

    def __init__(
        self,
        keys: KeysCollection = "caption",
        tokenizer: Callable[[list[str]], torch.Tensor] | None = None,
        output_key: str | Sequence[str] | None = "text",
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        if not callable(tokenizer):
            raise TypeError(f"Tokenized needs a tokenizer callable (texts -> token ids), got {tokenizer!r}: pass "
                            "monai_cxrcml.networks.get_tokenizer(model_name).")
        if output_key is None:
            self.output_keys = tuple(self.keys)
        else:
            self.output_keys = (output_key,) if isinstance(output_key, str) else tuple(output_key)
        if len(self.output_keys) != len(self.keys):
            raise ValueError(f"Tokenized: {len(self.keys)} keys {self.keys} but output_key={output_key!r}")
        self.tokenizer = tokenizer
        self._warned_full = False

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key, out_key in self.key_iterator(d, self.output_keys):
            caption = d[key]
            if isinstance(caption, str):
                d[out_key] = self._tokenize([caption])[0]
            elif isinstance(caption, Sequence) and all(isinstance(c, str) for c in caption):
                d[out_key] = self._tokenize(list(caption))
            else:
                raise TypeError(f"Tokenized: '{key}' must be a caption string or a list of them, got {type(caption)}")
        return d

    def _tokenize(self, captions: list[str]) -> torch.Tensor:
        tokens = self.tokenizer(captions).long()
        if not self._warned_full and bool((tokens[:, -1] != 0).any()):
            self._warned_full = True
            full = captions[int((tokens[:, -1] != 0).nonzero()[0, 0])]
            logger.warning(
                "Tokenized: a caption fills all %d tokens and was probably truncated (later findings lost); "
                "shorten captions, e.g. by sampling a subset of findings. Caption: %r",
                tokens.shape[-1], full,
            )
        return tokens
