"""MONAI Label app: the real server on 127.0.0.1 answers a JPEG and a MONOCHROME1 DICOM with the 40 class scores,
answers a non-image upload with a 4xx message and keeps serving; it serves a model bundle (a trained run, an exported
CheXzero-format checkpoint) with a single ``--conf`` and answers as the inference command line does.

Runs in the label environment (``.venv-label``: MONAI Label 0.8.5 with numpy<2, pydicom<3; see README.md,
``<!-- readme:label-test -->``). Skipped where MONAI Label is not installed (the main environment).
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from _films import asymmetric_film, write_dicom, write_pil

from monai_cxrcml.cli.export import main as export_main
from monai_cxrcml.cli.inference import main as inference_main
from monai_cxrcml.data.classes import CXRLT2024_CLASSES
from monai_cxrcml.data.films import FilmReadError
from monai_cxrcml.label import APP_DIR
from monai_cxrcml.metrics import Calibration
from monai_cxrcml.networks import create_clip

# Skip only where MONAI Label is not installed: in .venv-label a broken install must fail, not skip.
if importlib.util.find_spec("monailabel") is None:
    pytest.skip("MONAI Label is not installed: these tests run in .venv-label (README.md, readme:label-test)",
                allow_module_level=True)
import requests  # noqa: E402 (a MONAI Label dependency)

from monai_cxrcml.label.app.main import INFER_TASK as MODEL  # noqa: E402
from monai_cxrcml.label.app.zero_shot import ZeroShotInferTask  # noqa: E402

START_TIMEOUT_S = 240


def write_films(folder: Path) -> None:
    """The same displayed film as an 8-bit JPEG (``pa_film``) and as a 12-bit MONOCHROME1 DICOM (``m1_film``)."""
    folder.mkdir()
    film = asymmetric_film((300, 240))
    write_pil(folder / "pa_film.jpg", film, quality=95)
    stored = np.rint((1.0 - film) * 4095).astype(np.uint16)  # MONOCHROME1: bright bone = low stored values
    write_dicom(folder / "m1_film.dcm", stored, "MONOCHROME1", WindowCenter=2048, WindowWidth=4096)


def write_checkpoint(path: Path) -> Path:
    """A training checkpoint of the tiny model, as the bundle writes it: ``{"model": clip_state_dict}``."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        torch.save({"model": create_clip("cxrcml-tiny").state_dict()}, path)
    return path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> Path:
    """Films in ``studies/``, a checkpoint and a text file, in one temporary folder."""
    root = tmp_path_factory.mktemp("label")
    write_films(root / "studies")
    write_checkpoint(root / "model.pt")
    (root / "notes.txt").write_text("report: no acute cardiopulmonary process\n")
    return root


@contextlib.contextmanager
def serving(root: Path, studies: Path, conf: dict[str, str]):
    """Base URL of ``monailabel start_server`` serving a copy of the packaged app with these ``--conf`` pairs."""
    root.mkdir(parents=True, exist_ok=True)
    app = root / "app"  # MONAI Label writes model/, lib/, logs/, bin/ into the app folder: serve a copy
    shutil.copytree(APP_DIR, app, ignore=shutil.ignore_patterns("__pycache__", "model", "lib", "logs", "bin"))
    port = free_port()
    bin_dir = Path(sys.executable).parent
    command = [str(bin_dir / "monailabel"), "start_server", "--app", str(app), "--studies", str(studies)]
    command += ["--host", "127.0.0.1", "--port", str(port)]
    command += [token for key, value in conf.items() for token in ("--conf", key, value)]
    env = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        "MONAILABEL_PYEXE": sys.executable,  # the monailabel script runs `python -m monailabel.main`
        "MONAI_LABEL_SESSIONS": "false",
        "OMP_NUM_THREADS": "1",
    }
    log_path = root / "server.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if process.poll() is not None:
                pytest.fail(f"the server exited with {process.returncode}:\n{log_path.read_text()[-4000:]}")
            try:
                if requests.get(f"{url}/info/", timeout=5).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"the server did not answer /info/ in {START_TIMEOUT_S} s:\n{log_path.read_text()[-4000:]}")
            time.sleep(0.5)
        yield url
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@pytest.fixture(scope="module")
def server(files: Path):
    """The app serving the tiny checkpoint of ``files`` (bare, with its model name) on the CPU."""
    conf = {"checkpoint": str(files / "model.pt"), "model_name": "cxrcml-tiny", "device": "cpu"}
    with serving(files / "bare", files / "studies", conf) as url:
        yield url


def infer(url: str, image: str | None = None, upload: Path | None = None) -> requests.Response:
    """``POST /infer/cxrcml`` for a datastore image id, or with a file uploaded as form field ``file``."""
    if upload is None:
        return requests.post(f"{url}/infer/{MODEL}", params={"image": image}, timeout=60)
    with open(upload, "rb") as f:
        return requests.post(f"{url}/infer/{MODEL}", files={"file": (upload.name, f)}, timeout=60)


def scores_of(response: requests.Response) -> np.ndarray:
    """The 40 probabilities of an answer, after checking its form: class order, in [0, 1], both views agree."""
    assert response.status_code == 200, response.text
    answer = response.json()
    assert list(answer["scores"]) == list(CXRLT2024_CLASSES)
    assert [(p["idx"], p["label"]) for p in answer["prediction"]] == list(enumerate(CXRLT2024_CLASSES))
    scores = np.array(list(answer["scores"].values()))
    assert np.array_equal(scores, [p["score"] for p in answer["prediction"]])
    assert np.all((scores >= 0) & (scores <= 1))
    return scores


