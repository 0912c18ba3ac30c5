"""Command-line entry points of monai-cxrcml, each a ``main(argv) -> exit status``.

They are installed as console scripts (``setup.cfg``) and reachable as ``python -m`` modules
(``python -m monai_cxrcml.inference`` runs :func:`monai_cxrcml.cli.inference.main`).
"""
