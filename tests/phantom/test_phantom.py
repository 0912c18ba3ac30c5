"""The phantom CXR-LT 2024 data set: real file formats, label rules, determinism and visible signs."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from monai_cxrcml.cli.phantom import main
from monai_cxrcml.data.classes import CHEXPERT_CLASSES, CXRLT2024_CLASSES, CXRLT2024_TRAIN_COUNTS
from monai_cxrcml.data.mimic import view_positions
from monai_cxrcml.phantom.generator import (
    CXRLT_ID_COLUMNS,
    IMPLIES,
    METADATA_COLUMNS,
    NORMAL_COMPATIBLE,
    SPLIT_FILES,
    compressed_prevalence,
    make_phantom,
)
from monai_cxrcml.phantom.signs import SIGNS, render_film, sample_anatomy, vary_anatomy

CLASSES = list(CXRLT2024_CLASSES)
PATH_PATTERN = re.compile(r"files/p(\d\d)/p(\d{8})/s(\d{8})/([0-9a-f]{8}(?:-[0-9a-f]{8}){4})\.jpg")


def read(root: Path, name: str) -> pd.DataFrame:
    return pd.read_csv(root / name, dtype=str, keep_default_na=False)


@pytest.fixture(scope="module")
def labels(phantom_dir: Path) -> pd.DataFrame:
    return read(phantom_dir, "labels.csv")


def file_digests(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_same_arguments_give_identical_files_whatever_the_jobs(phantom_dir: Path, tmp_path: Path) -> None:
    again = make_phantom(tmp_path / "again", patients=120, size=128, seed=0, jobs=2)
    assert file_digests(again) == file_digests(phantom_dir)
    other = make_phantom(tmp_path / "other", patients=120, size=128, seed=1)
    assert read(other, "labels.csv")["dicom_id"].tolist() != read(phantom_dir, "labels.csv")["dicom_id"].tolist()


def test_cxrlt_files_follow_the_real_schema(phantom_dir: Path, labels: pd.DataFrame) -> None:
    columns = [*CXRLT_ID_COLUMNS, *CLASSES]
    for name in SPLIT_FILES.values():
        assert read(phantom_dir, name).columns.tolist() == columns, name
    assert labels.columns.tolist() == [*columns, "split"]
    assert set(labels["split"]) == set(SPLIT_FILES)
    for split, name in SPLIT_FILES.items():
        part = read(phantom_dir, name)
        pd.testing.assert_frame_equal(
            part, labels[labels["split"] == split].drop(columns="split").reset_index(drop=True)
        )
    assert labels["dicom_id"].is_unique
    assert set(np.unique(labels[CLASSES].to_numpy())) == {"0", "1"}


def test_ids_and_paths_follow_mimic_cxr_jpg(phantom_dir: Path, labels: pd.DataFrame) -> None:
    for row in labels.itertuples():
        match = PATH_PATTERN.fullmatch(row.fpath)
        assert match, row.fpath
        assert match.groups() == (row.subject_id[:2], row.subject_id, row.study_id[1:], row.dicom_id)
        assert (phantom_dir / row.fpath).is_file()
    subjects, studies = labels["subject_id"].astype(int), labels["study_id"].str[1:].astype(int)
    assert labels["study_id"].str.startswith("s").all()
    assert subjects.between(10_000_000, 19_999_999).all() and studies.between(50_000_000, 59_999_999).all()
    assert labels.groupby("study_id")["subject_id"].nunique().max() == 1


def test_films_are_8_bit_portrait_jpegs_with_frontal_and_lateral_views(phantom_dir: Path, labels: pd.DataFrame) -> None:
    assert {"PA", "AP", "LATERAL", "LL"} <= set(labels["ViewPosition"])
    for row in labels.groupby("ViewCodeSequence_CodeMeaning").head(5).itertuples():
        with Image.open(phantom_dir / row.fpath) as image:
            assert image.format == "JPEG" and image.mode == "L"
            width, height = image.size
            assert height == 128 and width < height, (row.fpath, image.size)


def test_empty_view_positions_keep_the_view_code_meaning(labels: pd.DataFrame) -> None:
    empty = labels["ViewPosition"] == ""
    assert empty.any()
    views = view_positions(labels)  # the reader's rule: ViewPosition, else ViewCodeSequence_CodeMeaning
    assert set(views[empty]) <= {"PA", "AP", "LATERAL", "LL"} and set(views[empty]) & {"PA", "AP"}
    assert (views[~empty] == labels.loc[~empty, "ViewPosition"]).all()


def test_patients_are_split_disjointly_with_several_studies_and_films(labels: pd.DataFrame) -> None:
    assert labels.groupby("subject_id")["split"].nunique().max() == 1
    patients = labels.groupby("split")["subject_id"].nunique()
    assert patients["train"] > patients["test"] > patients["development"] > 0
    assert labels.groupby("subject_id")["study_id"].nunique().max() > 1
    films = labels.groupby("study_id").size()
    assert films.min() == 1 and films.max() == 3


def test_labels_are_study_level(labels: pd.DataFrame) -> None:
    assert (labels.groupby("study_id")[CLASSES].nunique() == 1).all().all()


def test_co_occurrence_rules_hold(labels: pd.DataFrame) -> None:
    y = labels[CLASSES].astype(int)
    for child, parents in IMPLIES.items():
        assert y[child].sum() > 0
        for parent in parents:
            assert (y.loc[y[child] == 1, parent] == 1).all(), (child, parent)
    excluded = [c for c in CLASSES if c != "Normal" and c not in NORMAL_COMPATIBLE]
    normal = y["Normal"] == 1
    assert normal.sum() > 0 and (y.loc[normal, excluded] == 0).all().all()
    assert y.loc[normal, "Support Devices"].sum() > 0  # allowed, as in CheXpert's "No Finding"
    # findings that share a cause appear together more often than chance
    assert np.corrcoef(y["Edema"], y["Cardiomegaly"])[0, 1] > 0.1
    assert np.corrcoef(y["Edema"], y["Pleural Effusion"])[0, 1] > 0.1


def test_every_class_has_positives_in_every_split(phantom_dir: Path) -> None:
    train = read(phantom_dir, "train_labeled.csv")[CLASSES].astype(int).sum()
    assert train.min() >= 2, train[train < 2]
    for name in SPLIT_FILES.values():
        assert read(phantom_dir, name)[CLASSES].astype(int).sum().min() >= 1, name


def test_prevalence_follows_the_compressed_real_ranking(labels: pd.DataFrame) -> None:
    prevalence = compressed_prevalence(0.5)
    order = sorted(CLASSES, key=CXRLT2024_TRAIN_COUNTS.get)
    assert [prevalence[c] for c in order] == sorted(prevalence.values())
    assert prevalence["Support Devices"] == pytest.approx(86079 / 258871)
    assert prevalence["Lobar Atelectasis"] == pytest.approx(86079 / 258871 * (129 / 86079) ** 0.5)
    assert compressed_prevalence(1.0)["Normal"] == pytest.approx(34292 / 258871)
    # classes no implication inflates are positive in exactly max(1, round(p * studies)) studies of each split
    studies = labels.drop_duplicates("study_id")
    for split, part in studies.groupby("split"):
        for name in ("Nodule", "Support Devices", "Azygos Lobe", "Edema"):
            expected = max(1, round(prevalence[name] * len(part)))
            assert part[name].astype(int).sum() == expected, (split, name)


def test_mimic_metadata_matches_the_films(phantom_dir: Path, labels: pd.DataFrame) -> None:
    metadata = read(phantom_dir, "mimic-cxr-2.0.0-metadata.csv")
    assert metadata.columns.tolist() == list(METADATA_COLUMNS)
    merged = labels.merge(metadata, on="dicom_id", suffixes=("", "_meta"), validate="one_to_one")
    assert len(merged) == len(labels) == len(metadata)
    assert (merged["subject_id"] == merged["subject_id_meta"]).all()
    assert ("s" + merged["study_id_meta"] == merged["study_id"]).all()
    assert (merged["ViewPosition"] == merged["ViewPosition_meta"]).all()
    assert (merged["ViewCodeSequence_CodeMeaning"] == merged["ViewCodeSequence_CodeMeaning_meta"]).all()
    assert metadata["StudyDate"].str.fullmatch(r"21\d{6}").all()
    for row in merged.head(20).itertuples():
        with Image.open(phantom_dir / row.fpath) as image:
            assert image.size == (int(row.Columns), int(row.Rows))


def test_mimic_chexpert_labels_derive_from_the_study_labels(phantom_dir: Path, labels: pd.DataFrame) -> None:
    chexpert = pd.read_csv(phantom_dir / "mimic-cxr-2.0.0-chexpert.csv", dtype={"subject_id": str, "study_id": str})
    assert chexpert.columns.tolist() == ["subject_id", "study_id", *CHEXPERT_CLASSES]
    studies = labels.drop_duplicates("study_id").assign(study_id=lambda f: f["study_id"].str[1:])
    merged = studies.merge(chexpert, on=["subject_id", "study_id"], suffixes=("", "_chexpert"), validate="one_to_one")
    assert len(merged) == len(chexpert) == len(studies)
    values = chexpert[list(CHEXPERT_CLASSES)].to_numpy()
    assert set(np.unique(values[~np.isnan(values)])) == {-1.0, 0.0, 1.0} and np.isnan(values).any()
    for name in CHEXPERT_CLASSES:
        source = "Normal" if name == "No Finding" else name
        mine = merged[f"{name}_chexpert" if name in CLASSES else name]
        positive = merged[source].astype(int) == 1
        assert mine[positive].isin([1.0, -1.0]).all(), name
        assert not (mine[~positive] == 1.0).any(), name
    assert (merged.loc[merged["Normal"] == "1", "No Finding"] == 1.0).all()


@pytest.mark.parametrize("name", [c for c in CLASSES if c != "Normal"])
def test_each_sign_stays_visible_and_distinct_at_64_pixels(name: str, sign_differences: dict[str, np.ndarray]) -> None:
    diff = sign_differences[name]
    assert np.abs(diff).max() >= 12, f"{name}: sign changes the 64-px film by {np.abs(diff).max():.1f} grey levels"
    assert (np.abs(diff) >= 6).sum() >= 3, f"{name}: sign covers fewer than 3 pixels at 64 px"
    for other, other_diff in sign_differences.items():
        if other != name:
            corr = np.corrcoef(diff.ravel(), other_diff.ravel())[0, 1]
            assert corr < 0.9, f"{name} and {other} look alike at 64 px (correlation {corr:.2f})"


@pytest.fixture(scope="module")
def sign_differences() -> dict[str, np.ndarray]:
    """Each class's sign at full strength, as the change it makes to one 64-px frontal film."""
    height, width = 256, 213
    anatomy = vary_anatomy(sample_anatomy(np.random.default_rng(3)), np.random.default_rng(4), "PA")

    def film(names: list[str]) -> np.ndarray:
        pixels = render_film(
            height,
            width,
            "PA",
            anatomy,
            {n: 1.0 for n in names},
            {n: np.random.default_rng(7) for n in names},
            np.random.default_rng(5),
        )
        small = Image.fromarray(pixels).resize((53, 64), Image.Resampling.BILINEAR)
        return np.asarray(small, np.float32)

    plain = film([])
    return {name: film([name]) - plain for name in SIGNS if name != "Normal"}


