"""One synthetic product label: options, layout, composition, rotation and degradation."""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass, field, replace
from pathlib import Path

import cv2
import numpy as np

from edge_ocr.errors import ConfigError
from edge_ocr.synth.degrade import Degradations, degrade
from edge_ocr.synth.dotmatrix import DotStyle, render_dot_line
from edge_ocr.synth.fonts import FontFace, cjk_font, latin_fonts
from edge_ocr.synth.geometry import rect_quad, transform_quad
from edge_ocr.synth.render import LineArt, render_text_line
from edge_ocr.synth.text import (
    LabelLine,
    line_priority,
    make_label_content,
    printed_fields,
)
from edge_ocr.types import Quad

logger = logging.getLogger(__name__)

# BGR colours, each jittered a little per label
_CARD_COLOURS = ((250, 250, 250), (215, 240, 250), (190, 245, 250), (228, 228, 228), (245, 232, 215))
_INK_COLOURS = ((20, 20, 20), (90, 35, 10), (60, 60, 60), (30, 30, 120))
_SURFACE_COLOURS = ((80, 80, 80), (40, 40, 40), (120, 110, 100), (60, 90, 60))


class Layout(str, enum.Enum):
    PLAIN = "plain"  # the label fills the image, no decorations
    CARD = "card"  # a label card on a darker surface
    BOXED = "boxed"  # card with a printed border and a rule under the first line
    BARCODE = "barcode"  # card with barcode bars under the text


@dataclass(frozen=True)
class GeneratorOptions:
    """What kind of labels to generate. `LabelSpec` is the same class."""

    width: int = 640
    height: int = 480
    n_lines: int = 4  # fewer are printed only when they cannot fit at min_cap_height
    cap_height: tuple[float, float] = (16.0, 28.0)  # px range of capital letters, drawn per label
    min_cap_height: float = 14.0
    fonts: tuple[Path, ...] | None = None  # None: every usable TrueType font found on the machine
    layouts: tuple[Layout, ...] = tuple(Layout)
    rotation_deg: float = 0.0  # maximum absolute rotation; boxes rotate with the image
    degradations: Degradations = field(default_factory=Degradations)
    dot_matrix: bool = False  # coded lines (lot, dates, serial) printed as dot-matrix dots
    inkjet: bool = False  # coded lines printed as inkjet dots (uneven, spread); implies dots
    missing_dots: float = 0.0  # probability of each coder dot missing
    cjk: bool = False  # some names and field captions in Chinese (needs a CJK font)
    seed: int = 0  # used by generate_label when it is given no generator

    def __post_init__(self) -> None:
        problems = []
        if self.width < 96 or self.height < 64:
            problems.append(f"image size {self.width}x{self.height} is below 96x64")
        if self.n_lines < 1:
            problems.append("n_lines must be at least 1")
        lo, hi = self.cap_height
        if not (self.min_cap_height <= lo <= hi):
            problems.append(f"cap_height {self.cap_height} must satisfy min_cap_height <= low <= high")
        if not 0 <= self.rotation_deg <= 45:
            problems.append("rotation_deg must be within 0..45")
        if not 0 <= self.missing_dots < 1:
            problems.append("missing_dots must be within [0, 1)")
        if not self.layouts:
            problems.append("layouts must not be empty")
        if problems:
            raise ConfigError("invalid synthetic label options: " + "; ".join(problems))

    @property
    def dots(self) -> bool:
        return self.dot_matrix or self.inkjet


LabelSpec = GeneratorOptions


@dataclass(frozen=True)
class GroundTruthLine:
    text: str
    box: Quad  # clockwise from top-left, in the label image's pixels
    field: str = ""  # which label field the line shows: product, lot, exp, mfg, serial, gs1, extra


@dataclass(frozen=True)
class SyntheticLabel:
    image: np.ndarray  # BGR uint8
    lines: tuple[GroundTruthLine, ...]
    fields: dict[str, str]  # printed field values, e.g. {"lot": "A23B0417", "exp": "2027/09", ...}
    layout: str = Layout.PLAIN.value
    angle_deg: float = 0.0

    @property
    def texts(self) -> tuple[str, ...]:
        return tuple(line.text for line in self.lines)


STANDARD_OPTIONS = GeneratorOptions(width=640, height=480, n_lines=4)


def _faces(options: GeneratorOptions) -> tuple[FontFace, ...]:
    if options.fonts is None:
        return latin_fonts()
    return tuple(FontFace(path=Path(p), monospace="mono" in Path(p).stem.lower()) for p in options.fonts)


def _jitter(rng: np.random.Generator, colour: tuple[int, int, int], amount: int = 8) -> np.ndarray:
    return np.clip(np.asarray(colour, np.float32) + rng.uniform(-amount, amount, 3), 0, 255)


def _pick(rng: np.random.Generator, items: tuple) -> object:  # type: ignore[type-arg]
    return items[int(rng.integers(len(items)))]


