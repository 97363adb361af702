"""Where the endpoint keeps things in storage: the object key layout (images, their OCR results, the
result cache, the fleet records) and the ids that name parts of it."""

from __future__ import annotations

import re

IMAGE_TYPES = {
    "image/png": ".png",
    "image/jpeg": ".jpg",
    "image/tiff": ".tif",
    "image/bmp": ".bmp",
    "image/webp": ".webp",
    "image/gif": ".gif",
}
IMAGE_PREFIX = "images/"
RESULT_SUFFIX = ".ocr.json"
CACHE_PREFIX = "cache/"
RESULTS_PREFIX = "results/"  # the fleet layout: results/dt=YYYY-MM-DD/device=ID/<batch>.jsonl
DEVICE_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
