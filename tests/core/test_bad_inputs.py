"""Bad inputs give a per-image error line and the batch goes on."""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edge_ocr.cli import main
from edge_ocr.errors import InputError
from edge_ocr.ocr.imageio import read_pages
from edge_ocr.synth import standard_label


def _write_huge_png(path: Path, width: int, height: int) -> None:
    """A real, valid 20000x20000 grayscale PNG, written by streaming (it compresses to ~1 MB)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        )

    comp = zlib.compressobj(9)
    row = b"\x00" + b"\xff" * width
    body = b"".join(comp.compress(row) for _ in range(height)) + comp.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", body) + chunk(b"IEND", b""))


@pytest.fixture(scope="module")
def bad_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("bad")
    good = standard_label(seed=4).image
    Image.fromarray(good[:, :, ::-1]).save(d / "good.png")
    (d / "empty.png").write_bytes(b"")
    jpeg = d / "full.jpg"
    Image.fromarray(good[:, :, ::-1]).save(jpeg, quality=90)
    data = jpeg.read_bytes()
    (d / "truncated.jpg").write_bytes(data[: len(data) // 2])
    jpeg.unlink()
    (d / "text.png").write_text("this is not an image\n")
    _write_huge_png(d / "huge.png", 20000, 20000)
    return d


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("missing.png", "no such file"),
        ("empty.png", "empty"),
        ("truncated.jpg", "truncated"),
        ("text.png", "not an image"),
        ("huge.png", "limit"),
    ],
)
def test_read_pages_errors(bad_dir, name, message):
    with pytest.raises(InputError, match=message):
        list(read_pages(bad_dir / name))


def test_cli_batch_goes_on(bad_dir, capsys):
    names = ["missing.png", "empty.png", "good.png", "truncated.jpg", "text.png", "huge.png"]
    code = main(["ocr", "--json", "--engine", "fake", *[str(bad_dir / n) for n in names]])
    out = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert code == 0  # some images were read
    assert [o["image"] for o in out] == [str(bad_dir / n) for n in names]
    statuses = {Path(o["image"]).name: o["status"] for o in out}
    assert statuses == {n: ("success" if n == "good.png" else "error") for n in names}
    for o in out:
        if o["status"] == "error":
            assert o["error"] and str(bad_dir) in o["error"]
            assert o["data"]["lines"] == []


def test_cli_strict_and_all_failed_exit_codes(bad_dir, capsys):
    assert main(["ocr", "--json", "--engine", "fake", str(bad_dir / "empty.png")]) == InputError.exit_code
    assert (
        main(["ocr", "--engine", "fake", "--strict", str(bad_dir / "good.png"), str(bad_dir / "text.png")])
        == 5
    )
    capsys.readouterr()


def test_multipage_tiff_and_pdf(tmp_path, capsys):
    pages = [Image.fromarray(standard_label(seed=s).image[:, :, ::-1]) for s in range(3)]
    tiff = tmp_path / "three.tiff"
    pages[0].save(tiff, save_all=True, append_images=pages[1:])
    pdf = tmp_path / "two.pdf"
    pages[0].save(pdf, save_all=True, append_images=pages[1:2], resolution=100)
    assert [p.index for p in read_pages(tiff)] == [0, 1, 2]
    pdf_pages = list(read_pages(pdf))
    assert len(pdf_pages) == 2 and pdf_pages[0].image.ndim == 3
    assert main(["ocr", "--json", "--engine", "fake", str(tiff), str(pdf)]) == 0
    out = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(Path(o["image"]).name, o["page"]) for o in out] == [
        ("three.tiff", 1), ("three.tiff", 2), ("three.tiff", 3), ("two.pdf", 1), ("two.pdf", 2)
    ]  # fmt: skip


def test_16bit_and_palette_images(tmp_path):
    arr = (np.linspace(0, 65535, 64 * 64).reshape(64, 64)).astype(np.uint16)
    Image.fromarray(arr).save(tmp_path / "deep.png")
    Image.fromarray(standard_label(seed=0).image).convert("P").save(tmp_path / "pal.png")
    for name in ("deep.png", "pal.png"):
        (page,) = read_pages(tmp_path / name)
        assert page.image.dtype == np.uint8 and page.image.shape[2] == 3