class _LineRenderer:
    """Renders label lines with the fonts chosen for one label."""

    def __init__(self, rng: np.random.Generator, options: GeneratorOptions) -> None:
        faces = _faces(options)
        self.rng = rng
        self.options = options
        self.text_face: FontFace = _pick(rng, faces)  # type: ignore[assignment]
        self.title_face: FontFace = _pick(rng, faces)  # type: ignore[assignment]
        regular = [f for f in faces if not f.bold] or list(faces)
        mono = [f for f in regular if f.monospace] or regular
        self.dot_face: FontFace = _pick(rng, tuple(mono))  # type: ignore[assignment]
        self.cjk_face = cjk_font() if options.cjk else None
        self.dot_style = DotStyle(
            missing_dots=options.missing_dots, inkjet=options.inkjet, rows=int(_pick(rng, (7, 7, 9)))
        )

    def render(self, line: LabelLine, cap: float) -> LineArt:
        if not line.text.isascii():
            assert self.cjk_face is not None  # only cjk=True makes non-ASCII text
            return render_text_line(line.text, self.cjk_face, cap)
        if line.coded and self.options.dots:
            return render_dot_line(line.text, self.dot_face, cap, self.rng, self.dot_style)
        return render_text_line(
            line.text, self.title_face if line.field == "product" else self.text_face, cap
        )


@dataclass
class _Area:
    x0: int
    y0: int
    x1: int
    y1: int

    @property
    def w(self) -> int:
        return self.x1 - self.x0

    @property
    def h(self) -> int:
        return self.y1 - self.y0


def _fit_lines(
    rng: np.random.Generator,
    renderer: _LineRenderer,
    candidates: list[LabelLine],
    area: _Area,
    options: GeneratorOptions,
) -> tuple[list[LabelLine], list[LineArt], float]:
    """Render up to n_lines candidates that fit the area's width, shrinking them until all fit its
    height. Returns the lines, their art and the vertical gap between them."""
    base = float(rng.uniform(*options.cap_height))
    title = base * float(rng.uniform(1.0, 1.3))
    wanted = options.n_lines
    scale = 1.0
    for _ in range(8):
        lines: list[LabelLine] = []
        arts: list[LineArt] = []
        for line in candidates:
            if len(arts) == wanted:
                break
            c = max(options.min_cap_height, (title if line.field == "product" else base) * scale)
            art = renderer.render(line, c)
            while art.width > area.w and c >= options.min_cap_height:
                c = c * area.w / art.width * 0.97
                art = renderer.render(line, c)
            if art.width > area.w or c < options.min_cap_height:
                continue  # too long for this label at a legible size: try the next candidate
            lines.append(line)
            arts.append(art)
        gap = max(6.0, 0.6 * base * scale)
        total = sum(a.height for a in arts) + gap * (len(arts) - 1)
        if total <= area.h and arts:
            return lines, arts, gap
        if base * scale <= options.min_cap_height + 1e-6:
            wanted = len(arts) - 1  # cannot shrink further: drop the least wanted line
            if wanted < 1:
                break
            logger.debug("dropping to %d lines to fit a %dx%d label", wanted, options.width, options.height)
        scale = max(options.min_cap_height / base, scale * area.h / max(total, 1.0) * 0.97)
    raise ConfigError(
        f"a {options.width}x{options.height} label cannot hold text with cap height "
        f">= {options.min_cap_height}px; use a larger image or a smaller min_cap_height"
    )


def _place(
    rng: np.random.Generator, arts: list[LineArt], gap: float, area: _Area, centred: bool
) -> list[tuple[int, int]]:
    total = sum(a.height for a in arts) + gap * (len(arts) - 1)
    spare = area.h - total
    extra = min(spare / max(1, len(arts) + 1), 1.2 * gap) * float(rng.uniform(0.3, 1.0))
    total += extra * (len(arts) - 1)
    y = area.y0 + float(rng.uniform(0.2, 0.8)) * (area.h - total)
    out = []
    for art in arts:
        room = max(0, area.w - art.width)
        x = area.x0 + (room / 2 if centred else float(rng.uniform(0, min(room, 0.08 * area.w))))
        out.append((round(x), round(y)))
        y += art.height + gap + extra
    return out


def _barcode(rng: np.random.Generator, deco: np.ndarray, area: _Area) -> None:
    module = int(rng.integers(2, 4))
    x, x_end = area.x0, area.x0 + int(area.w * float(rng.uniform(0.45, 0.8)))
    while x < x_end:
        bar = module * int(rng.integers(1, 4))
        deco[area.y0 : area.y1, x : min(x + bar, x_end)] = 1.0
        x += bar + module * int(rng.integers(1, 4))


