"""Where the XML and the images come from: a plain folder or CVAT's export zip (checked)."""

from __future__ import annotations

import contextlib
import re
import zipfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import IO

import numpy as np

from dlpipe.annotations.images import read_image, refuse_unsafe_name, unsafe_name
from dlpipe.errors import UserError

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
VIDEO_EXTS = (".mp4", ".avi", ".mkv", ".mov", ".webm")


_unsafe = unsafe_name


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
    if path.is_dir():
        inside = [n for n in ("annotations.xml", "annotations.zip") if (path / n).is_file()]
        hint = f": did you mean {path / inside[0]}?" if inside else ""
        raise UserError(
            "a folder, not CVAT annotations: give the annotations XML (CVAT for images 1.1) "
            f"or CVAT's export zip{hint}",
            path=path,
        )
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


_FRAME_NUMBER = re.compile(r"frame_(\d+)$")


def video_index(name: str, frame_id: int) -> int:
    """Index in the video file of a frame: N of ``frame_N`` (video exports), else its id."""
    m = _FRAME_NUMBER.match(PurePosixPath(name).stem if "." in name else name)
    return int(m.group(1)) if m else int(frame_id)


class VideoReader:
    """Frames of a video file by index, decoded in order with PyAV (FFmpeg).

    Frame ``i`` is the ``i``-th decoded frame in presentation order (frame 0 first), as
    CVAT numbers the frames of a task made from a video. Reading forwards decodes each frame
    once; asking for an earlier frame starts again from the beginning.

    Parameters
    ----------
    path : the video file, or a member of ``zf``
    zf : export zip holding the video, or None
    """

    def __init__(self, path: str, zf: zipfile.ZipFile | None = None) -> None:
        try:
            import av
        except ImportError:  # pragma: no cover - av is a dependency
            raise UserError(
                "reading a video needs PyAV (pip install av); or extract the frames into a "
                "folder and pass it with --images",
                path=path,
            ) from None
        self._av = av
        self.path, self.zf = path, zf
        self._container = None
        self._decoder = None
        self.position = -1  # index of the last decoded frame

    def _open(self) -> None:
        self.close()
        src = self.zf.open(self.path) if self.zf is not None else self.path
        try:
            self._container = self._av.open(src)
            stream = self._container.streams.video[0]
        except (self._av.FFmpegError, IndexError) as exc:
            raise UserError(f"cannot read the video ({exc})", path=self.path) from None
        self._decoder = self._container.decode(stream)
        self.position = -1

    def read(self, index: int) -> np.ndarray:
        """Frame ``index`` as (H, W) for grey video, else (H, W, 3) RGB, uint8."""
        if index < 0:
            raise UserError(f"frame {index} cannot be read from a video", path=self.path)
        if self._decoder is None or index <= self.position:
            self._open()
        try:
            for frame in self._decoder:
                self.position += 1
                if self.position == index:
                    if frame.format.name.startswith("gray"):
                        return frame.to_ndarray(format="gray")
                    return frame.to_ndarray(format="rgb24")
        except self._av.FFmpegError as exc:
            raise UserError(f"cannot decode the video ({exc})", path=self.path) from None
        n = self.position + 1
        self._decoder = None
        raise UserError(
            f"frame {index} of the XML is beyond the end of the video ({n} frames)",
            path=self.path,
        )

    def close(self) -> None:
        if self._container is not None:
            self._container.close()
        self._container, self._decoder = None, None


class ImageSource:
    """Finds and reads the image of a frame in a folder, an export zip or a video file.

    ``folder`` may be a video file itself; otherwise a single video file in the folder (or
    the zip) supplies the frames that are not found as images.
    """

    def __init__(self, folder: Path | None, zf: zipfile.ZipFile | None) -> None:
        self.video: VideoReader | None = None
        if folder is not None and Path(folder).is_file():
            if Path(folder).suffix.lower() not in VIDEO_EXTS:
                raise UserError(
                    f"--images must be a folder or a video file ({', '.join(VIDEO_EXTS)})",
                    path=folder,
                )
            self.video = VideoReader(str(folder))
            folder = None
        self.folder = Path(folder) if folder is not None else None
        self.zf = zf
        self._zip_names = set(zf.namelist()) if zf is not None else set()
        self._stems: dict[str, str] | None = None
        self._video_looked = self.video is not None

    @property
    def available(self) -> bool:
        return self.folder is not None or bool(self._zip_names) or self.video is not None

    def find_video(self) -> VideoReader | None:
        """The video that supplies missing frames: the --images file, or the only video file
        in the folder / zip (several are an error)."""
        if not self._video_looked:
            self._video_looked = True
            found = self.video_files()
            if len(found) > 1:
                raise UserError(
                    f"{len(found)} video files ({', '.join(sorted(found)[:3])}): pass the one "
                    "to read with --images",
                    path=self.folder,
                )
            if found:
                in_zip = found[0] in self._zip_names
                self.video = VideoReader(found[0], self.zf if in_zip else None)
        return self.video

    def close(self) -> None:
        if self.video is not None:
            self.video.close()

    def _candidates(self, name: str, subset: str) -> list[str]:
        c = [name, f"images/{name}"]
        if subset:
            c += [f"{subset}/{name}", f"images/{subset}/{name}", f"{subset}/images/{name}"]
        return c

    def find(self, name: str, subset: str = "") -> tuple[str, str] | None:
        """("dir"|"zip", path) of the frame's image, or None when absent."""
        refuse_unsafe_name(name)
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
        """The image found by :meth:`find`, by the channel rule of
        :func:`dlpipe.annotations.images.read_image` (any dtype, RGB kept)."""
        kind, p = where
        return read_image(p, zf=self.zf if kind == "zip" else None)
