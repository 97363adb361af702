"""Photometric degradations of a BGR uint8 image; each optional and driven by the caller's generator.

Geometry never changes here, so ground-truth boxes stay valid.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class Degradations:
    """Which degradations may be applied. Each enabled one is applied with `probability`, with a
    random amount scaled by `strength` (0 = none, 1 = the full range)."""

    illumination: bool = False  # linear gradient and vignette
    low_contrast: bool = False
    blur: bool = False  # Gaussian
    noise: bool = False  # Gaussian sensor noise
    jpeg: bool = False  # compression artefacts
    probability: float = 1.0
    strength: float = 1.0

    @classmethod
    def none(cls) -> Degradations:
        return cls()

    @classmethod
    def all(cls, probability: float = 1.0, strength: float = 1.0) -> Degradations:
        return cls(True, True, True, True, True, probability=probability, strength=strength)

    @classmethod
    def mild(cls) -> Degradations:
        return cls.all(probability=0.5, strength=0.5)

    @property
    def any(self) -> bool:
        return self.illumination or self.low_contrast or self.blur or self.noise or self.jpeg


def uneven_illumination(img: np.ndarray, rng: np.random.Generator, strength: float) -> np.ndarray:
    h, w = img.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    ang = rng.uniform(0, 2 * np.pi)
    ramp = (np.cos(ang) * (xx / w - 0.5) + np.sin(ang) * (yy / h - 0.5)) + 0.5  # about 0..1
    gain = 1.0 - strength * rng.uniform(0.15, 0.5) * ramp
    cx, cy = rng.uniform(0.3, 0.7) * w, rng.uniform(0.3, 0.7) * h
    r2 = ((xx - cx) / w) ** 2 + ((yy - cy) / h) ** 2
    gain *= 1.0 - strength * rng.uniform(0.1, 0.5) * np.clip(r2 / 0.5, 0.0, 1.0)
    return np.clip(img.astype(np.float32) * gain[..., None], 0, 255).astype(np.uint8)


def low_contrast(img: np.ndarray, rng: np.random.Generator, strength: float) -> np.ndarray:
    factor = 1.0 - strength * rng.uniform(0.3, 0.6)
    level = img.mean() + rng.uniform(-20, 20) * strength
    out = level + (img.astype(np.float32) - img.mean()) * factor
    return np.clip(out, 0, 255).astype(np.uint8)


def gaussian_blur(img: np.ndarray, rng: np.random.Generator, strength: float) -> np.ndarray:
    sigma = 0.3 + strength * rng.uniform(0.2, 1.3)
    return cv2.GaussianBlur(img, (0, 0), sigma)


def gaussian_noise(img: np.ndarray, rng: np.random.Generator, strength: float) -> np.ndarray:
    sigma = 1.0 + strength * rng.uniform(2.0, 10.0)
    out = img.astype(np.float32) + rng.normal(0.0, sigma, img.shape).astype(np.float32)
    return np.clip(out, 0, 255).astype(np.uint8)


def jpeg_artefacts(img: np.ndarray, rng: np.random.Generator, strength: float) -> np.ndarray:
    quality = int(round(90 - strength * rng.uniform(30, 70)))
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, max(10, quality)])
    if not ok:  # pragma: no cover - OpenCV always encodes JPEG
        return img
    return cv2.imdecode(buf, cv2.IMREAD_COLOR)


def degrade(img: np.ndarray, rng: np.random.Generator, options: Degradations) -> np.ndarray:
    """Apply the enabled degradations in a fixed order: light, contrast, optics, sensor, codec."""
    steps = (
        (options.illumination, uneven_illumination),
        (options.low_contrast, low_contrast),
        (options.blur, gaussian_blur),
        (options.noise, gaussian_noise),
        (options.jpeg, jpeg_artefacts),
    )
    for enabled, step in steps:
        if enabled and rng.random() < options.probability:
            img = step(img, rng, options.strength)
    return img
