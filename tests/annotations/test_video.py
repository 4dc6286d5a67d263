"""Video exports whose frames come from a video file (decoded with PyAV)."""

from __future__ import annotations

import zipfile
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import zarr

from dlpipe.annotations import convert, read_objects

H, W = 32, 48


def video_xml(path: Path, start: int, stop: int, step: int) -> Path:
    """A "CVAT for video 1.1" task export: one box track, moving 2 px per listed frame."""
    boxes = []
    for k, f in enumerate(range(start, stop + 1, step)):
        outside = int(f == start + 2 * step)  # the object leaves at the third frame
        boxes.append(
            f'<box frame="{f}" outside="{outside}" occluded="0" keyframe="1" '
            f'xtl="{2 + 2 * k}" ytl="3" xbr="{6 + 2 * k}" ybr="5" z_order="0"/>'
        )
    n = len(range(start, stop + 1, step))
    path.write_text(
        '<?xml version="1.0" encoding="utf-8"?>\n<annotations><version>1.1</version>'
        f"<meta><task><size>{n}</size><mode>interpolation</mode>"
        f"<start_frame>{start}</start_frame><stop_frame>{stop}</stop_frame>"
        f"<frame_filter>step={step}</frame_filter>"
        "<labels><label><name>loop</name></label></labels>"
        f"<original_size><width>{W}</width><height>{H}</height></original_size></task></meta>"
        f'<track id="0" label="loop" source="manual">{"".join(boxes)}</track></annotations>'
    )
    return path


def grey_frames(n: int) -> np.ndarray:
    """(n, H, W) uint8: frame i is 10 * i + 5 everywhere, with its number as a bright bar."""
    frames = np.stack([np.full((H, W), 10 * i + 5, np.uint8) for i in range(n)])
    for i in range(n):
        frames[i, 20:24, 2 : 2 + 3 * (i + 1)] = 250
    return frames


def test_video_file_frames_match_xml_frames(tmp_path: Path) -> None:
    frames = grey_frames(9)
    video = tmp_path / "scan.mkv"  # FFV1 is lossless: frames come back exactly
    iio.imwrite(
        video, frames, plugin="pyav", codec="ffv1", in_pixel_format="gray", out_pixel_format="gray"
    )
    xml = video_xml(tmp_path / "annotations.xml", start=1, stop=7, step=2)
    s = convert(xml, tmp_path / "v.zarr", images=video)
    g = zarr.open_group(str(tmp_path / "v.zarr"), mode="r")
    assert s["images"] == 4
    assert g.attrs["image_names"] == [
        "frame_000001",
        "frame_000003",
        "frame_000005",
        "frame_000007",
    ]
    # frame i of the XML is frame i of the video
    np.testing.assert_array_equal(g["images"][:], frames[[1, 3, 5, 7]])
    sem = g["semantic"][:]
    exp = np.zeros((4, H, W), np.uint8)
    exp[0, 3:5, 2:6] = 1  # box 2,3 - 6,5 at frame 1
    exp[1, 3:5, 4:8] = 1  # box 4,3 - 8,5 at frame 3; outside at frame 5
    exp[3, 3:5, 8:12] = 1  # back at frame 7
    np.testing.assert_array_equal(sem, exp)
    assert [r["image"] for r in read_objects(tmp_path / "v.zarr")] == [0, 1, 3]


def test_video_in_export_zip_and_too_short(tmp_path: Path, run_cli) -> None:
    frames = grey_frames(6)
    rgb = np.repeat(frames[..., None], 3, axis=-1)
    video = tmp_path / "clip.mp4"  # H.264 is lossy: compare within a few grey levels
    iio.imwrite(video, rgb, plugin="pyav", codec="libx264", fps=5)
    xml = video_xml(tmp_path / "annotations.xml", start=0, stop=5, step=1)
    export = tmp_path / "export.zip"
    with zipfile.ZipFile(export, "w") as zf:
        zf.write(xml, "annotations.xml")
        zf.write(video, "clip.mp4")
    s = convert(export, tmp_path / "z.zarr")
    assert s["images"] == 6
    got = zarr.open_group(str(tmp_path / "z.zarr"), mode="r")["images"][:]
    assert got.shape == (6, H, W, 3)
    err = np.abs(got.astype(int) - rgb.astype(int))
    assert np.median(err) <= 2 and err.mean() < 3
    # the frame-number bar tells frame i from its neighbours
    assert [int((g[22, :, 0] > 128).sum()) for g in got] == [3 * (i + 1) for i in range(6)]
    # a task longer than its video: exit 2 naming the frame, nothing written
    long_xml = video_xml(tmp_path / "long.xml", start=0, stop=8, step=2)
    code, msg = run_cli("cvat", long_xml, "--images", video, "--out", tmp_path / "x.zarr")
    assert code == 2 and "frame 6 of the XML is beyond the end of the video (6 frames)" in msg
    assert not (tmp_path / "x.zarr").exists()
    # --images must be a folder or a video file
    code, msg = run_cli("cvat", long_xml, "--images", xml, "--out", tmp_path / "x.zarr")
    assert code == 2 and "folder or a video file" in msg


def test_video_found_in_images_folder(tmp_path: Path, run_cli) -> None:
    frames = grey_frames(4)
    folder = tmp_path / "data"
    folder.mkdir()
    kw = {"plugin": "pyav", "codec": "ffv1", "in_pixel_format": "gray", "out_pixel_format": "gray"}
    iio.imwrite(folder / "a.mkv", frames, **kw)
    xml = video_xml(tmp_path / "annotations.xml", start=0, stop=3, step=1)
    # a frame image beside the video wins over the video's frame
    iio.imwrite(folder / "frame_000002.png", np.full((H, W), 77, np.uint8))
    convert(xml, tmp_path / "f.zarr", images=folder)
    got = zarr.open_group(str(tmp_path / "f.zarr"), mode="r")["images"][:]
    np.testing.assert_array_equal(got[[0, 1, 3]], frames[[0, 1, 3]])
    assert (got[2] == 77).all()
    # two videos: which one is meant is not guessed
    iio.imwrite(folder / "b.mkv", frames, **kw)
    code, msg = run_cli("cvat", xml, "--images", folder, "--out", tmp_path / "g.zarr")
    assert code == 2 and "2 video files" in msg and "--images" in msg
