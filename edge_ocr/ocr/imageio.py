"""Reading input files into images, with limits. Every failure is an `InputError` that says why.

Accepted: PNG, JPEG, TIFF (every page), BMP, WebP, GIF (first frame) and PDF (every page,
rendered with pdfium). The format is sniffed from the file's bytes, never its name.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge_ocr.errors import InputError

logger = logging.getLogger(__name__)

MAX_FILE_BYTES = 256 * 1024 * 1024
MAX_PIXELS = 80_000_000  # per page; a 20000x20000 image (400 MP) is refused, not decoded
MAX_PAGES = 500  # per file, every format (PDF, TIFF): refused before any page is read
MAX_PDF_PAGES = MAX_PAGES
PDF_DPI = 200
MAX_RENDER_PIXELS = 40_000_000  # a rendered PDF page: larger pages are rendered at a lower DPI...
MIN_PDF_DPI = 72  # ...down to this; a page still over the limit there is refused

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp", ".gif", ".pdf"})

_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "png"),
    (b"\xff\xd8\xff", "jpeg"),
    (b"II*\x00", "tiff"),
    (b"MM\x00*", "tiff"),
    (b"II+\x00", "tiff"),
    (b"MM\x00+", "tiff"),
    (b"BM", "bmp"),
    (b"GIF87a", "gif"),
    (b"GIF89a", "gif"),
    (b"%PDF-", "pdf"),
)


@dataclass(frozen=True)
class Page:
    image: np.ndarray  # BGR uint8
    index: int  # 0-based page number
    count: int  # pages in the file


def sniff_format(head: bytes) -> str | None:
    for magic, fmt in _MAGIC:
        if head.startswith(magic):
            return fmt
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    return None


def _check_file(path: Path) -> tuple[str, int]:
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    if path.is_dir():
        raise InputError(f"{path}: is a folder, not an image")
    if size == 0:
        raise InputError(f"{path}: file is empty (0 bytes)")
    if size > MAX_FILE_BYTES:
        raise InputError(f"{path}: file is {size / 1e6:.0f} MB, over the {MAX_FILE_BYTES / 1e6:.0f} MB limit")
    try:
        with path.open("rb") as fh:
            head = fh.read(16)
    except OSError as exc:
        raise InputError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    fmt = sniff_format(head)
    if fmt is None:
        raise InputError(
            f"{path}: not an image (unknown file signature {head[:8]!r}); "
            "accepted: PNG, JPEG, TIFF, BMP, WebP, GIF, PDF"
        )
    return fmt, size


def _to_bgr(img) -> np.ndarray:  # PIL.Image.Image
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(img, dtype=np.float32)
        hi = float(arr.max()) or 1.0
        arr = (arr / hi * 255.0).astype(np.uint8)
        return np.ascontiguousarray(np.repeat(arr[:, :, None], 3, axis=2))
    if img.mode != "RGB":
        img = img.convert("RGB")
    rgb = np.asarray(img, dtype=np.uint8)
    return np.ascontiguousarray(rgb[:, :, ::-1])


def _raster_pages(path: Path, fmt: str, max_pixels: int) -> Iterator[Page]:
    from PIL import Image, ImageSequence, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(path)
    except (UnidentifiedImageError, Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise InputError(f"{path}: cannot decode {fmt.upper()}: {exc}") from exc
    except OSError as exc:
        raise InputError(f"{path}: cannot decode {fmt.upper()}: {exc}") from exc
    with img:
        count = _tiff_pages(path, img, max_pixels) if fmt == "tiff" else 1
        frames = ImageSequence.Iterator(img) if fmt == "tiff" else [img]
        for index, frame in enumerate(frames):
            if index >= count:
                break
            w, h = frame.size
            if w * h > max_pixels:
                raise InputError(
                    f"{path}: page {index + 1} is {w}x{h} ({w * h / 1e6:.0f} MP), over the "
                    f"{max_pixels / 1e6:.0f} MP limit; scale it down before OCR"
                )
            if w < 2 or h < 2:
                raise InputError(f"{path}: image is {w}x{h} pixels, too small to read")
            try:
                frame.load()
                bgr = _to_bgr(frame)
            except (OSError, ValueError, SyntaxError) as exc:
                raise InputError(f"{path}: {fmt.upper()} data is corrupt or truncated ({exc})") from exc
            yield Page(image=bgr, index=index, count=count)


def _tiff_pages(path: Path, img, max_pixels: int) -> int:  # PIL.Image.Image
    """The page count of a TIFF once every page's header passed the limits (nothing decoded yet)."""
    try:
        count = img.n_frames
        if count > MAX_PAGES:
            raise InputError(f"{path}: TIFF has {count} pages, over the {MAX_PAGES}-page limit")
        for index in range(count):
            img.seek(index)
            w, h = img.size
            if w * h > max_pixels:
                raise InputError(
                    f"{path}: page {index + 1} is {w}x{h} ({w * h / 1e6:.0f} MP), over the "
                    f"{max_pixels / 1e6:.0f} MP limit; scale it down before OCR"
                )
        img.seek(0)
    except (OSError, ValueError, EOFError, SyntaxError) as exc:
        raise InputError(f"{path}: TIFF data is corrupt or truncated ({exc})") from exc
    return count


