"""Checks of the bundle's command-line settings that MONAI's CLI cannot make itself.

``python -m monai.bundle run ... --resume true`` hands the config the *text* ``"true"``: the CLI (python-fire) reads
only ``True``/``False`` as booleans, and every non-empty text is true in Python, so ``--augmentation false`` would
silently keep augmentation on. :func:`require_switches` runs first in the training config's ``initialize`` and
stops such a run with a message saying what to type.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["require_switches"]


def require_switches(allow_mapping: tuple[str, ...] = (), **switches: Any) -> None:
    """Raise ``ValueError`` naming every config id among ``switches`` whose value is not a bool.

    Parameters
    ----------
    allow_mapping
        Ids that may also hold a mapping (e.g. ``augmentation``: on/off or a dict of options).
    switches
        Config id -> value, e.g. ``resume=@resume``.
    """
    wrong = {key: value for key, value in switches.items()
             if not isinstance(value, bool) and not (key in allow_mapping and isinstance(value, Mapping))}
    if wrong:
        shown = ", ".join(f"{key}={value!r}" for key, value in wrong.items())
        raise ValueError(
            f"{shown}: these settings are switches and take True or False. On the command line write them "
            "capitalised (--resume True, --augmentation False): MONAI's CLI reads 'true'/'false' as text, which "
            "Python would treat as on."
        )
