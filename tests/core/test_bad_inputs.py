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


# -- bounded cost for every input (issue 21.6) --------------------------------------------------------


def _pdf(width_pt: int, height_pt: int) -> bytes:
    """A minimal valid one-page PDF (a few hundred bytes) with a page of the given size."""
    text = b"BT /F1 200 Tf 100 100 Td (LOT 42) Tj ET"
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 %d %d] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>" % (width_pt, height_pt),
        b"<< /Length %d >>\nstream\n%s\nendstream" % (len(text), text),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out, offsets = b"%PDF-1.4\n", []
    for i, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (i, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % o for o in offsets)
    return out + b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)


def test_a_tiff_of_more_pages_than_the_limit_is_refused_before_any_page(tmp_path: Path) -> None:
    tiff = tmp_path / "many.tiff"
    page = Image.new("L", (8, 8), 255)
    page.save(tiff, save_all=True, append_images=[page] * 600, compression="tiff_deflate")
    assert tiff.stat().st_size < 200_000  # a small file, 601 pages
    pages = read_pages(tiff)
    with pytest.raises(InputError, match=r"TIFF has 601 pages, over the 500-page limit"):
        next(pages)
    ok = tmp_path / "ok.tiff"
    page.save(ok, save_all=True, append_images=[page] * 499)
    assert len(list(read_pages(ok))) == 500


def _peak_rss_mb(code: str) -> tuple[float, str]:
    """Run `code` in a fresh interpreter; its peak resident memory (MB) and what it printed. The
    peak is the new process's own (VmHWM): getrusage's ru_maxrss carries the parent's peak across
    fork and exec, so it reports pytest's memory when pytest has models loaded."""
    import subprocess
    import sys

    wrapper = (
        f"{code}\nimport re\n"
        "print('PEAK', re.search(r'VmHWM:\\s*(\\d+)', open('/proc/self/status').read()).group(1))\n"
    )
    proc = subprocess.run([sys.executable, "-c", wrapper], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    peak = next(int(line.split()[1]) for line in proc.stdout.splitlines() if line.startswith("PEAK"))
    return peak / 1024, proc.stdout


def test_a_pdf_page_too_large_to_render_is_refused_with_the_limit_named(tmp_path: Path) -> None:
    hostile = tmp_path / "hostile.pdf"
    hostile.write_bytes(_pdf(14400, 14400))  # 200 x 200 inches: 1.6 GP at 200 DPI
    assert hostile.stat().st_size < 1000
    with pytest.raises(
        InputError, match=r"200x200 in; even at 72 DPI it would be 207 MP, over the 40 MP limit"
    ):
        list(read_pages(hostile))
    poster = tmp_path / "poster.pdf"
    poster.write_bytes(_pdf(4320, 4320))  # 60 x 60 inches: rendered at a lower DPI, within the limit
    peak, out = _peak_rss_mb(
        "from edge_ocr.ocr.imageio import read_pages\n"
        f"(page,) = read_pages({str(poster)!r})\n"
        "print('SHAPE', *page.image.shape)\n"
    )
    (h, w, c) = next(map(int, line.split()[1:]) for line in out.splitlines() if line.startswith("SHAPE"))  # type: ignore[misc]
    assert c == 3 and w * h <= 40_000_000 and w > 6000  # ~105 DPI
    assert peak < 450, f"rendering a 40 MP page peaked at {peak:.0f} MB"  # an 80 MP render took 1.05 GB
