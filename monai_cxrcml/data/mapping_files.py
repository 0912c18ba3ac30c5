"""Mappings written by users as JSON or YAML files: prompt sets, class maps."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import yaml

__all__ = ["read_mapping_file"]


def read_mapping_file(path: str | Path, what: str) -> Mapping:
    """The mapping held by a ``.json`` file (read as JSON) or any other file (read as YAML).

    Raises
    ------
    ValueError
        When ``path`` is not a file or does not hold a mapping; the message names the file and ``what`` it
        should hold (e.g. ``"a class map like {'COPD signs': 'Emphysema'}"``).
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: not a file; pass a JSON or YAML file holding {what}.")
    text = path.read_text()
    try:
        mapping = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as e:
        kind = "JSON" if path.suffix.lower() == ".json" else "YAML"
        raise ValueError(f"{path}: not readable as {kind} ({e}).") from e
    if not isinstance(mapping, Mapping):
        raise ValueError(f"{path}: holds a {type(mapping).__name__}, not {what}.")
    return mapping
