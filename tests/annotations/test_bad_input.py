"""Bad and hostile input: one clear line, exit code 2, nothing written."""

from __future__ import annotations

import re
import time
import zipfile
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import zarr

from dlpipe.annotations import CvatReader, convert, read_objects
from dlpipe.errors import UserError

HEAD = '<?xml version="1.0" encoding="utf-8"?>\n'
META = (
    "<meta><task><labels><label><name>a</name></label><label><name>b</name></label>"
    "</labels></task></meta>"
)


def xml(body: str, head: str = HEAD) -> str:
    return f"{head}<annotations><version>1.1</version>{META}{body}</annotations>\n"


def img(name: str = "i.png", w: int = 8, h: int = 6, shapes: str = "") -> str:
    return f'<image id="0" name="{name}" width="{w}" height="{h}">{shapes}</image>'


def write(tmp_path: Path, text: str, name: str = "a.xml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def no_leftovers(tmp_path: Path, out: str) -> bool:
    return not any(p.name.startswith((out, f".{out}")) for p in tmp_path.iterdir())


def test_malformed_xml_line_and_column(tmp_path: Path, run_cli) -> None:
    bad = xml(img(shapes='<box label="a" xtl="0" ytl="0" xbr="2" ybr="2">')).replace(
        "</image>", "</imag>"
    )
    p = write(tmp_path, bad)
    code, err = run_cli("cvat", p, "--no-images", "--out", tmp_path / "o.zarr")
    assert code == 2
    assert "a.xml: malformed XML at line 2, column" in err and "imag" in err
    assert err.count("\n") == 1  # one line
    assert no_leftovers(tmp_path, "o.zarr")


def test_label_not_in_classes(tmp_path: Path, run_cli) -> None:
    p = write(tmp_path, xml(img(shapes='<box label="c" xtl="0" ytl="0" xbr="2" ybr="2"/>')))
    code, err = run_cli("cvat", p, "--no-images", "--out", tmp_path / "o.zarr")
    assert code == 2 and "label 'c' is not one of the classes ['a', 'b']" in err
    code, err = run_cli("cvat", p, "--no-images", "--classes", "b,c", "--out", tmp_path / "o.zarr")
    assert code == 0, err
    g = zarr.open_group(str(tmp_path / "o.zarr"), mode="r")
    assert g.attrs["classes"] == ["background", "b", "c"]
    assert g["semantic"][0].sum() == 2 * 4  # class 2 on the 2x2 box


def test_degenerate_shapes_skipped_and_counted(tmp_path: Path) -> None:
    shapes = (
        '<polygon label="a" points="1,1;5,1"/>'  # 2 points
        '<polygon label="a" points="1,1;5,nan;3,4"/>'
        '<polygon label="a" points="1,1;inf,1;3,4"/>'
        '<ellipse label="a" cx="3" cy="3" rx="NaN" ry="2"/>'
        '<box label="a" xtl="0" ytl="0" xbr="x" ybr="2"/>'
        '<polygon label="b" points="0,0;4,0;4,4;0,4"/>'  # the only good one: 16 px
        '<box label="a" xtl="6" ytl="4" xbr="20" ybr="20"/>'  # clipped: cols 6,7 rows 4,5
    )
    p = write(tmp_path, xml(img(shapes=shapes)))
    s = convert(p, tmp_path / "o.zarr", params={"read_images": False})
    assert s["counts"]["skipped_invalid"] == 5 and s["counts"]["clipped"] == 1
    assert [r["area"] for r in read_objects(tmp_path / "o.zarr")] == [16, 4]


def test_rle_sum_errors_and_lenient(tmp_path: Path, run_cli) -> None:
    short = '<mask label="a" rle="1, 2, 3" left="1" top="1" width="3" height="3"/>'
    p = write(tmp_path, xml(img(shapes=short)))
    code, err = run_cli("cvat", p, "--no-images", "--out", tmp_path / "o.zarr")
    assert code == 2
    assert "image 'i.png', mask #0 (label 'a'): RLE runs sum to 6, expected" in err
    assert "3*3 = 9" in err
    code, err = run_cli("cvat", p, "--no-images", "--lenient", "--out", tmp_path / "o.zarr")
    assert code == 0, err
    sem = zarr.open_group(str(tmp_path / "o.zarr"), mode="r")["semantic"][0]
    exp = np.zeros((6, 8), np.uint8)
    exp[1, 2:4] = 1  # runs: 1 background, 2 foreground, 3 background, 3 padded
    np.testing.assert_array_equal(sem, exp)
    long = '<mask label="a" rle="1, 20" left="1" top="1" width="3" height="3"/>'
    p = write(tmp_path, xml(img(shapes=long)), "b.xml")
    code, err = run_cli("cvat", p, "--no-images", "--lenient", "--out", tmp_path / "p.zarr")
    assert code == 2 and "RLE runs sum to 21" in err  # too long is never padded


def test_missing_image_error_or_skip(tmp_path: Path, run_cli) -> None:
    (tmp_path / "imgs").mkdir()
    iio.imwrite(tmp_path / "imgs" / "i.png", np.full((6, 8), 7, np.uint8))
    body = img() + img("gone.png").replace('id="0"', 'id="1"')
    p = write(tmp_path, xml(body))
    code, err = run_cli("cvat", p, "--images", tmp_path / "imgs", "--out", tmp_path / "o.zarr")
    assert code == 2 and "image 'gone.png' of the XML not found" in err
    assert no_leftovers(tmp_path, "o.zarr")
    code, err = run_cli(
        "cvat", p, "--images", tmp_path / "imgs", "--skip-missing", "--out", tmp_path / "o.zarr"
    )
    assert code == 0, err
    g = zarr.open_group(str(tmp_path / "o.zarr"), mode="r")
    assert g.attrs["image_names"] == ["i.png"] and g.attrs["counts"]["missing_images"] == 1
    assert (g["images"][0] == 7).all() and g["images"].shape == (1, 6, 8)
    assert (tmp_path / "o.zarr" / ".dlpipe_complete").is_file()


def test_image_size_differs_from_xml(tmp_path: Path) -> None:
    (tmp_path / "imgs").mkdir()
    iio.imwrite(tmp_path / "imgs" / "i.png", np.zeros((5, 8), np.uint8))
    p = write(tmp_path, xml(img()))
    with pytest.raises(UserError, match=r"'i\.png' is 8x5 but the XML says 8x6"):
        convert(p, tmp_path / "o.zarr", images=tmp_path / "imgs")


def test_zip_export_with_images(tmp_path: Path) -> None:
    z = tmp_path / "export.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr(
            "annotations.xml", xml(img(shapes='<box label="b" xtl="0" ytl="0" xbr="3" ybr="1"/>'))
        )
        png = tmp_path / "tmp.png"
        iio.imwrite(png, np.full((6, 8, 3), 9, np.uint8))
        zf.write(png, "images/i.png")
    s = convert(z, tmp_path / "o.zarr")
    g = zarr.open_group(str(tmp_path / "o.zarr"), mode="r")
    assert s["images"] == 1 and g["images"].shape == (1, 6, 8, 3) and (g["images"][:] == 9).all()
    assert g["semantic"][0, 0].tolist() == [2, 2, 2, 0, 0, 0, 0, 0]