def test_info_and_datastore_list_the_classifier_and_films(server):
    info = requests.get(f"{server}/info/", timeout=10).json()
    assert info["models"][MODEL]["type"] == "classification"
    assert info["models"][MODEL]["labels"] == list(CXRLT2024_CLASSES)
    listing = requests.get(f"{server}/datastore/", params={"output": "all"}, timeout=10).json()
    assert {"pa_film", "m1_film"} <= set(listing["objects"])


def test_jpeg_and_monochrome1_dicom_get_the_same_40_scores(server):
    jpeg = scores_of(infer(server, "pa_film"))
    dicom = scores_of(infer(server, "m1_film"))
    # Same displayed film: only JPEG loss differs (~0.004). A DICOM read without MONOCHROME1 inversion, or a
    # transposed film (MONAI's PILReader order), moves the scores of this model by ~0.03.
    np.testing.assert_allclose(dicom, jpeg, atol=0.01)


def test_uploaded_films_answer_like_the_datastore_films(server, files):
    for name, image_id in (("pa_film.jpg", "pa_film"), ("m1_film.dcm", "m1_film")):
        uploaded = scores_of(infer(server, upload=files / "studies" / name))
        np.testing.assert_array_equal(uploaded, scores_of(infer(server, image_id)))


def test_non_image_upload_is_refused_and_the_server_keeps_serving(server, files):
    response = infer(server, upload=files / "notes.txt")
    assert response.status_code == 422
    assert "not a readable film" in response.json()["detail"]
    assert "not a recognised image" in response.json()["detail"]
    assert requests.get(f"{server}/info/", timeout=10).status_code == 200
    scores_of(infer(server, "m1_film"))


def test_unknown_image_id_is_404_naming_it(server):
    response = infer(server, "no_such_film")
    assert response.status_code == 404
    assert "'no_such_film' is not in the datastore" in response.json()["detail"]


def test_task_needs_a_model():
    with pytest.raises(ValueError, match="--conf model RUN_OR_BUNDLE.*--conf checkpoint"):
        ZeroShotInferTask.from_conf({"model_name": "cxrcml-tiny"})


@pytest.fixture(scope="module")
def conf(files: Path) -> dict[str, str]:
    """``--conf`` pairs of the tiny model on the CPU."""
    return {"checkpoint": str(files / "model.pt"), "model_name": "cxrcml-tiny", "device": "cpu"}


@pytest.fixture(scope="module")
def task(conf) -> ZeroShotInferTask:
    """The infer task in this process, 40 CXR-LT classes, uncalibrated."""
    return ZeroShotInferTask.from_conf(conf)


def test_task_answers_the_configured_classes_calibrated(files, conf, task, tmp_path):
    film = {"image": str(files / "studies" / "pa_film.jpg")}
    plain = task(film)[1]["scores"]
    calibration = Calibration(("Cardiomegaly", "Pneumothorax"), temperature=[4.0, 2.0], bias=[0.0, 0.5],
                              fallback_temperature=3.0)
    conf = {**conf, "class_names": "Pneumothorax, Cardiomegaly"}
    conf["calibration"] = str(calibration.save(tmp_path / "calibration.json"))
    calibrated = ZeroShotInferTask.from_conf(conf)(film)[1]["scores"]
    assert list(calibrated) == ["Pneumothorax", "Cardiomegaly"]
    logit = {name: np.log(plain[name] / (1 - plain[name])) for name in calibrated}
    expected = {"Pneumothorax": logit["Pneumothorax"] / 2.0 + 0.5, "Cardiomegaly": logit["Cardiomegaly"] / 4.0}
    for name, z in expected.items():
        assert calibrated[name] == pytest.approx(1 / (1 + np.exp(-z)), abs=1e-5)


def test_task_reads_a_dicom_series_folder_of_one_film(files, task, tmp_path):
    series = tmp_path / "series"
    series.mkdir()
    shutil.copy(files / "studies" / "m1_film.dcm", series / "1.dcm")
    single = task({"image": str(files / "studies" / "m1_film.dcm")})[1]["scores"]
    assert task({"image": str(series)})[1]["scores"] == single
    shutil.copy(files / "studies" / "m1_film.dcm", series / "2.dcm")
    with pytest.raises(FilmReadError, match="with 2 files"):
        task({"image": str(series)})


@pytest.fixture(scope="module")
def exported_chexzero(tmp_path_factory) -> Path:
    """A CheXzero-format checkpoint (plain state_dict, OpenAI key names) exported as a bundle, as a user does."""
    root = tmp_path_factory.mktemp("chexzero")
    with torch.random.fork_rng():
        torch.manual_seed(1)
        torch.save(create_clip("cxrcml-tiny").state_dict(), root / "chexzero.pt")
    status = export_main([str(root / "chexzero.pt"), "--model-name", "cxrcml-tiny", "--output", str(root / "bundle")])
    assert status == 0
    return root / "bundle"


@pytest.mark.parametrize("which", ["trained run", "exported CheXzero checkpoint"])
def test_server_takes_a_model_alone_and_answers_as_the_inference_cli(which, trained, exported_chexzero, files,
                                                                     tmp_path):
    model = trained if which == "trained run" else exported_chexzero
    film = files / "studies" / "pa_film.jpg"
    with serving(tmp_path / "server", files / "studies", {"model": str(model)}) as url:
        served = scores_of(infer(url, "pa_film"))
    output = tmp_path / "cli.csv"
    assert inference_main([str(film), "--model", str(model), "--output", str(output), "--device", "cpu"]) == 0
    np.testing.assert_allclose(served, pd.read_csv(output).iloc[0, 1:].to_numpy(float), atol=1e-6, rtol=0)
