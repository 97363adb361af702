"""Find TrueType fonts on the machine and size them by cap height."""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from pathlib import Path

from PIL import ImageFont

from edge_ocr.errors import ConfigError

logger = logging.getLogger(__name__)

FONT_DIRS: tuple[Path, ...] = (
    Path("/usr/share/fonts"),
    Path("/usr/local/share/fonts"),
    Path.home() / ".fonts",
    Path.home() / ".local/share/fonts",
)
_FONT_SUFFIXES = {".ttf", ".otf", ".ttc"}
# Fonts that do not draw plain label text (symbols, maths, hairlines, emoji).
_SKIP_WORDS = ("math", "extralight", "thin", "symbol", "emoji", "icon", "awesome", "dingbat", "wingding")
# Fonts known to carry CJK ideographs, matched on the lowercase file name.
_CJK_WORDS = (
    "cjk",
    "wqy",
    "wenquanyi",
    "droidsansfallback",
    "notosanssc",
    "notoserifsc",
    "sourcehan",
    "simsun",
    "simhei",
    "msyh",
    "ukai",
    "uming",
    "arphic",
    "sarasa",
)


@dataclass(frozen=True)
class FontFace:
    """One font file. `path` None means Pillow's built-in default font."""

    path: Path | None
    monospace: bool = False
    bold: bool = False

    @property
    def name(self) -> str:
        return self.path.stem if self.path else "pillow-default"


def _font_files(dirs: tuple[Path, ...]) -> list[Path]:
    found: list[Path] = []
    for d in dirs:
        if not d.is_dir():
            continue
        found.extend(p for p in d.rglob("*") if p.suffix.lower() in _FONT_SUFFIXES and p.is_file())
    return sorted(set(found))


def _face(path: Path) -> FontFace:
    stem = path.stem.lower()
    return FontFace(path=path, monospace="mono" in stem, bold="bold" in stem)


@functools.lru_cache(maxsize=4)
def latin_fonts(dirs: tuple[Path, ...] = FONT_DIRS) -> tuple[FontFace, ...]:
    """Fonts usable for Latin label text, sorted by path; Pillow's default font when none exist."""
    faces = [
        _face(p)
        for p in _font_files(dirs)
        if not any(w in p.stem.lower() for w in _SKIP_WORDS + _CJK_WORDS) and "oblique" not in p.stem.lower()
    ]
    if not faces:
        logger.warning("no TrueType fonts found in %s; using Pillow's default font", dirs)
        return (FontFace(path=None),)
    return tuple(faces)


@functools.lru_cache(maxsize=4)
def cjk_font(dirs: tuple[Path, ...] = FONT_DIRS) -> FontFace:
    """A font with CJK glyphs, or ConfigError naming what to install."""
    for p in _font_files(dirs):
        if any(w in p.name.lower() for w in _CJK_WORDS):
            return FontFace(path=p)
    raise ConfigError(
        "synthetic CJK text needs a font with Chinese glyphs and none was found in "
        f"{', '.join(str(d) for d in dirs)}; install one (e.g. `apt-get install fonts-noto-cjk` "
        "or fonts-wqy-microhei) or generate without cjk=True"
    )


@functools.lru_cache(maxsize=512)
def load_font(face: FontFace, size: int) -> ImageFont.FreeTypeFont:
    size = max(4, int(size))
    if face.path is None:
        return ImageFont.load_default(size)  # type: ignore[return-value]
    return ImageFont.truetype(str(face.path), size)


@functools.lru_cache(maxsize=128)
def cap_ratio(face: FontFace) -> float:
    """Cap height ("H") divided by the font size."""
    x0, y0, x1, y1 = load_font(face, 100).getbbox("H", anchor="ls")
    return max(0.3, (y1 - y0) / 100.0)


def font_for_cap_height(face: FontFace, cap_height: float) -> ImageFont.FreeTypeFont:
    """The font at the size whose capital letters are `cap_height` pixels tall."""
    return load_font(face, round(cap_height / cap_ratio(face)))