@pytest.mark.parametrize("member", ["../evil.png", "/etc/evil.png", "images/../../x.png"])
def test_zip_traversal_refused(tmp_path: Path, run_cli, member: str) -> None:
    z = tmp_path / "export.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("annotations.xml", xml(img()))
        zf.writestr(member, b"x")
    code, err = run_cli("cvat", z, "--out", tmp_path / "o.zarr")
    assert code == 2 and f"zip member {member!r} has an absolute path or '..': refused" in err
    assert no_leftovers(tmp_path, "o.zarr")


def test_image_name_traversal_refused(tmp_path: Path) -> None:
    (tmp_path / "imgs").mkdir()
    p = write(tmp_path, xml(img("../secret.png")))
    with pytest.raises(UserError, match=re.escape("'../secret.png' has an absolute path or '..'")):
        convert(p, tmp_path / "o.zarr", images=tmp_path / "imgs")


BOMB = """<!DOCTYPE annotations [
 <!ENTITY a "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa">
 <!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">
 <!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;">
 <!ENTITY d "&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;">
 <!ENTITY e "&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;">
 <!ENTITY f "&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;">
 <!ENTITY g "&f;&f;&f;&f;&f;&f;&f;&f;&f;&f;&f;&f;&f;&f;&f;&f;&f;&f;&f;&f;&f;&f;&f;&f;">
 <!ENTITY h "&g;&g;&g;&g;&g;&g;&g;&g;&g;&g;&g;&g;&g;&g;&g;&g;&g;&g;&g;&g;&g;&g;&g;&g;">
]>
"""


def test_entity_bomb_refused_quickly(tmp_path: Path, run_cli) -> None:
    p = write(tmp_path, xml(img(shapes='<tag label="&h;"/>'), head=HEAD + BOMB))
    t0 = time.perf_counter()
    with pytest.raises(UserError, match="declares entities in its DOCTYPE; refused"):
        list(CvatReader(str(p)).frames())
    assert time.perf_counter() - t0 < 1.0
    code, err = run_cli("cvat", p, "--no-images", "--out", tmp_path / "o.zarr")
    assert code == 2 and "declares entities" in err
    assert no_leftovers(tmp_path, "o.zarr")


def test_entity_bomb_in_the_root_tag_refused_from_the_prolog(tmp_path: Path) -> None:
    # The bomb is used in the root element's own attribute: the refusal comes from the
    # prolog, before the parser sees (and would expand) anything.
    body = '<annotations a="&h;&h;&h;"><version>&h;</version></annotations>'
    p = write(tmp_path, HEAD + BOMB + body)
    t0 = time.perf_counter()
    with pytest.raises(UserError, match="declares entities in its DOCTYPE; refused"):
        list(CvatReader(str(p)).frames())
    assert time.perf_counter() - t0 < 1.0
    # hidden behind a comment that looks like an element, or in UTF-16: still refused
    for head, enc in ((HEAD + "<!-- <image> -->\n", "utf-8"), ("", "utf-16")):
        p.write_bytes((head + BOMB + body).encode(enc))
        with pytest.raises(UserError, match="declares entities"):
            list(CvatReader(str(p)).frames())


