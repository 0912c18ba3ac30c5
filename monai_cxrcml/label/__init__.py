"""MONAI Label app that serves the CXR-CML zero-shot classifier to clinicians' tools (3D Slicer, OHIF, REST).

The app lives in :data:`APP_DIR` (``main.py`` with ``MyApp``, the infer task in ``zero_shot.py``). It needs MONAI
Label 0.8.5, which needs numpy<2 and pydicom<3: install the ``label`` extra in its own virtual environment
(``pip install -c constraints.txt -e ".[label]"``). Importing this module does not import MONAI Label. Start the
server as ``monai_cxrcml/label/README.md`` shows.
"""

from __future__ import annotations

import os

__all__ = ["APP_DIR"]

APP_DIR: str = os.path.join(os.path.dirname(os.path.abspath(__file__)), "app")
"""Folder of the MONAI Label app (``monailabel start_server --app`` takes it, or a copy of it)."""