def _pdf_dpi(path: Path, index: int, w_pt: float, h_pt: float, max_pixels: int) -> float:
    """The DPI to render a page at: PDF_DPI, or lower for a large page so that it stays within
    `max_pixels` (never under MIN_PDF_DPI: then the page is refused, the limit named)."""
    px_at = lambda dpi: (w_pt / 72 * dpi) * (h_pt / 72 * dpi)  # noqa: E731
    if px_at(PDF_DPI) <= max_pixels:
        return PDF_DPI
    dpi = PDF_DPI * (max_pixels / px_at(PDF_DPI)) ** 0.5 * 0.999  # pdfium rounds sizes up
    if dpi < MIN_PDF_DPI:
        raise InputError(
            f"{path}: PDF page {index + 1} is {w_pt / 72:.0f}x{h_pt / 72:.0f} in; even at {MIN_PDF_DPI} DPI "
            f"it would be {px_at(MIN_PDF_DPI) / 1e6:.0f} MP, over the {max_pixels / 1e6:.0f} MP limit "
            "for a rendered page"
        )
    return dpi


def _pdf_pages(path: Path, max_pixels: int) -> Iterator[Page]:
    import pypdfium2 as pdfium

    max_pixels = min(max_pixels, MAX_RENDER_PIXELS)
    try:
        pdf = pdfium.PdfDocument(str(path))
    except pdfium.PdfiumError as exc:
        raise InputError(f"{path}: cannot open PDF ({exc})") from exc
    try:
        count = len(pdf)
        if count == 0:
            raise InputError(f"{path}: PDF has no pages")
        if count > MAX_PAGES:
            raise InputError(f"{path}: PDF has {count} pages, over the {MAX_PAGES}-page limit")
        dpis = []
        for index in range(count):  # every page's size first: a file is refused before any work
            page = pdf[index]
            try:
                dpis.append(_pdf_dpi(path, index, *page.get_size(), max_pixels))
            finally:
                page.close()
        for index, dpi in enumerate(dpis):
            page = pdf[index]
            try:
                bitmap = page.render(scale=dpi / 72.0)  # BGR, as OpenCV: one copy, no conversion
                try:
                    image = np.array(bitmap.to_numpy(), dtype=np.uint8, copy=True)
                finally:
                    bitmap.close()
            finally:
                page.close()
            yield Page(image=image, index=index, count=count)
    finally:
        pdf.close()


# Single-image formats are decoded by OpenCV, as the reference pipeline reads files (cv2.imread),
# so the same file gives the same pixels; Pillow checks the header and the size first.
_OPENCV_FORMATS = frozenset({"png", "jpeg", "bmp", "webp"})


def _header_size(path: Path, fmt: str, max_pixels: int) -> tuple[int, int]:
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                return img.size
    except Image.DecompressionBombError as exc:
        raise InputError(
            f"{path}: image is over the {max_pixels / 1e6:.0f} MP limit ({exc}); scale it down before OCR"
        ) from exc
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise InputError(f"{path}: cannot decode {fmt.upper()}: {exc}") from exc


def _opencv_page(path: Path, fmt: str, max_pixels: int) -> Page:
    import cv2

    w, h = _header_size(path, fmt, max_pixels)
    if w * h > max_pixels:
        raise InputError(
            f"{path}: image is {w}x{h} ({w * h / 1e6:.0f} MP), over the {max_pixels / 1e6:.0f} MP limit; "
            "scale it down before OCR"
        )
    if w < 2 or h < 2:
        raise InputError(f"{path}: image is {w}x{h} pixels, too small to read")
    data = np.fromfile(str(path), dtype=np.uint8)
    if fmt == "jpeg" and b"\xff\xd9" not in data[-65536:].tobytes():
        raise InputError(f"{path}: JPEG data is truncated (no end-of-image marker)")
    image = cv2.imdecode(data, cv2.IMREAD_COLOR)
    if image is None:
        raise InputError(f"{path}: {fmt.upper()} data is corrupt or truncated")
    return Page(image=image, index=0, count=1)


def read_pages(path: Path, *, max_pixels: int = MAX_PIXELS) -> Iterator[Page]:
    """Yield every page of an image or PDF file as BGR arrays. Raises InputError on bad input."""
    path = Path(path)
    fmt, _ = _check_file(path)
    if fmt == "pdf":
        yield from _pdf_pages(path, max_pixels)
    elif fmt in _OPENCV_FORMATS:
        yield _opencv_page(path, fmt, max_pixels)
    else:
        yield from _raster_pages(path, fmt, max_pixels)


def read_image(path: Path, *, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """The first page of a file as a BGR array."""
    for page in read_pages(path, max_pixels=max_pixels):
        return page.image
    raise InputError(f"{path}: no image in file")


def decode_bytes(data: bytes, *, max_pixels: int = MAX_PIXELS, name: str = "<upload>") -> np.ndarray:
    """Decode an in-memory image (first page), with the same checks as files."""
    from io import BytesIO

    from PIL import Image, UnidentifiedImageError

    if not data:
        raise InputError(f"{name}: empty image")
    fmt = sniff_format(data[:16])
    if fmt is None or fmt == "pdf":
        raise InputError(f"{name}: not an image; accepted: PNG, JPEG, TIFF, BMP, WebP, GIF")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(BytesIO(data))
            w, h = img.size
            if w * h > max_pixels:
                raise InputError(f"{name}: image is {w}x{h}, over the {max_pixels / 1e6:.0f} MP limit")
            img.load()
            return _to_bgr(img)
    except InputError:
        raise
    except (UnidentifiedImageError, Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise InputError(f"{name}: cannot decode image: {exc}") from exc
    except (OSError, ValueError, SyntaxError) as exc:
        raise InputError(f"{name}: image data is corrupt or truncated ({exc})") from exc
