"""The mapping table between class vocabularies, and the names a model scores another data set's classes under."""

from __future__ import annotations

from importlib import resources

import pandas as pd
import pytest
from _real_tables import PADCHEST, requires_tables, table

from monai_cxrcml.data import read_label_table
from monai_cxrcml.data.classes import CHEXPERT_CLASSES, CXRLT2024_CLASSES, CXRLT2024_UNSEEN_CLASSES
from monai_cxrcml.data.nih import NIH_CLASSES
from monai_cxrcml.data.vindr import VINDR_CLASSES
from monai_cxrcml.data.vocabulary import VOCABULARIES, class_concepts, concept_of, map_class_names, synonyms

KNOWN = {"cxrlt": {*CXRLT2024_CLASSES, *CXRLT2024_UNSEEN_CLASSES}, "chexpert": set(CHEXPERT_CLASSES),
         "nih": set(NIH_CLASSES), "vindr": set(VINDR_CLASSES)}


def test_every_name_of_the_table_exists_in_its_vocabulary():
    concepts = class_concepts()
    assert VOCABULARIES == ("cxrlt", "chexpert", "nih", "padchest", "vindr")
    for vocabulary, names in KNOWN.items():
        listed = [row[vocabulary] for row in concepts.values() if vocabulary in row]
        assert set(listed) <= names, set(listed) - names
        assert len(listed) == len(set(listed)), vocabulary  # a vocabulary names a finding once
    for concept, row in concepts.items():
        assert row.get("cxrlt", concept) == concept  # the concept is CXR-LT's name where CXR-LT has one
        assert len(row) >= 2, concept  # a row maps at least two vocabularies


@requires_tables
def test_padchest_names_of_the_table_exist_in_the_real_padchest():
    real = set(read_label_table(table(PADCHEST), frontal_only=False, class_names=None).class_names)
    listed = [row["padchest"] for row in class_concepts().values() if "padchest" in row]
    assert set(listed) <= real, set(listed) - real


def test_synonyms_of_the_examples():
    assert set(synonyms("Effusion")) == {"Pleural Effusion", "Effusion", "pleural effusion", "Pleural effusion"}
    assert set(synonyms("No Finding")) == {"Normal", "No Finding", "normal", "No finding"}
    assert concept_of("PLEURAL EFFUSION") == "Pleural Effusion" and synonyms("Bronchiectasis") == ()


def test_nih_classes_scored_by_a_cxrlt_model():
    matches = {m.source: (m.scored, m.mapping) for m in map_class_names(NIH_CLASSES, CXRLT2024_CLASSES)}
    assert matches["Effusion"] == ("Pleural Effusion", "mapped")
    assert matches["No Finding"] == ("Normal", "mapped")
    assert matches["Pleural_Thickening"] == ("Pleural Thickening", "mapped")
    assert matches["Mass"] == ("Mass", "model_class")
    assert {m for _, m in matches.values()} == {"mapped", "model_class"}  # every NIH class has a CXR-LT name


def test_padchest_names_scored_by_a_model_trained_on_synonyms_and_own_names():
    names = ["pleural effusion", "normal", "scoliosis", "COPD signs"]
    matches = map_class_names(names, ["Pleural Effusion", "No Finding", "Edema"])
    assert [(m.scored, m.mapping) for m in matches] == [
        ("Pleural Effusion", "mapped"),  # the model's own class of that finding
        ("No Finding", "mapped"),  # the model was trained on a synonym of Normal: its name is used
        ("Scoliosis", "mapped"),  # the table's concept name (CXR-LT task 3's), not a model class
        ("COPD signs", "own_name"),  # unknown to the table: zero-shot from its own name
    ]


def test_user_mapping_first_and_unknown_class_named():
    matches = map_class_names(["COPD signs", "normal"], ["Emphysema"], {"COPD signs": "Emphysema"})
    assert [(m.scored, m.mapping) for m in matches] == [("Emphysema", "mapped"), ("Normal", "mapped")]
    kept = map_class_names(["Effusion", "Mass"], ["Mass", "Pleural Effusion"], {"Effusion": "Effusion", "Mass": "Mass"})
    assert [(m.scored, m.mapping) for m in kept] == [("Effusion", "own_name"), ("Mass", "model_class")]
    with pytest.raises(ValueError, match=r"the class mapping names \['Efusion'\].*\['Effusion', 'Mass'\]"):
        map_class_names(["Effusion", "Mass"], user_mapping={"Efusion": "Pleural Effusion"})


def test_two_classes_under_one_name_are_refused():
    with pytest.raises(ValueError, match=r"'Pleural Effusion': \['Effusion', 'fluid'\].*scored under one name"):
        map_class_names(["Effusion", "fluid"], user_mapping={"fluid": "Pleural Effusion"})


def test_table_file_is_a_plain_csv_with_a_concept_column():
    with resources.files("monai_cxrcml.data").joinpath("resources/class_vocabulary.csv").open() as f:
        frame = pd.read_csv(f, dtype=str, keep_default_na=False)
    assert frame.columns.tolist() == ["concept", *VOCABULARIES] and frame["concept"].is_unique