def generate_label(
    rng: np.random.Generator | None = None, options: GeneratorOptions | None = None
) -> SyntheticLabel:
    """One label image with exact per-line ground truth. The same generator state and options give
    the same label."""
    options = options or STANDARD_OPTIONS
    rng = rng if rng is not None else np.random.default_rng(options.seed)
    W, H = options.width, options.height
    layout: Layout = _pick(rng, options.layouts)  # type: ignore[assignment]
    renderer = _LineRenderer(rng, options)
    content = make_label_content(rng, cjk=options.cjk)

    card_colour = _jitter(rng, _pick(rng, _CARD_COLOURS))  # type: ignore[arg-type]
    ink_colour = _jitter(rng, _pick(rng, _INK_COLOURS), 15)  # type: ignore[arg-type]
    surface = card_colour if layout is Layout.PLAIN else _jitter(rng, _pick(rng, _SURFACE_COLOURS), 15)  # type: ignore[arg-type]

    if layout is Layout.PLAIN:
        card = _Area(0, 0, W, H)
    else:
        mx, my = (int(rng.uniform(0.02, 0.06) * s) for s in (W, H))
        card = _Area(mx, my, W - mx, H - my)
    inset_x, inset_y = round(0.05 * card.w), round(0.07 * card.h)
    area = _Area(card.x0 + inset_x, card.y0 + inset_y, card.x1 - inset_x, card.y1 - inset_y)
    bars = None
    if layout is Layout.BARCODE:
        bar_h = round(0.2 * area.h)
        bars = _Area(area.x0, area.y1 - bar_h, area.x1, area.y1)
        area = _Area(area.x0, area.y0, area.x1, bars.y0 - round(0.04 * area.h))

    lines, arts, gap = _fit_lines(rng, renderer, line_priority(rng, content), area, options)
    order = sorted(range(len(lines)), key=lambda i: lines[i].field == "gs1")  # GS1 string last
    lines, arts = [lines[i] for i in order], [arts[i] for i in order]
    positions = _place(rng, arts, gap, area, centred=bool(rng.random() < 0.4))

    ink = np.zeros((H, W), np.float32)
    deco = np.zeros((H, W), np.float32)
    quads: list[Quad] = []
    for art, (x, y) in zip(arts, positions):
        region = ink[y : y + art.height, x : x + art.width]
        np.maximum(region, art.mask, out=region)
        quads.append(rect_quad(x, y, x + art.width, y + art.height))
    if layout is Layout.BOXED:
        t = int(rng.integers(1, 3))
        cv2.rectangle(deco, (card.x0 + inset_x // 3, card.y0 + inset_y // 3),
                      (card.x1 - inset_x // 3, card.y1 - inset_y // 3), 1.0, t)  # fmt: skip
        if len(quads) > 1:
            rule_y = round((quads[0][2][1] + quads[1][0][1]) / 2)
            deco[rule_y : rule_y + 1, card.x0 + inset_x // 3 : card.x1 - inset_x // 3] = 1.0
    if bars is not None:
        _barcode(rng, deco, bars)

    img = np.empty((H, W, 3), np.float32)
    img[:] = surface
    img[card.y0 : card.y1, card.x0 : card.x1] = card_colour
    alpha = np.maximum(ink, deco)[..., None]
    img = img * (1.0 - alpha) + ink_colour * alpha
    image = np.clip(img + 0.5, 0, 255).astype(np.uint8)

    angle = float(rng.uniform(-options.rotation_deg, options.rotation_deg)) if options.rotation_deg else 0.0
    if angle:
        image, quads = _rotate(image, quads, angle, tuple(float(c) for c in surface))
    if options.degradations.any:
        image = degrade(image, rng, options.degradations)

    gt = tuple(GroundTruthLine(line.text, q, line.field) for line, q in zip(lines, quads))
    return SyntheticLabel(
        image=image,
        lines=gt,
        fields=printed_fields(content, lines),
        layout=layout.value,
        angle_deg=angle,
    )


def _rotate(
    image: np.ndarray, quads: list[Quad], angle: float, border: tuple[float, ...]
) -> tuple[np.ndarray, list[Quad]]:
    """Rotate about the centre, scaled down just enough to keep every box inside the image."""
    h, w = image.shape[:2]
    centre = (w / 2.0, h / 2.0)
    m = cv2.getRotationMatrix2D(centre, angle, 1.0)
    pts = np.array([transform_quad(q, m) for q in quads]).reshape(-1, 2) - centre
    margin = 2.0
    need = max(np.abs(pts[:, 0]).max() / (centre[0] - margin), np.abs(pts[:, 1]).max() / (centre[1] - margin))
    if need > 1.0:
        m = cv2.getRotationMatrix2D(centre, angle, 1.0 / need)
    out = cv2.warpAffine(
        image, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=border
    )
    return out, [transform_quad(q, m) for q in quads]


def standard_label(seed: int = 0) -> SyntheticLabel:
    """The speed benchmark's label: 640x480, 4 text lines, clean."""
    return generate_label(np.random.default_rng(seed), STANDARD_OPTIONS)


def check_set(seed: int = 1234, count: int = 24) -> list[SyntheticLabel]:
    """A fixed set of standard-size labels with mild degradations and small rotations; every third
    one is dot-matrix printed. The model build uses it to check each model's accuracy."""
    base = GeneratorOptions(
        width=640, height=480, n_lines=4, rotation_deg=3.0, degradations=Degradations.mild()
    )
    out = []
    for i in range(count):
        opts = replace(base, dot_matrix=i % 3 == 2)
        out.append(generate_label(np.random.default_rng([seed, i]), opts))
    return out
