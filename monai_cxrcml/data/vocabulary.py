"""Class names across data sets: which names of CXR-LT, CheXpert, NIH, PadChest and VinDr-CXR mean one finding.

The table (``resources/class_vocabulary.csv``) has one row per finding (``concept``, the name prompts use when no
vocabulary of the model has it: CXR-LT's where there is one) and one column per vocabulary, e.g. ``Pleural
Effusion`` = CheXpert ``Pleural Effusion`` = NIH ``Effusion`` = PadChest ``pleural effusion`` = VinDr ``Pleural
effusion``, and ``Normal`` = ``No Finding`` = ``normal`` = ``No finding``. A vocabulary names a finding at most once.

:func:`map_class_names` turns the classes of an evaluated file into the names a model scores: the model's own
class where it was trained on a synonym (``"model_class"`` when the name is the model's already, ``"mapped"``
otherwise), the finding's concept name where the table knows it (``"mapped"``), else the name itself, scored
zero-shot (``"own_name"``). A user mapping (``{source name: name to score}``) comes first.
"""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources

import pandas as pd

from monai_cxrcml.data.mapping_files import read_mapping_file

__all__ = [
    "MAPPINGS",
    "VOCABULARIES",
    "ClassMatch",
    "class_concepts",
    "class_mapping_frame",
    "concept_of",
    "map_class_names",
    "read_class_map",
    "synonyms",
]

MAPPINGS: tuple[str, ...] = ("model_class", "mapped", "own_name")
"""How a class was scored: under the model's own class name, under a synonym from a mapping, or from its own name."""


def _read_table() -> tuple[tuple[str, ...], tuple[dict[str, str], ...]]:
    with resources.files("monai_cxrcml.data").joinpath("resources/class_vocabulary.csv").open() as f:
        reader = csv.DictReader(f)
        rows = tuple({k: v.strip() for k, v in row.items()} for row in reader)
        return tuple(c for c in reader.fieldnames if c != "concept"), rows


VOCABULARIES, _ROWS = _read_table()
"""The vocabularies (columns) of the table: ``cxrlt``, ``chexpert``, ``nih``, ``padchest``, ``vindr``."""

_CONCEPT_OF: dict[str, str] = {}
for _row in _ROWS:
    for _name in (_row["concept"], *(_row[v] for v in VOCABULARIES)):
        if _name:
            _CONCEPT_OF.setdefault(_name, _row["concept"])
            _CONCEPT_OF.setdefault(_name.lower(), _row["concept"])


def class_concepts() -> dict[str, dict[str, str]]:
    """The table: ``concept -> {vocabulary: name}`` (vocabularies that do not name the finding are left out)."""
    return {row["concept"]: {v: row[v] for v in VOCABULARIES if row[v]} for row in _ROWS}


def concept_of(name: str) -> str | None:
    """The concept a class name belongs to (exact spelling first, then case-insensitively), or None."""
    return _CONCEPT_OF.get(name, _CONCEPT_OF.get(name.lower()))


def synonyms(name: str) -> tuple[str, ...]:
    """Every name of ``name``'s finding (its concept first, then each vocabulary's), or ``()`` if the table lacks it."""
    concept = concept_of(name)
    if concept is None:
        return ()
    names = class_concepts()[concept]
    return tuple(dict.fromkeys([concept, *names.values()]))


@dataclass(frozen=True)
class ClassMatch:
    """How one class of an evaluated data set is scored.

    Attributes
    ----------
    source
        The class name in the evaluated file.
    scored
        The name the model's prompts are built from.
    mapping
        One of :data:`MAPPINGS`.
    """

    source: str
    scored: str
    mapping: str


def map_class_names(
    source_names: Sequence[str],
    model_names: Sequence[str] = (),
    user_mapping: Mapping[str, str] | None = None,
) -> list[ClassMatch]:
    """The name each class of a data set is scored under (module docstring), in ``source_names`` order.

    Parameters
    ----------
    source_names
        The evaluated file's class names.
    model_names
        The classes the model was trained on (its bundle's); empty for none.
    user_mapping
        ``{source name: name to score}`` taking precedence over the table.

    Raises
    ------
    ValueError
        When ``user_mapping`` names a class the data set does not have (the message names it and lists the
        data set's classes), or when two classes would be scored under one name.
    """
    user_mapping = dict(user_mapping or {})
    unknown = [name for name in user_mapping if name not in source_names]
    if unknown:
        raise ValueError(f"the class mapping names {unknown}, which the data set does not have; its classes are "
                         f"{list(source_names)}.")
    model = list(model_names)
    matches = []
    for name in source_names:
        if name in user_mapping:
            target = user_mapping[name]
            kind = "mapped" if target != name else "model_class" if name in model else "own_name"
            matches.append(ClassMatch(name, target, kind))
        elif name in model:
            matches.append(ClassMatch(name, name, "model_class"))
        elif synonyms(name):
            trained = [n for n in model if concept_of(n) == concept_of(name)]
            matches.append(ClassMatch(name, trained[0] if trained else concept_of(name), "mapped"))
        else:
            matches.append(ClassMatch(name, name, "own_name"))
    scored = [m.scored for m in matches]
    clash = sorted({s for s in scored if scored.count(s) > 1})
    if clash:
        sources = {s: [m.source for m in matches if m.scored == s] for s in clash}
        raise ValueError(f"classes {sources} would be scored under one name: give them distinct names in the class "
                         "mapping.")
    return matches


def class_mapping_frame(matches: Sequence[ClassMatch]) -> pd.DataFrame:
    """Per class of the evaluated file (index): ``scored_name`` and ``mapping`` (``model_class``, ``mapped`` or
    ``own_name``), the columns added to ``per_class.csv`` and ``metrics.json``."""
    return pd.DataFrame({"scored_name": [m.scored for m in matches], "mapping": [m.mapping for m in matches]},
                        index=pd.Index([m.source for m in matches], name="class"))


def read_class_map(path: str | None) -> dict[str, str] | None:
    """The user mapping ``{class of the evaluated file: name to score it under}`` of a JSON or YAML file.

    Raises
    ------
    ValueError
        When the file is missing, or does not map names to names (the message names the file).
    """
    if path is None:
        return None
    what = "a class map like {'COPD signs': 'Emphysema'}"
    mapping = read_mapping_file(path, what)
    if not all(isinstance(v, str) for v in mapping.values()):
        raise ValueError(f"{path}: not {what}; every value is the name to score a class under.")
    return {str(k): v for k, v in mapping.items()}