def test_doctype_without_entities_and_prolog_comments_are_fine(tmp_path: Path) -> None:
    head = HEAD + "<!-- a <comment> --><!DOCTYPE annotations [ <!ELEMENT annotations ANY> ]>\n"
    p = write(tmp_path, xml(img(shapes='<tag label="ok"/>'), head=head))
    frames = list(CvatReader(str(p)).frames())
    assert [f.n_shapes for f in frames] == [1]


def test_external_entities_never_resolved(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("TOPSECRET")
    dtd = (
        f'<!DOCTYPE annotations [ <!ENTITY x SYSTEM "file://{secret}"> '
        '<!ENTITY % p SYSTEM "http://127.0.0.1:9/evil.dtd"> %p; ]>\n'
    )
    p = write(tmp_path, xml(img(shapes='<tag label="&x;"/>'), head=HEAD + dtd))
    with pytest.raises(UserError, match="declares entities") as exc:
        convert(p, tmp_path / "o.zarr", params={"read_images": False})
    assert "TOPSECRET" not in str(exc.value)
    # an external DTD (no entity declared inline) is not loaded and not fetched either
    ext = '<!DOCTYPE annotations SYSTEM "http://127.0.0.1:9/cvat.dtd">\n'
    p = write(tmp_path, xml(img(shapes='<tag label="ok"/>'), head=HEAD + ext), "ext.xml")
    s = convert(p, tmp_path / "e.zarr", params={"read_images": False})
    assert s["counts"]["tags"] == 1


def test_existing_output_kept_on_failure(tmp_path: Path, run_cli) -> None:
    good = write(tmp_path, xml(img(shapes='<box label="a" xtl="0" ytl="0" xbr="2" ybr="2"/>')))
    convert(good, tmp_path / "o.zarr", params={"read_images": False})
    bad = write(
        tmp_path, xml(img(shapes='<box label="zz" xtl="0" ytl="0" xbr="2" ybr="2"/>')), "bad.xml"
    )
    code, err = run_cli("cvat", bad, "--no-images", "--overwrite", "--out", tmp_path / "o.zarr")
    assert code == 2 and "'zz'" in err
    g = zarr.open_group(str(tmp_path / "o.zarr"), mode="r")  # the old dataset is intact
    assert g["semantic"][0].sum() == 4
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".o.zarr")] == []
    code, err = run_cli("cvat", good, "--no-images", "--out", tmp_path / "o.zarr")
    assert code == 2 and "output exists" in err


def test_images_sorted_by_id(tmp_path: Path) -> None:
    body = "".join(
        f'<image id="{i}" name="n{i}.png" width="8" height="6">'
        f'<box label="a" xtl="0" ytl="0" xbr="{i + 1}" ybr="1"/></image>'
        for i in (2, 0, 1)
    )
    p = write(tmp_path, xml(body))
    convert(p, tmp_path / "o.zarr", params={"read_images": False})
    g = zarr.open_group(str(tmp_path / "o.zarr"), mode="r")
    assert g.attrs["image_names"] == ["n0.png", "n1.png", "n2.png"]
    assert g["semantic"][:].sum(axis=(1, 2)).tolist() == [1, 2, 3]
    rows = read_objects(tmp_path / "o.zarr")
    assert sorted((r["image"], r["area"]) for r in rows) == [(0, 1), (1, 2), (2, 3)]


def test_empty_file_says_so(tmp_path: Path, run_cli) -> None:
    p = tmp_path / "empty.xml"
    p.write_text("  \n")
    code, err = run_cli("cvat", p, "--no-images", "--out", tmp_path / "o.zarr")
    assert code == 2 and "empty.xml: the XML file is empty" in err
    assert no_leftovers(tmp_path, "o.zarr")


def test_a_folder_instead_of_the_xml_is_one_line(tmp_path: Path, run_cli) -> None:
    folder = tmp_path / "export"
    folder.mkdir()
    code, err = run_cli("cvat", folder, "--no-images", "--out", tmp_path / "o.zarr")
    assert code == 2 and "export: a folder, not CVAT annotations" in err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert no_leftovers(tmp_path, "o.zarr")
    write(folder, xml(img()), "annotations.xml")
    code, err = run_cli("cvat", folder, "--no-images", "--out", tmp_path / "o.zarr")
    assert code == 2 and f"did you mean {folder / 'annotations.xml'}?" in err
    # the reader given a folder path directly
    with pytest.raises(UserError, match="a folder, not a CVAT annotations XML"):
        list(CvatReader(str(folder)).frames())
