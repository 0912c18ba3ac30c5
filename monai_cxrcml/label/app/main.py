"""MONAI Label app of monai-cxrcml: serves the CXR-CML zero-shot chest film classifier as infer task ``cxrcml``.

Start (see ``monai_cxrcml/label/README.md``)::

    monailabel start_server --app APP_DIR --studies FILMS_DIR --host 127.0.0.1 --port 8000 --conf model runs/fold0

then ``POST /infer/cxrcml?image=ID`` (a film of the datastore) or ``POST /infer/cxrcml`` with the film uploaded
as form field ``file``. The answer is one probability per class (:mod:`zero_shot`). The local datastore lists
JPEG, PNG, TIFF, BMP, DICOM (``.dcm``, ``.dicom``) and NIfTI films besides MONAI Label's default patterns.

Errors reach the client as HTTP 4xx with a message: 404 for an image id the datastore does not hold, 422 for a
file that is not a readable film (the reader's reason and fix). The server keeps serving.
"""

from __future__ import annotations

import os
from typing import Any

from fastapi import HTTPException
from monailabel.config import settings
from monailabel.datastore.local import LocalDatastore
from monailabel.interfaces.app import MONAILabelApp
from monailabel.interfaces.datastore import Datastore
from monailabel.interfaces.tasks.infer_v2 import InferTask

import monai_cxrcml
from monai_cxrcml.data.films import FilmReadError
from monai_cxrcml.label.app.zero_shot import FILM_EXTENSIONS, ZeroShotInferTask

__all__ = ["INFER_TASK", "MyApp"]

INFER_TASK = "cxrcml"
"""Name of the infer task: the ``MODEL`` of ``POST /infer/MODEL``."""


class MyApp(MONAILabelApp):
    """MONAI Label app with one CLASSIFICATION infer task, :class:`ZeroShotInferTask`, configured by ``--conf``.

    Parameters
    ----------
    app_dir
        This app's folder (MONAI Label creates ``model/``, ``lib/``, ``logs/`` and ``bin/`` in it).
    studies
        Folder of films (local datastore) or a DICOMweb URL.
    conf
        ``--conf`` pairs: ``model`` (a bundle or run folder; required), the scoring options and ``device`` (see
        :mod:`monai_cxrcml.label.app.zero_shot`).
    """

    def __init__(self, app_dir: str, studies: str, conf: dict[str, str]) -> None:
        super().__init__(
            app_dir=app_dir,
            studies=studies,
            conf=conf,
            name="CXR-CML",
            description="Zero-shot, long-tailed chest X-ray classification (CLIP + Student-t mixture metric learning)",
            version=monai_cxrcml.__version__,
        )

    def init_datastore(self) -> Datastore:
        """MONAI Label's datastore; a local one also lists every film format the reader takes."""
        if self.studies.startswith(("http://", "https://")):
            return super().init_datastore()
        return LocalDatastore(
            self.studies,
            extensions=list(dict.fromkeys([*settings.MONAI_LABEL_DATASTORE_FILE_EXT, *FILM_EXTENSIONS])),
            auto_reload=settings.MONAI_LABEL_DATASTORE_AUTO_RELOAD,
            read_only=settings.MONAI_LABEL_DATASTORE_READ_ONLY,
        )

    def init_infers(self) -> dict[str, InferTask]:
        """The ``cxrcml`` task, built (checkpoint loaded) when the server starts."""
        return {INFER_TASK: ZeroShotInferTask.from_conf(self.conf)}

    def infer(self, request: dict[str, Any], datastore: Datastore | None = None) -> dict[str, Any]:
        """MONAI Label's infer, with an unknown image id or an unreadable film answered as HTTP 404 / 422."""
        image = request.get("image")
        store = datastore or self.datastore()
        local_id = isinstance(store, LocalDatastore) and isinstance(image, str) and not os.path.exists(image)
        if local_id and not store.get_image_uri(image):
            raise HTTPException(
                status_code=404,
                detail=f"image {image!r} is not in the datastore; list the ids with GET /datastore/?output=all, "
                "or upload the film as form field 'file'",
            )
        try:
            return super().infer(request, datastore)
        except FilmReadError as e:
            raise HTTPException(status_code=422, detail=f"image {image!r} is not a readable film: {e.reason}") from e