def test_films_at_2048_pixels_render(tmp_path: Path) -> None:
    anatomy = vary_anatomy(sample_anatomy(np.random.default_rng(0)), np.random.default_rng(0), "AP")
    names = ["Support Devices", "Pleural Effusion", "Cardiomegaly"]
    pixels = render_film(
        2048,
        1707,
        "AP",
        anatomy,
        {n: 0.8 for n in names},
        {n: np.random.default_rng(1) for n in names},
        np.random.default_rng(2),
    )
    assert pixels.shape == (2048, 1707) and pixels.dtype == np.uint8 and 20 < pixels.mean() < 235


def test_bad_arguments_and_folders_are_refused(
    phantom_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    with pytest.raises(ValueError, match="split_fractions"):
        make_phantom(tmp_path / "a", patients=10, split_fractions=(0.5, 0.1, 0.1))
    with pytest.raises(ValueError, match="compression"):
        make_phantom(tmp_path / "b", patients=10, compression=0.0)
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="no phantom"):
        make_phantom(tmp_path / "busy", patients=10)
    small = make_phantom(tmp_path / "small", patients=6, size=64, seed=3)
    with pytest.raises(FileExistsError, match="overwrite"):
        make_phantom(small, patients=6, size=64, seed=4)
    make_phantom(small, patients=6, size=64, seed=4, overwrite=True)
    assert sorted(p.name for p in small.iterdir()) == sorted(
        [
            "files",
            "README.txt",
            "labels.csv",
            "mimic-cxr-2.0.0-metadata.csv",
            "mimic-cxr-2.0.0-chexpert.csv",
            "phantom.json",
            *SPLIT_FILES.values(),
        ]
    )
    listed = {str(p.relative_to(small)) for p in (small / "files").rglob("*.jpg")}
    assert listed == set(read(small, "labels.csv")["fpath"])  # the old seed's films are gone
    assert main([str(small), "--patients", "6"]) == 2
    assert "overwrite" in capsys.readouterr().err


def test_command_line_writes_the_data_set(tmp_path: Path) -> None:
    assert (
        main(
            [
                str(tmp_path / "cli"),
                "--patients",
                "5",
                "--size",
                "64",
                "--seed",
                "2",
                "--split-fractions",
                "0.6",
                "0.2",
                "0.2",
            ]
        )
        == 0
    )
    frame = read(tmp_path / "cli", "labels.csv")
    assert frame["subject_id"].nunique() == 5
    assert "Regenerate: python -m monai_cxrcml.phantom" in (tmp_path / "cli" / "README.txt").read_text()
