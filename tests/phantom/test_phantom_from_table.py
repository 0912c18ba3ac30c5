"""Phantoms shaped by a real label table (``--labels``): real rows, patients and views, synthetic films, signs."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from _real_tables import CHEXPERT, NIH, PADCHEST, VINDR, requires_tables, table
from PIL import Image

from monai_cxrcml.cli.phantom import main
from monai_cxrcml.data import detect_label_format, read_film, read_label_table
from monai_cxrcml.phantom import ensure_phantom, make_table_phantom, phantom_label_file
from monai_cxrcml.phantom.signs import SIGNS, Canvas, GeneratedSign, sample_anatomy, sign_for


def digests(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_signs_of_any_class_name():
    assert sign_for("Effusion") is SIGNS["Pleural Effusion"]
    assert sign_for("pleural effusion") is SIGNS["Pleural Effusion"]
    for normal in ("No Finding", "normal", "No finding"):
        assert sign_for(normal).draw is None and sign_for(normal).reshape is None  # normality: no sign
    copd = sign_for("COPD signs")
    assert copd.describe.startswith("generated:") and copd.draw == GeneratedSign.from_name("COPD signs")
    names = ["COPD signs", "NSG tube", "unchanged", "chronic changes", "air trapping", "dual chamber device"]
    assert len({GeneratedSign.from_name(n) for n in names}) == len(names)


@pytest.mark.parametrize("shape", ["blob", "ring", "band", "dots", "haze", "streak"])
def test_every_generated_shape_draws_in_its_lung(shape):
    anatomy = sample_anatomy(np.random.default_rng(0))
    canvas = Canvas(128, 106)
    canvas.layers["lung"][:] = 1.0
    GeneratedSign(shape, "L", 0.5, 0.5, 0.04)(canvas, anatomy, 1.0, np.random.default_rng(1))
    drawn = np.abs(canvas.layers["image"]) > 0.01
    assert drawn.sum() >= 20, shape  # visible at this size
    columns = np.flatnonzero(drawn.any(axis=0))
    assert columns.mean() > 106 / 2  # the patient's left lung is on the right of the film


@pytest.fixture(scope="module")
def phantom(tmp_path_factory) -> Path:
    """An NIH-format phantom of 25 patients drawn from the real NIH table."""
    return make_table_phantom(tmp_path_factory.mktemp("nih"), table(NIH), patients=25, size=64, seed=3)


@requires_tables
def test_rows_are_the_real_rows_of_the_drawn_patients(phantom):
    label_file = phantom_label_file(phantom)
    assert label_file.name == "Data_Entry_2017_v2020.csv" and detect_label_format(label_file) == "nih"
    written = pd.read_csv(label_file, dtype=str, keep_default_na=False)
    source = pd.read_csv(table(NIH), dtype=str, keep_default_na=False)
    assert written["Patient ID"].nunique() == 25
    expected = source[source["Patient ID"].isin(set(written["Patient ID"]))].reset_index(drop=True)
    pd.testing.assert_frame_equal(written, expected)  # every row of those patients, verbatim, in file order

@requires_tables
def test_films_exist_where_the_reader_expects_them_and_follow_the_labels(phantom):
    read = read_label_table(phantom_label_file(phantom), check_files=True)
    source = read_label_table(table(NIH))
    rows = source.frame.reset_index().set_index("dicom_id").loc[read.frame["dicom_id"], "index"].to_numpy()
    np.testing.assert_array_equal(read.labels, source.labels[rows])
    film = Image.open(read.frame["image"].iloc[0])
    assert film.format == "PNG" and film.mode == "L" and film.height == 64

@requires_tables
def test_same_arguments_give_identical_files(phantom, tmp_path):
    again = make_table_phantom(tmp_path / "again", table(NIH), patients=25, size=64, seed=3, jobs=2)
    assert digests(again) == digests(phantom)
    other = make_table_phantom(tmp_path / "other", table(NIH), patients=25, size=64, seed=4)
    assert digests(other).keys() != digests(phantom).keys()

@requires_tables
def test_readme_says_the_films_are_synthetic(phantom):
    readme = (phantom / "README.txt").read_text()
    assert "Synthetic chest films, NOT real images" in readme and "Data_Entry_2017_v2020.csv.gz" in readme
    manifest = json.loads((phantom / "phantom.json").read_text())
    assert (manifest["label_format"], manifest["patients"]) == ("nih", 25)


@requires_tables
def test_padchest_phantom_keeps_views_and_is_reused_or_rebuilt(tmp_path):
    out = tmp_path / "padchest"
    assert main([str(out), "--labels", str(table(PADCHEST)), "--patients", "15", "--size", "64"]) == 0
    read = read_label_table(phantom_label_file(out), frontal_only=False, check_files=True)
    assert detect_label_format(phantom_label_file(out)) == "padchest" and read.frame["subject_id"].nunique() == 15
    source = pd.read_csv(table(PADCHEST), dtype=str, keep_default_na=False)
    mine = source[source["ImageID"].isin(set(read.frame["dicom_id"]))]
    assert (read.frame["view"] == mine["Projection"].map({"PA": "PA", "L": "LATERAL", "AP": "AP", "COSTAL": "COSTAL",
                                                          "AP_horizontal": "AP_HORIZONTAL", "EXCLUDE": "EXCLUDE",
                                                          "UNK": ""}).to_numpy()).all()
    assert len(read_label_table(phantom_label_file(out))) == int(mine["Projection"].isin(
        ["PA", "AP", "AP_horizontal"]).sum())
    stamp = (out / "README.txt").stat().st_mtime_ns
    assert ensure_phantom(out, patients=15, size=64, labels=table(PADCHEST)) == out
    assert (out / "README.txt").stat().st_mtime_ns == stamp  # same arguments: reused
    ensure_phantom(out, patients=12, size=64, labels=table(PADCHEST))
    rebuilt = read_label_table(phantom_label_file(out), frontal_only=False)
    assert rebuilt.frame["subject_id"].nunique() == 12
    assert {str(p) for p in out.rglob("*.png")} == set(rebuilt.frame["image"])  # the old films are gone


def test_table_phantom_refuses_a_foreign_folder_and_too_many_patients(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("mine")
    labels = tmp_path / "nih.csv"
    pd.DataFrame({"Image Index": ["a.png", "b.png"], "Finding Labels": ["Mass", "No Finding"], "Patient ID": [1, 2],
                  "View Position": ["PA", "AP"]}).to_csv(labels, index=False)
    with pytest.raises(FileExistsError, match="holds no phantom"):
        make_table_phantom(tmp_path / "mine", labels, patients=1, size=64)
    with pytest.raises(ValueError, match=r"nih\.csv holds 2 patients: patients=3 cannot be drawn"):
        make_table_phantom(tmp_path / "new", labels, patients=3, size=64)


@requires_tables
@pytest.mark.parametrize("name, suffix", [(CHEXPERT, ".jpg"), (VINDR, ".dicom")])
def test_chexpert_and_vindr_phantoms_are_read_back_with_their_films(tmp_path, name, suffix):
    out = make_table_phantom(tmp_path / "phantom", table(name), patients=6, size=64)
    read = read_label_table(phantom_label_file(out), frontal_only=False, check_files=True)
    assert read.frame["subject_id"].nunique() == 6 and read.frame["image"].str.endswith(suffix).all()
    film = read_film(read.frame["image"].iloc[0])  # found from the content, whatever the suffix
    assert film.shape[0] == 64 and 48 < film.shape[1] < 64


def test_label_file_of_a_cxrlt_phantom_and_of_no_phantom(phantom_dir, tmp_path):
    assert phantom_label_file(phantom_dir) == phantom_dir / "train_labeled.csv"
    with pytest.raises(FileNotFoundError, match="holds no phantom"):
        phantom_label_file(tmp_path)
