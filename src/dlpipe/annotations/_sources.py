"""Where the XML and the images come from: a plain folder or CVAT's export zip (checked)."""

from __future__ import annotations

import contextlib
import io
import zipfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import IO

import numpy as np

from dlpipe.errors import UserError

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
VIDEO_EXTS = (".mp4", ".avi", ".mkv", ".mov", ".webm")


def _unsafe(name: str) -> bool:
    p = PurePosixPath(name.replace("\\", "/"))
    return p.is_absolute() or ".." in p.parts or (len(name) > 1 and name[1] == ":")


def open_zip(path: Path) -> zipfile.ZipFile:
    """Open an export zip, refusing it if any member has an absolute path or ``..``."""
    try:
        zf = zipfile.ZipFile(path)
    except zipfile.BadZipFile as exc:
        raise UserError(f"not a zip file ({exc})", path=path) from None
    for name in zf.namelist():
        if _unsafe(name):
            zf.close()
            raise UserError(f"zip member {name!r} has an absolute path or '..': refused", path=path)
    return zf


@contextlib.contextmanager
def open_annotations(path: Path) -> Iterator[tuple[IO[bytes], zipfile.ZipFile | None]]:
    """Yield the XML as a binary stream and the zip it came from (or None)."""
    path = Path(path)
    if not path.exists():
        raise UserError("annotations file not found", path=path)
    if zipfile.is_zipfile(path):
        zf = open_zip(path)
        try:
            xmls = [n for n in zf.namelist() if n.lower().endswith(".xml")]
            top = [n for n in xmls if "/" not in n.strip("/")]
            pick = "annotations.xml" if "annotations.xml" in xmls else (top or xmls or [None])[0]
            if pick is None:
                raise UserError("zip holds no .xml annotations", path=path)
            with zf.open(pick) as f:
                yield f, zf
        finally:
            zf.close()
    else:
        with open(path, "rb") as f:
            yield f, None


class ImageSource:
    """Finds and reads the image of a frame in a folder and/or an export zip."""

    def __init__(self, folder: Path | None, zf: zipfile.ZipFile | None) -> None:
        self.folder = Path(folder) if folder is not None else None
        self.zf = zf
        self._zip_names = set(zf.namelist()) if zf is not None else set()
        self._stems: dict[str, str] | None = None

    @property
    def available(self) -> bool:
        return self.folder is not None or bool(self._zip_names)

    def _candidates(self, name: str, subset: str) -> list[str]:
        c = [name, f"images/{name}"]
        if subset:
            c += [f"{subset}/{name}", f"images/{subset}/{name}", f"{subset}/images/{name}"]
        return c

    def find(self, name: str, subset: str = "") -> tuple[str, str] | None:
        """("dir"|"zip", path) of the frame's image, or None when absent."""
        if _unsafe(name):
            raise UserError(f"image name {name!r} has an absolute path or '..': refused")
        stemmed = "." not in PurePosixPath(name).name  # video frames: frame_000010
        for cand in self._candidates(name, subset):
            if self.folder is not None:
                base = self.folder / cand
                if not stemmed and base.is_file():
                    return "dir", str(base)
                if stemmed:
                    for ext in IMAGE_EXTS:
                        if base.with_name(base.name + ext).is_file():
                            return "dir", str(base.with_name(base.name + ext))
            if self._zip_names:
                if not stemmed and cand in self._zip_names:
                    return "zip", cand
                if stemmed:
                    for ext in IMAGE_EXTS:
                        if cand + ext in self._zip_names:
                            return "zip", cand + ext
        return None

    def video_files(self) -> list[str]:
        found = []
        if self.folder is not None and self.folder.is_dir():
            found += [str(p) for p in self.folder.iterdir() if p.suffix.lower() in VIDEO_EXTS]
        found += [n for n in self._zip_names if PurePosixPath(n).suffix.lower() in VIDEO_EXTS]
        return found

    def read(self, where: tuple[str, str]) -> np.ndarray:
        import imageio.v3 as iio

        kind, p = where
        try:
            if kind == "dir":
                img = iio.imread(p)
            else:
                assert self.zf is not None
                img = iio.imread(io.BytesIO(self.zf.read(p)), extension=PurePosixPath(p).suffix)
        except Exception as exc:  # a corrupt image is the user's to fix
            raise UserError(f"cannot read image ({exc})", path=p) from None
        img = np.asarray(img)
        if img.ndim == 3 and img.shape[-1] == 4:
            img = img[..., :3]
        if img.ndim == 3 and img.shape[-1] == 1:
            img = img[..., 0]
        return img
