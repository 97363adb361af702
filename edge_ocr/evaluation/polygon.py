"""Polygon area and IoU. Shapely when importable; otherwise exact triangle-by-triangle intersection
with cv2.intersectConvexConvex, which also handles the rare non-convex quad."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

try:  # optional: exact for any simple polygon and repairs self-intersecting ones
    from shapely.geometry import Polygon as _ShapelyPolygon
except ImportError:  # pragma: no cover - depends on the machine
    _ShapelyPolygon = None

Points = Sequence[Sequence[float]]


def polygon_area(points: Points) -> float:
    p = np.asarray(points, dtype=np.float64)
    x, y = p[:, 0], p[:, 1]
    return float(abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))) / 2.0)


def _signed_area(p: np.ndarray) -> float:
    x, y = p[:, 0], p[:, 1]
    return float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))) / 2.0


def _cross(o: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    return float((a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0]))


def _inside_triangle(p: np.ndarray, a: np.ndarray, b: np.ndarray, c: np.ndarray) -> bool:
    return _cross(a, b, p) >= 0 and _cross(b, c, p) >= 0 and _cross(c, a, p) >= 0


def _segments_cross(a: np.ndarray, b: np.ndarray, c: np.ndarray, d: np.ndarray) -> bool:
    return _cross(a, b, c) * _cross(a, b, d) < 0 and _cross(c, d, a) * _cross(c, d, b) < 0


def _self_intersecting(p: np.ndarray) -> bool:
    n = len(p)
    for i in range(n):
        for j in range(i + 2, n):
            if i == 0 and j == n - 1:
                continue  # adjacent through the closing edge
            if _segments_cross(p[i], p[(i + 1) % n], p[j], p[(j + 1) % n]):
                return True
    return False


def triangulate(points: Points) -> list[np.ndarray]:
    """Ear-clipping triangulation of a simple polygon (counter-clockwise in maths axes). A
    self-intersecting polygon is replaced by its convex hull."""
    p = np.asarray(points, dtype=np.float64)
    if len(p) < 3 or polygon_area(p) == 0.0:
        return []
    if _self_intersecting(p):
        p = cv2.convexHull(p.astype(np.float32)).reshape(-1, 2).astype(np.float64)
    if _signed_area(p) < 0:
        p = p[::-1]
    idx = list(range(len(p)))
    tris: list[np.ndarray] = []
    guard = 0
    while len(idx) > 3 and guard < 10 * len(p):
        guard += 1
        for k in range(len(idx)):
            a, b, c = p[idx[k - 1]], p[idx[k]], p[idx[(k + 1) % len(idx)]]
            if _cross(a, b, c) <= 0:
                continue  # reflex or flat corner
            others = (p[i] for i in idx if i not in (idx[k - 1], idx[k], idx[(k + 1) % len(idx)]))
            if any(_inside_triangle(q, a, b, c) for q in others):
                continue
            tris.append(np.array([a, b, c]))
            del idx[k]
            break
        else:  # numerically degenerate: fall back to a fan
            break
    if len(idx) >= 3:
        for k in range(1, len(idx) - 1):
            tris.append(np.array([p[idx[0]], p[idx[k]], p[idx[k + 1]]]))
    return tris


def _convex_intersection(a: np.ndarray, b: np.ndarray) -> float:
    area, _ = cv2.intersectConvexConvex(a.astype(np.float32), b.astype(np.float32))
    return max(0.0, float(area))


def intersection_area_cv2(a: Points, b: Points) -> float:
    ta, tb = triangulate(a), triangulate(b)
    return sum(_convex_intersection(x, y) for x in ta for y in tb)


def _shapely(points: Points):  # type: ignore[no-untyped-def]
    poly = _ShapelyPolygon([tuple(p) for p in points])
    return poly if poly.is_valid else poly.buffer(0)


def intersection_area(a: Points, b: Points) -> float:
    if _ShapelyPolygon is not None:
        return float(_shapely(a).intersection(_shapely(b)).area)
    return intersection_area_cv2(a, b)


def _area(points: Points) -> float:
    if _ShapelyPolygon is not None:
        return float(_shapely(points).area)
    return sum(polygon_area(t) for t in triangulate(points))


def iou(a: Points, b: Points) -> float:
    """Intersection over union of two polygons (0 when either has no area)."""
    inter = intersection_area(a, b)
    union = _area(a) + _area(b) - inter
    return inter / union if union > 0 else 0.0


def iou_cv2(a: Points, b: Points) -> float:
    """IoU without shapely (the fallback path), exposed for tests and comparison."""
    inter = intersection_area_cv2(a, b)
    union = (
        sum(polygon_area(t) for t in triangulate(a)) + sum(polygon_area(t) for t in triangulate(b)) - inter
    )
    return inter / union if union > 0 else 0.0


def covered_fraction(inner: Points, outer: Points) -> float:
    """Share of `inner`'s area lying inside `outer`."""
    area = _area(inner)
    return intersection_area(inner, outer) / area if area > 0 else 0.0
