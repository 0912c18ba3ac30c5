"""A plain folder of chest films as an inference datalist.

Files are found recursively (symbolic links followed, each real folder visited once) and listed in sorted
relative-path order, so the same folder always gives the same list. A file is an image when its name ends in
one of ``IMAGE_EXTENSIONS`` (case-insensitive), or, whatever its name, when it is a DICOM Part 10 file ("DICM"
at byte 128): PACS exports often name files by their UID (``1.2.840.113619....``) or ``IM0001``. Hidden files
and folders (name starting with ``.``, e.g. macOS ``._film.jpg`` resource forks) are skipped.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["IMAGE_EXTENSIONS", "is_dicom_file", "list_image_folder"]

IMAGE_EXTENSIONS: tuple[str, ...] = (
    ".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".dcm", ".dicom", ".dic", ".nii", ".nii.gz"
)
"""Name endings read as images (lower case)."""


def is_dicom_file(path: str | os.PathLike) -> bool:
    """True when the file starts with a DICOM Part 10 preamble: 128 bytes, then ``b"DICM"``."""
    try:
        with open(path, "rb") as f:
            f.seek(128)
            return f.read(4) == b"DICM"
    except OSError:
        return False


def list_image_folder(root: str | os.PathLike) -> list[dict[str, str]]:
    """Every image under ``root`` as ``{"image": absolute path, "path": path relative to root (with /)}``.

    Raises
    ------
    NotADirectoryError
        When ``root`` is not a folder.
    FileNotFoundError
        When it holds no image; the message says which names count as images.
    """
    root = Path(root).expanduser().absolute()
    if not root.is_dir():
        raise NotADirectoryError(f"{root}: not a folder. Pass the folder that holds the films.")
    found: list[str] = []
    seen: set[str] = set()
    for folder, dirs, files in os.walk(root, followlinks=True):
        real = os.path.realpath(folder)
        if real in seen:  # a link back into the tree
            dirs[:] = []
            continue
        seen.add(real)
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in files:
            if name.startswith("."):
                continue
            path = os.path.join(folder, name)
            if name.lower().endswith(IMAGE_EXTENSIONS) or is_dicom_file(path):
                found.append(path)
    if not found:
        raise FileNotFoundError(
            f"{root}: no image found. Images are files ending in {', '.join(IMAGE_EXTENSIONS)} (any case) or DICOM "
            "files with the 'DICM' preamble, in this folder or below."
        )
    items = [{"image": p, "path": Path(p).relative_to(root).as_posix()} for p in found]
    return sorted(items, key=lambda item: item["path"])
