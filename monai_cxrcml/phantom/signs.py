"""Drawing of the phantom chest films: anatomy, one visual sign per CXR-LT 2024 class, exposure and noise.

Geometry is written in *film units*: ``u`` runs from 0 (left edge of the displayed film, the patient's right)
to 1 (right edge), ``v`` from 0 (top) to 1 (bottom); round things have radii in units of the film width. A
:class:`Canvas` maps film units to pixels and draws every primitive only inside its bounding box; the finished
film is then rotated, scaled and shifted once (patient positioning). A film costs about the same number of
operations per pixel at any size (a 2048-pixel film takes ~0.2 s and ~130 MB).

Every sign is placed relative to the patient's :class:`Anatomy` and keeps a footprint of at least ~3 pixels on
a 64-pixel film, so a network at 64 px can tell the 40 classes apart by where the sign sits and what it looks
like (see :data:`SIGN_CATALOGUE`). Lung zones are addressed with :meth:`Anatomy.lung`: ``a`` from 0 (lateral
chest wall) to 1 (mediastinum), ``b`` from 0 (apex) to 1 (costophrenic angle); ``"R"`` is the patient's right
lung, drawn on the left of the film.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from collections.abc import Callable, Sequence
from typing import NamedTuple

import numpy as np
from PIL import Image

from ..data.mimic import FRONTAL_VIEWS
from ..data.vocabulary import concept_of

__all__ = [
    "Canvas",
    "Anatomy",
    "Sign",
    "SIGNS",
    "SIGN_CATALOGUE",
    "GeneratedSign",
    "sign_for",
    "sample_anatomy",
    "vary_anatomy",
    "render_film",
]

_LATERAL_SIGN_SCALE = 0.5
"""Signs on lateral films are drawn at half strength (they are harder to see there)."""


def _ramp(x: np.ndarray) -> np.ndarray:
    """Soft step: 0 for x <= -0.5, 1 for x >= 0.5, linear between (x in units of the edge width)."""
    return np.minimum(np.maximum(x + np.float32(0.5), np.float32(0.0)), np.float32(1.0))


class Canvas:
    """A film being drawn: float32 layers of shape [H, W] and the film-units -> pixels mapping.

    Layers: ``image`` (brightness, 0 = no attenuation, ~1 = metal), ``lung`` (aerated-lung mask in [0, 1]),
    ``solid`` (mediastinum and heart mask), ``markings`` (lung vessel markings) and ``visibility`` (factor on the
    markings; signs that remove lung markings, such as a pneumothorax, lower it). Drawing happens in an
    axis-aligned frame; :func:`render_film` rotates, scales and shifts the finished film once.

    Parameters
    ----------
    height, width
        Film size in pixels.
    u_map
        ``(offset, scale)`` applied to ``u`` before drawing; lateral films draw the frontal sign catalogue
        squeezed into the middle of the film with ``(0.22, 0.56)``.
    """

    LAYERS = ("image", "lung", "solid", "markings", "visibility")

    def __init__(self, height: int, width: int, u_map: tuple[float, float] = (0.0, 1.0)) -> None:
        self.height, self.width = int(height), int(width)
        self.layers = {name: np.zeros((self.height, self.width), np.float32) for name in self.LAYERS}
        self.layers["visibility"][:] = 1.0
        self._xs = np.arange(self.width, dtype=np.float32) + np.float32(0.5)
        self._ys = np.arange(self.height, dtype=np.float32) + np.float32(0.5)
        self.u_map = u_map
        self.edge = max(0.75, 0.004 * self.width)
        """Width of soft edges in pixels (scales with the film, so signs look alike at every size)."""

    def with_u_map(self, u_map: tuple[float, float]) -> Canvas:
        """The same layers with another ``u`` mapping (shares the arrays)."""
        other = object.__new__(Canvas)
        other.__dict__.update(self.__dict__)
        other.u_map = u_map
        return other

    # --- coordinates -------------------------------------------------------------------------------------
    def p(self, u, v) -> tuple:
        """Film units -> pixel coordinates (floats or arrays)."""
        return (self.u_map[0] + self.u_map[1] * u) * self.width, v * self.height

    def w(self, length: float) -> float:
        """A length in units of the film width -> pixels."""
        return length * self.width

    def _window(
        self, x0: float, x1: float, y0: float, y1: float
    ) -> tuple[tuple[slice, slice], np.ndarray, np.ndarray] | None:
        """Pixel window covering the box, with the pixel-centre coordinates X [1, w] and Y [h, 1]."""
        c0, c1 = max(int(math.floor(x0)), 0), min(int(math.ceil(x1)) + 1, self.width)
        r0, r1 = max(int(math.floor(y0)), 0), min(int(math.ceil(y1)) + 1, self.height)
        if c1 <= c0 or r1 <= r0:
            return None
        return (slice(r0, r1), slice(c0, c1)), self._xs[None, c0:c1], self._ys[r0:r1, None]

    def _apply(self, layer: str, sl: tuple[slice, slice], values: np.ndarray, op: str, clip_to_lung: bool) -> None:
        if clip_to_lung:
            values = values * self.layers["lung"][sl]
        target = self.layers[layer]
        if op == "add":
            target[sl] += values
        elif op == "max":
            np.maximum(target[sl], values, out=target[sl])
        elif op == "suppress":
            target[sl] *= 1.0 - np.clip(values, 0.0, 1.0)
        else:
            raise ValueError(f"unknown drawing op {op!r}: use 'add', 'max' or 'suppress'.")

    # --- primitives ----------------------------------------------------------------------------------------
    def field(
        self,
        box: tuple[float, float, float, float],
        fn: Callable[[np.ndarray, np.ndarray], np.ndarray],
        amp: float = 1.0,
        layer: str = "image",
        op: str = "add",
        clip_to_lung: bool = False,
    ) -> None:
        """Add ``amp * fn(X, Y)`` (pixel-centre coordinates X [1, w], Y [h, 1]) over the box ``(u0, u1, v0, v1)``."""
        (x0, x1), (y0, y1) = (sorted(t) for t in zip(self.p(box[0], box[2]), self.p(box[1], box[3])))
        self._field_px((x0, x1, y0, y1), fn, amp, layer, op, clip_to_lung)

    def ellipse(
        self,
        u: float,
        v: float,
        ru: float,
        rv: float | None = None,
        amp: float = 1.0,
        angle: float = 0.0,
        profile: str = "flat",
        softness: float = 1.0,
        layer: str = "image",
        op: str = "add",
        clip_to_lung: bool = False,
    ) -> None:
        """An ellipse centred at (u, v) with radii ``ru``, ``rv`` in units of the film width (``rv`` = ``ru``).

        ``profile``: ``"flat"`` (uniform, soft edge ``softness`` x :attr:`edge`), ``"dome"`` (projection of a
        ball, sqrt(1 - r^2)) or ``"gauss"`` (exp(-2 r^2), reaching ~0 at 1.6 radii).
        """
        if profile not in ("flat", "dome", "gauss"):
            raise ValueError(f"unknown ellipse profile {profile!r}: use 'flat', 'dome' or 'gauss'.")
        rx, ry = self.w(ru), self.w(ru if rv is None else rv)
        cx, cy = self.p(u, v)
        reach = max(rx, ry) * (1.7 if profile == "gauss" else 1.0) + 2 * self.edge * softness
        cos, sin = np.float32(math.cos(math.radians(angle))), np.float32(math.sin(math.radians(angle)))

        def fn(X: np.ndarray, Y: np.ndarray) -> np.ndarray:
            dx, dy = X - np.float32(cx), Y - np.float32(cy)
            r = np.sqrt(((cos * dx + sin * dy) / rx) ** 2 + ((cos * dy - sin * dx) / ry) ** 2)
            if profile == "flat":
                return _ramp((1.0 - r) * min(rx, ry) / (self.edge * softness))
            if profile == "dome":
                return np.sqrt(np.clip(1.0 - r * r, 0.0, 1.0))
            return np.exp(-2.0 * r * r)

        self._field_px((cx - reach, cx + reach, cy - reach, cy + reach), fn, amp, layer, op, clip_to_lung)

    def polyline(
        self,
        points: Sequence[tuple[float, float]],
        width: float,
        amp: float = 1.0,
        profile: str = "flat",
        closed: bool = False,
        layer: str = "image",
        op: str = "add",
        clip_to_lung: bool = False,
    ) -> None:
        """A line through ``points`` (film units) of ``width`` (units of the film width); ``"flat"`` or ``"gauss"``."""
        pts = np.array([self.p(u, v) for u, v in points], dtype=np.float32)
        half = max(self.w(width) / 2.0, 0.5)
        reach = half * (2.0 if profile == "gauss" else 1.0) + 2 * self.edge

        def fn(X: np.ndarray, Y: np.ndarray) -> np.ndarray:
            d = _polyline_distance(X, Y, pts, closed)
            if profile == "flat":
                return _ramp((half - d) / self.edge)
            return np.exp(-2.0 * (d / half) ** 2)

        box = (pts[:, 0].min() - reach, pts[:, 0].max() + reach, pts[:, 1].min() - reach, pts[:, 1].max() + reach)
        self._field_px(box, fn, amp, layer, op, clip_to_lung)

    def polygon(
        self,
        points: Sequence[tuple[float, float]],
        amp: float = 1.0,
        softness: float = 1.0,
        layer: str = "image",
        op: str = "add",
        clip_to_lung: bool = False,
    ) -> None:
        """A filled polygon with a soft edge."""
        pts = np.array([self.p(u, v) for u, v in points], dtype=np.float32)
        edge = self.edge * softness

        def fn(X: np.ndarray, Y: np.ndarray) -> np.ndarray:
            d = _polyline_distance(X, Y, pts, closed=True)
            return _ramp(np.where(_inside(X, Y, pts), d, -d) / edge)

        reach = 2 * edge
        box = (pts[:, 0].min() - reach, pts[:, 0].max() + reach, pts[:, 1].min() - reach, pts[:, 1].max() + reach)
        self._field_px(box, fn, amp, layer, op, clip_to_lung)

    def _field_px(self, box: tuple, fn: Callable, amp: float, layer: str, op: str, clip_to_lung: bool) -> None:
        """:meth:`field` over a box in pixels ``(x0, x1, y0, y1)``."""
        window = self._window(*box)
        if window is None or amp == 0:
            return
        sl, X, Y = window
        self._apply(layer, sl, np.float32(amp) * fn(X, Y), op, clip_to_lung)


def _polyline_distance(X: np.ndarray, Y: np.ndarray, pts: np.ndarray, closed: bool) -> np.ndarray:
    """Distance of each (X, Y) to the polyline through ``pts`` [P, 2] (closed: back to the first point)."""
    if closed:
        pts = np.concatenate([pts, pts[:1]])
    if len(pts) == 1:
        return np.hypot(X - pts[0, 0], Y - pts[0, 1])
    best = None
    for (ax, ay), (bx, by) in zip(pts[:-1], pts[1:]):
        ex, ey = bx - ax, by - ay
        length2 = max(float(ex * ex + ey * ey), 1e-9)
        t = np.clip(((X - ax) * ex + (Y - ay) * ey) / np.float32(length2), 0.0, 1.0)
        d2 = (X - ax - t * ex) ** 2 + (Y - ay - t * ey) ** 2
        best = d2 if best is None else np.minimum(best, d2)
    return np.sqrt(best)


def _inside(X: np.ndarray, Y: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """Even-odd point-in-polygon test of each (X, Y) against the closed polygon ``pts`` [P, 2]."""
    inside = np.zeros(np.broadcast_shapes(X.shape, Y.shape), bool)
    for (ax, ay), (bx, by) in zip(pts, np.roll(pts, -1, axis=0)):
        if ay == by:
            continue
        crosses = (Y >= min(ay, by)) & (Y < max(ay, by))
        x_at = ax + (Y - ay) * np.float32((bx - ax) / (by - ay))
        inside ^= crosses & (X < x_at)
    return inside


@dataclasses.dataclass(frozen=True)
class Anatomy:
    """Geometry and densities of one patient's chest, in film units (see the module docstring).

    Per-patient values come from :func:`sample_anatomy`; :func:`vary_anatomy` adds the per-film changes
    (inspiration, AP magnification) and the shape-changing signs (cardiomegaly, emphysema, ...) edit it.
    """

    cx: float = 0.5  # midline
    tw: float = 0.40  # half width of the thorax at the lung bases
    apex: float = 0.14  # lung apices
    base_r: float = 0.70  # right costophrenic angle
    base_l: float = 0.72  # left costophrenic angle
    dome: float = 0.06  # height of the diaphragm domes above the costophrenic angles
    mw: float = 0.055  # half width of the superior mediastinum
    heart_u: float = 0.535
    heart_hw: float = 0.175  # half width of the heart (cardiothoracic ratio ~ heart_hw / tw)
    heart_hh: float = 0.125  # half height of the heart
    knob_r: float = 0.035  # aortic knob radius (units of width)
    air: float = 0.34  # darkening of aerated lung
    tissue: float = 0.50  # soft-tissue brightness
    bone: float = 0.10  # rib / clavicle brightness
    rib_spacing: float = 0.056
    markings: float = 0.07  # brightness of the lung vessel markings
    body_hw: float = 0.47  # half width of the body outline
    kyphosis: float = 0.0  # lateral deviation of the spine (units of width), signed
    tortuous: float = 0.0  # tortuosity of the aorta in [0, 1]
    clavicle_break: float = 0.0  # displacement of a right clavicle fracture in [0, 1]
    gastric_bubble: float = 0.1  # darkness of the gastric air bubble under the left dome
    ap: bool = False  # antero-posterior projection (scapulae over the lungs, magnified heart)

    @property
    def heart_v(self) -> float:
        """Vertical centre of the heart (its lower half hides behind the diaphragm)."""
        return self.base_r - self.dome - 0.04

    @property
    def knob(self) -> tuple[float, float]:
        """Centre of the aortic knob."""
        return self.cx + self.mw + 0.015 + 0.03 * self.tortuous, self.apex + 0.13 - 0.015 * self.tortuous

    def base(self, side: str) -> float:
        return self.base_r if side == "R" else self.base_l

    def lung(self, side: str, a: float, b: float) -> tuple[float, float]:
        """Point of a lung: ``a`` 0 lateral wall -> 1 mediastinum, ``b`` 0 apex -> 1 costophrenic angle."""
        sigma = -1.0 if side == "R" else 1.0
        lateral = self.cx + sigma * self.tw * (0.78 + 0.22 * math.sin(min(1.0, b / 0.6) * math.pi / 2))
        medial = self.cx + sigma * (self.mw - 0.01)
        return lateral + a * (medial - lateral), self.apex + b * (self.base(side) - self.apex)

    def dome_v(self, side: str, u: float | np.ndarray) -> float | np.ndarray:
        """Height of the diaphragm under the point ``u`` (the dome top is mid-hemithorax)."""
        sigma = -1.0 if side == "R" else 1.0
        mid = self.cx + sigma * (self.mw + self.tw) / 2
        half = (self.tw - self.mw) / 2 + 0.02
        t = np.clip((u - mid) / half, -1.0, 1.0)
        return self.base(side) - self.dome * (1.0 - t * t)

    def spine_u(self, v: float | np.ndarray) -> float | np.ndarray:
        """Horizontal position of the spine at height ``v`` (a C-curve where kyphosis is set)."""
        t = np.clip((v - self.apex + 0.05) / (self.base_r - self.apex + 0.2), 0.0, 1.0)
        return self.cx + self.kyphosis * np.sin(np.pi * t)

    def hilum(self, side: str) -> tuple[float, float]:
        return self.lung(side, 0.92, 0.40 if side == "R" else 0.37)

    def rib_v(self, side: str, u: float, k: int) -> float:
        """Height of the centre line of posterior rib ``k`` (0 = first below the apex) at ``u``."""
        x = abs(u - self.cx) / self.tw
        return self.apex - 0.045 + k * self.rib_spacing + 0.05 * x + 0.07 * x * x


def sample_anatomy(rng: np.random.Generator) -> Anatomy:
    """Per-patient geometry and densities (size, shape, position of the organs)."""
    tw = rng.uniform(0.37, 0.42)
    base = rng.uniform(0.69, 0.75)
    return Anatomy(
        cx=0.5 + rng.normal(0, 0.008),
        tw=tw,
        apex=rng.uniform(0.12, 0.16),
        base_r=base,
        base_l=base + rng.uniform(0.0, 0.03),
        dome=rng.uniform(0.05, 0.075),
        mw=rng.uniform(0.045, 0.065),
        heart_u=0.5 + rng.uniform(0.035, 0.055),
        heart_hw=tw * rng.uniform(0.40, 0.51),
        heart_hh=rng.uniform(0.105, 0.125),
        knob_r=rng.uniform(0.03, 0.038),
        air=rng.uniform(0.33, 0.40),
        tissue=rng.uniform(0.56, 0.64),
        bone=rng.uniform(0.04, 0.065),
        rib_spacing=rng.uniform(0.052, 0.06),
        markings=rng.uniform(0.07, 0.11),
        body_hw=tw + rng.uniform(0.05, 0.09),
        gastric_bubble=rng.uniform(0.0, 0.14),
    )


def vary_anatomy(anatomy: Anatomy, rng: np.random.Generator, view: str) -> Anatomy:
    """Per-film changes: depth of inspiration; AP films are magnified and taken at lower lung volume."""
    ap = view == "AP"
    lift = rng.uniform(-0.015, 0.015) + (0.02 if ap else 0.0)
    return dataclasses.replace(
        anatomy,
        base_r=anatomy.base_r - lift,
        base_l=anatomy.base_l - lift,
        heart_hw=anatomy.heart_hw * (1.06 if ap else 1.0),
        ap=ap,
    )


# --- the signs ---------------------------------------------------------------------------------------------


class Sign(NamedTuple):
    """The visual sign of one class.

    ``describe``: one line for the catalogue. ``draw(canvas, anatomy, strength, rng)`` adds the sign to a film
    (``rng`` is the study's generator for this class, so the sign sits at the same place on every film of a
    study). ``reshape(anatomy, strength) -> Anatomy``, where present, changes the anatomy instead of (or
    before) drawing.
    """

    describe: str
    draw: Callable[[Canvas, Anatomy, float, np.random.Generator], None] | None = None
    reshape: Callable[[Anatomy, float], Anatomy] | None = None


def _jitter(rng: np.random.Generator, point: tuple[float, float], scale: float = 0.012) -> tuple[float, float]:
    return point[0] + rng.normal(0, scale), point[1] + rng.normal(0, scale)


def _adenopathy(c: Canvas, a: Anatomy, s: float, rng: np.random.Generator) -> None:
    hu, hv = a.hilum("R")
    nodes = [(hu - 0.01, hv - 0.02), (hu - 0.02, hv + 0.03), (hu + 0.005, hv + 0.065)]
    nodes += [(a.cx - a.mw - 0.01, a.apex + 0.07), (a.cx - a.mw - 0.015, a.apex + 0.12)]
    for point in nodes:
        c.ellipse(*_jitter(rng, point, 0.006), ru=rng.uniform(0.03, 0.036), amp=0.3 * s, profile="dome")


def _atelectasis(c: Canvas, a: Anatomy, s: float, rng: np.random.Generator) -> None:
    for b in (0.80, 0.89):
        p0, p1 = a.lung("L", 0.3, b + rng.normal(0, 0.01)), a.lung("L", 0.8, b - 0.03 + rng.normal(0, 0.01))
        c.polyline([p0, p1], width=0.024, amp=0.22 * s, clip_to_lung=True)


def _azygos_lobe(c: Canvas, a: Anatomy, s: float, rng: np.random.Generator) -> None:
    m = a.cx - a.mw - 0.01 + rng.normal(0, 0.006)
    line = [
        (m - 0.085, a.apex - 0.01),
        (m - 0.065, a.apex + 0.07),
        (m - 0.03, a.apex + 0.14),
        (m - 0.012, a.apex + 0.17),
    ]
    c.polyline(line, width=0.03, amp=0.4 * s)
    c.ellipse(m - 0.012, a.apex + 0.18, ru=0.028, rv=0.036, amp=0.4 * s)


def _aortic_calcification(c: Canvas, a: Anatomy, s: float, rng: np.random.Generator) -> None:
    ku, kv = a.knob
    angles = np.radians(np.linspace(-150, 30, 9) + rng.normal(0, 8))
    arc = [(ku + a.knob_r * math.cos(t), kv + a.knob_r * math.sin(t) * c.width / c.height) for t in angles]
    c.polyline(arc, width=0.016, amp=0.55 * s)


def _clavicle_fracture(a: Anatomy, s: float) -> Anatomy:
    return dataclasses.replace(a, clavicle_break=0.4 + 0.6 * s)


def _cardiomegaly(a: Anatomy, s: float) -> Anatomy:
    return dataclasses.replace(a, heart_hw=a.heart_hw * (1.08 + 0.27 * s), heart_hh=a.heart_hh * (1.03 + 0.08 * s))


def _consolidation(c: Canvas, a: Anatomy, s: float, rng: np.random.Generator) -> None:
    u, v = _jitter(rng, a.lung("R", 0.62, 0.62))
    c.ellipse(u, v, ru=0.075, rv=0.06, amp=0.2 * s, softness=2.0, clip_to_lung=True)
    for dv in (-0.012, 0.015):
        c.polyline([(u + 0.05, v + dv * 0.3), (u, v + dv), (u - 0.04, v + 2 * dv)], width=0.01, amp=-0.12 * s)


def _edema(c: Canvas, a: Anatomy, s: float, rng: np.random.Generator) -> None:
    for side in ("R", "L"):
        c.ellipse(*a.lung(side, 0.72, 0.45), ru=0.10, rv=0.13, amp=0.11 * s, profile="gauss", clip_to_lung=True)


def _emphysema(a: Anatomy, s: float) -> Anatomy:
    drop = 0.035 * s
    return dataclasses.replace(
        a,
        base_r=a.base_r + drop,
        base_l=a.base_l + drop,
        dome=a.dome * (1 - 0.75 * s),
        air=a.air * (1 + 0.15 * s),
        markings=a.markings * (1 - 0.5 * s),
        heart_hw=a.heart_hw * (1 - 0.1 * s),
    )


def _enlarged_cardiomediastinum(a: Anatomy, s: float) -> Anatomy:
    return dataclasses.replace(a, mw=a.mw * (1.15 + 0.5 * s))


def _fibrosis(c: Canvas, a: Anatomy, s: float, rng: np.random.Generator) -> None:
    period = c.w(0.042)
    phase = rng.uniform(0, period, 2).astype(np.float32)
    for side in ("R", "L"):
        cu, cv = a.lung(side, 0.12, 0.78)
        px, py = c.p(cu, cv)
        sx, sy = c.w(0.09), c.w(0.12)

        def fn(X: np.ndarray, Y: np.ndarray) -> np.ndarray:
            net = np.maximum(np.cos(np.pi * (X + phase[0]) / period) ** 2, np.cos(np.pi * (Y + phase[1]) / period) ** 2)
            return np.clip((net - 0.6) / 0.4, 0.0, 1.0) * np.exp(-(((X - px) / sx) ** 2 + ((Y - py) / sy) ** 2))

        c.field((cu - 0.2, cu + 0.2, cv - 0.25, cv + 0.25), fn, amp=0.22 * s, clip_to_lung=True)


def _fissure(c: Canvas, a: Anatomy, s: float, rng: np.random.Generator) -> None:
    b = 0.44 + rng.normal(0, 0.015)
    line = [a.lung("R", 0.0, b), a.lung("R", 0.45, b - 0.01), a.lung("R", 0.95, b + 0.01)]
    c.polyline(line, width=0.02, amp=0.28 * s, clip_to_lung=True)


def _fracture(c: Canvas, a: Anatomy, s: float, rng: np.random.Generator) -> None:
    v = a.base_r + 0.07 + rng.normal(0, 0.008)
    u = float(a.spine_u(v))
    tilt = rng.choice([-1.0, 1.0]) * 0.012
    c.polygon(
        [(u - 0.06, v - 0.012 + tilt), (u + 0.06, v - 0.012 - tilt), (u + 0.055, v + 0.018), (u - 0.055, v + 0.018)],
        amp=0.3 * s,
    )


def _granuloma(c: Canvas, a: Anatomy, s: float, rng: np.random.Generator) -> None:
    u, v = _jitter(rng, a.lung("L", 0.72, 0.30))
    c.ellipse(u, v, ru=0.022, amp=0.55 * s)
    c.ellipse(u - 0.035, v + 0.04, ru=0.016, amp=0.45 * s)


def _hernia(c: Canvas, a: Anatomy, s: float, rng: np.random.Generator) -> None:
    u, v = a.cx + 0.005 + rng.normal(0, 0.006), a.base_r - a.dome - 0.045
    r = 0.065
    c.ellipse(u, v, ru=r, amp=0.12 * s, profile="dome")
    level = c.p(0, v + 0.004)[1]

    def gas(X: np.ndarray, Y: np.ndarray) -> np.ndarray:
        px, py = c.p(u, v)
        inside = _ramp((c.w(r * 0.85) - np.hypot(X - px, Y - py)) / c.edge)
        return inside * _ramp((level - Y) / c.edge)

    c.field((u - r, u + r, v - r * 2, v + r), gas, amp=-0.4 * s)


def _hydropneumothorax(c: Canvas, a: Anatomy, s: float, rng: np.random.Generator) -> None:
    b_level = 0.74 + rng.normal(0, 0.02)
    top, level = a.lung("L", 0.0, 0.42), a.lung("L", 0.0, b_level)
    inner = 0.38
    air = [top, a.lung("L", inner, 0.46), a.lung("L", inner, b_level), level]
    c.polygon(air, amp=1.0, layer="visibility", op="suppress")
    c.polygon(air, amp=-0.06 * s)
    c.polyline(air[1:3], width=0.01, amp=0.12 * s)
    fluid = [level, a.lung("L", inner + 0.1, b_level), a.lung("L", inner + 0.1, 1.02), a.lung("L", -0.05, 1.02)]
    c.polygon(fluid, amp=0.2 * s, clip_to_lung=True)


def _infarction(c: Canvas, a: Anatomy, s: float, rng: np.random.Generator) -> None:
    u, v = a.lung("R", 0.0, 0.70 + rng.normal(0, 0.02))
    c.ellipse(u + 0.01, v, ru=0.06, rv=0.045, amp=0.25 * s, clip_to_lung=True)


def _infiltration(c: Canvas, a: Anatomy, s: float, rng: np.random.Generator) -> None:
    for da, db in ((0.3, 0.62), (0.55, 0.6), (0.4, 0.7), (0.68, 0.7), (0.5, 0.78)):
        point = a.lung("L", da + rng.normal(0, 0.03), db + rng.normal(0, 0.012))
        c.ellipse(*point, ru=rng.uniform(0.026, 0.034), amp=0.25 * s, profile="gauss", clip_to_lung=True)


def _kyphosis(a: Anatomy, s: float) -> Anatomy:
    return dataclasses.replace(a, kyphosis=0.035 + 0.04 * s)


def _lobar_atelectasis(c: Canvas, a: Anatomy, s: float, rng: np.random.Generator) -> None:
    hu, hv = a.hilum("L")
    base = a.base_l - 0.01
    lateral = a.cx + a.mw + 0.12 + rng.normal(0, 0.01)
    c.polygon([(a.cx + 0.03, hv + 0.04), (a.cx + 0.03, base), (lateral, base)], amp=0.26 * s)


def _lung_lesion(c: Canvas, a: Anatomy, s: float, rng: np.random.Generator) -> None:
    u, v = _jitter(rng, a.lung("R", 0.5, 0.22))
    c.ellipse(u, v, ru=0.026, amp=0.24 * s, profile="dome")
    for t in rng.uniform(0, 2 * math.pi, 7):
        end = (u + 0.055 * math.cos(t), v + 0.055 * math.sin(t) * c.width / c.height)
        c.polyline([(u, v), end], width=0.009, amp=0.16 * s)


def _lung_opacity(c: Canvas, a: Anatomy, s: float, rng: np.random.Generator) -> None:
    u, v = _jitter(rng, a.lung("R", 0.25, 0.58))
    c.ellipse(u, v, ru=0.075, rv=0.09, amp=0.1 * s, profile="gauss", clip_to_lung=True)


def _mass(c: Canvas, a: Anatomy, s: float, rng: np.random.Generator) -> None:
    u, v = _jitter(rng, a.lung("L", 0.5, 0.50))
    c.ellipse(u, v, ru=0.065 + 0.015 * s, amp=0.22 * s, profile="dome", softness=1.5)


def _nodule(c: Canvas, a: Anatomy, s: float, rng: np.random.Generator) -> None:
    c.ellipse(*_jitter(rng, a.lung("L", 0.28, 0.26)), ru=0.034, amp=0.3 * s, profile="dome")


def _pleural_effusion(c: Canvas, a: Anatomy, s: float, rng: np.random.Generator) -> None:
    sides = ["R"] + (["L"] if rng.random() < 0.4 else [])
    for side in sides:
        depth = 0.05 + 0.08 * s
        lat_u, base = a.lung(side, -0.05, 1.0)
        sigma = -1.0 if side == "R" else 1.0
        px, py = c.p(lat_u, base)
        width, height = c.w(0.22), depth * c.height

        def fn(X: np.ndarray, Y: np.ndarray) -> np.ndarray:
            t = np.clip(sigma * (px - X) / width, 0.0, 1.0)  # 0 at the chest wall, 1 towards the midline
            meniscus = py - height * (1.0 - t) ** 1.5  # fluid climbs the lateral chest wall
            return _ramp((Y - meniscus) / (2 * c.edge))

        c.field(
            (min(lat_u, lat_u - sigma * 0.25), max(lat_u, lat_u - sigma * 0.25), base - depth - 0.02, base + 0.02),
            fn,
            amp=0.36 * s,
            clip_to_lung=True,
        )


def _pleural_other(c: Canvas, a: Anatomy, s: float, rng: np.random.Generator) -> None:
    us = np.linspace(*sorted((a.lung("R", 0.35, 1)[0], a.lung("R", 0.8, 1)[0])), 6) + rng.normal(0, 0.01)
    plaque = [(u, float(a.dome_v("R", u)) - 0.006) for u in us]
    c.polyline(plaque, width=0.028, amp=0.45 * s)
    c.ellipse(*a.lung("R", 0.05, 0.5), ru=0.02, rv=0.06, amp=0.4 * s)


def _pleural_thickening(c: Canvas, a: Anatomy, s: float, rng: np.random.Generator) -> None:
    wall = [a.lung("L", 0.0, b) for b in (0.02, 0.12, 0.25, 0.38)]
    cap = [a.lung("L", t, 0.0) for t in (0.8, 0.45, 0.15)]
    c.polyline(cap + wall, width=0.03 + 0.01 * s, amp=0.3 * s, clip_to_lung=True)


def _pneumomediastinum(c: Canvas, a: Anatomy, s: float, rng: np.random.Generator) -> None:
    for sigma in (-1.0, 1.0):
        u = a.cx + sigma * (0.065 + rng.normal(0, 0.004))
        c.polyline(
            [(u, 0.0), (u + sigma * 0.01, a.apex - 0.03), (u - sigma * 0.01, a.apex + 0.06)], width=0.024, amp=-0.32 * s
        )
    hu = a.heart_u + a.heart_hw - 0.025
    c.polyline(
        [(hu - 0.06, a.heart_v - a.heart_hh * 0.9), (hu, a.heart_v - 0.02), (hu + 0.005, a.heart_v + 0.05)],
        width=0.02,
        amp=-0.26 * s,
    )


def _pneumonia(c: Canvas, a: Anatomy, s: float, rng: np.random.Generator) -> None:
    for _ in range(4):
        point = a.lung("R", rng.uniform(0.3, 0.65), rng.uniform(0.74, 0.84))
        c.ellipse(*point, ru=rng.uniform(0.035, 0.05), amp=0.17 * s, profile="gauss", clip_to_lung=True)


def _pneumoperitoneum(c: Canvas, a: Anatomy, s: float, rng: np.random.Generator) -> None:
    thick = 0.022 + 0.012 * s
    for side in ("R", "L"):
        if side == "L" and rng.random() < 0.5:
            continue
        us = np.linspace(*sorted((a.lung(side, 0.0, 1)[0], a.lung(side, 0.85, 1)[0])), 8)
        crescent = [(u, float(a.dome_v(side, u)) + thick * 0.8 * (1 - abs(2 * i / 7 - 1))) for i, u in enumerate(us)]
        c.polyline(crescent, width=thick, amp=-0.4 * s)


def _pneumothorax(c: Canvas, a: Anatomy, s: float, rng: np.random.Generator) -> None:
    depth = 0.2 + 0.2 * s
    bs = np.linspace(0.0, 0.55 + 0.15 * s, 7)
    wall = [a.lung("R", -0.05, b) for b in bs]
    pleura = [a.lung("R", depth * math.sin(math.pi / 2 * (1 - b / bs[-1])) ** 0.5 + 0.02, b) for b in bs]
    cap = [a.lung("R", t, -0.04) for t in (0.9, 0.5)]
    region = cap + wall + pleura[::-1]
    c.polygon(region, amp=1.0, layer="visibility", op="suppress")
    c.polygon(region, amp=-0.08 * s, clip_to_lung=True)
    c.polyline(pleura, width=0.008, amp=0.14 * s, clip_to_lung=True)


def _pulmonary_embolism(c: Canvas, a: Anatomy, s: float, rng: np.random.Generator) -> None:
    u, v = _jitter(rng, a.lung("L", 0.55, 0.20))
    c.ellipse(u, v, ru=0.07, rv=0.06, amp=1.0, softness=3, layer="visibility", op="suppress")
    c.ellipse(u, v, ru=0.07, rv=0.06, amp=-0.09 * s, softness=3, clip_to_lung=True)
    c.ellipse(*a.hilum("L"), ru=0.03, amp=0.1 * s, profile="dome")


def _pulmonary_hypertension(c: Canvas, a: Anatomy, s: float, rng: np.random.Generator) -> None:
    c.ellipse(a.cx + a.mw + 0.015, a.hilum("L")[1] - 0.03, ru=0.045 + 0.01 * s, rv=0.035, amp=0.3 * s, profile="dome")
    top, bottom = a.lung("R", 0.9, 0.45), a.lung("R", 0.85, 0.66)
    c.polyline([top, bottom], width=0.03 + 0.01 * s, amp=0.2 * s, profile="gauss")


def _rib_fracture(c: Canvas, a: Anatomy, s: float, rng: np.random.Generator) -> None:
    k = int(rng.integers(5, 7))
    u = a.lung("L", 0.07 + rng.uniform(0, 0.05), 0.5)[0]
    v = a.rib_v("L", u, k)
    c.ellipse(u, v, ru=0.03, rv=0.024, amp=0.30 * s, profile="dome")
    c.polyline([(u - 0.006, v - 0.03), (u + 0.006, v + 0.03)], width=0.008, amp=-0.18 * s)


def _rounded_atelectasis(c: Canvas, a: Anatomy, s: float, rng: np.random.Generator) -> None:
    u, v = _jitter(rng, a.lung("R", 0.85, 0.86), 0.008)
    c.ellipse(u, v, ru=0.036, amp=0.34 * s, profile="dome", clip_to_lung=True)
    hu, hv = a.hilum("R")
    tail = [(u, v), (u + 0.01, (v + hv) / 2 + 0.03), (hu, hv + 0.06)]
    c.polyline(tail, width=0.012, amp=0.16 * s, clip_to_lung=True)


def _subcutaneous_emphysema(c: Canvas, a: Anatomy, s: float, rng: np.random.Generator) -> None:
    for sigma in (-1.0, 1.0):
        outer = a.cx + sigma * (a.tw + 0.035)
        for k in range(4):
            u, v = outer + sigma * rng.uniform(-0.005, 0.015), a.apex + 0.12 + 0.1 * k + rng.normal(0, 0.01)
            c.polyline([(u, v), (u + sigma * 0.02, v + 0.07)], width=0.018, amp=-0.35 * s)


def _support_devices(c: Canvas, a: Anatomy, s: float, rng: np.random.Generator) -> None:
    kinds = rng.random(5) < np.array([0.55, 0.45, 0.45, 0.2, 0.3])
    if not kinds.any():
        kinds[rng.integers(5)] = True
    amp = 0.25 + 0.35 * s
    carina = a.apex + 0.17
    if kinds[0]:  # endotracheal tube
        c.polyline([(a.cx + 0.002, 0.0), (a.cx, carina - 0.05)], width=0.02, amp=amp)
    if kinds[1]:  # nasogastric tube to the stomach
        path = [
            (a.cx + 0.01, 0.0),
            (a.cx + 0.015, a.heart_v),
            (a.cx + 0.06, a.base_l + 0.06),
            (a.cx + 0.16, a.base_l + 0.04),
        ]
        c.polyline(path, width=0.016, amp=amp)
    if kinds[2]:  # right internal jugular central line
        c.polyline(
            [(a.cx - 0.1, 0.02), (a.cx - 0.07, a.apex + 0.05), (a.cx - 0.03, a.apex + 0.16)], width=0.014, amp=amp
        )
    if kinds[3]:  # pacemaker generator over the left upper chest, lead into the heart
        gu, gv = a.cx + 0.27, a.apex + 0.03
        c.polygon(
            [(gu - 0.05, gv - 0.025), (gu + 0.05, gv - 0.025), (gu + 0.05, gv + 0.025), (gu - 0.05, gv + 0.025)],
            amp=amp * 1.2,
        )
        c.polyline([(gu - 0.04, gv), (a.cx + 0.02, a.apex + 0.2), (a.heart_u - 0.02, a.heart_v)], width=0.012, amp=amp)
    if kinds[4]:  # ECG electrodes
        for u, v in ((a.cx - 0.28, a.apex + 0.02), (a.cx + 0.28, a.apex + 0.02), (a.cx + 0.22, a.base_l - 0.05)):
            c.ellipse(u, v, ru=0.022, amp=amp * 0.8)


def _tortuous_aorta(a: Anatomy, s: float) -> Anatomy:
    return dataclasses.replace(a, tortuous=0.2 + 0.8 * s, knob_r=a.knob_r * (1.05 + 0.25 * s))


def _tuberculosis(c: Canvas, a: Anatomy, s: float, rng: np.random.Generator) -> None:
    u, v = _jitter(rng, a.lung("R", 0.45, 0.07), 0.008)
    c.ellipse(u, v, ru=0.038, amp=0.24 * s, clip_to_lung=True)
    c.ellipse(u, v, ru=0.02, amp=-0.18 * s)
    hu, hv = a.hilum("R")
    for du in (-0.02, 0.02):
        c.polyline([(u + du, v + 0.03), (hu + du * 2, hv - 0.04)], width=0.01, amp=0.14 * s, clip_to_lung=True)


SIGNS: dict[str, Sign] = {
    "Adenopathy": Sign("lobulated round nodes at the right hilum and right paratracheal stripe", _adenopathy),
    "Atelectasis": Sign("two plate-like horizontal bands in the left lower zone", _atelectasis),
    "Azygos Lobe": Sign("thin curved fissure line in the right upper zone ending in a teardrop", _azygos_lobe),
    "Calcification of the Aorta": Sign("very bright thin arc on the rim of the aortic knob", _aortic_calcification),
    "Cardiomegaly": Sign("heart silhouette 8-35% wider (cardiothoracic ratio > 0.5)", reshape=_cardiomegaly),
    "Clavicle Fracture": Sign("gap and downward step in the mid right clavicle", reshape=_clavicle_fracture),
    "Consolidation": Sign("dense homogeneous right lower-zone opacity with dark air bronchograms", _consolidation),
    "Edema": Sign("symmetric perihilar 'bat-wing' haze in both lungs", _edema),
    "Emphysema": Sign("hyperlucent lungs, low flat diaphragm, sparse markings, narrow heart", reshape=_emphysema),
    "Enlarged Cardiomediastinum": Sign("superior mediastinum 15-65% wider", reshape=_enlarged_cardiomediastinum),
    "Fibrosis": Sign("reticular net texture at both lateral lung bases", _fibrosis),
    "Fissure": Sign("thickened horizontal fissure line across the right mid lung", _fissure),
    "Fracture": Sign("bright wedge of a compressed vertebral body at the thoracolumbar spine", _fracture),
    "Granuloma": Sign("two tiny very bright calcified dots in the left upper zone", _granuloma),
    "Hernia": Sign("retrocardiac round mass with a dark gas cap and flat air-fluid level", _hernia),
    "Hydropneumothorax": Sign(
        "left lateral lucent pleural space without markings over a flat bright fluid level", _hydropneumothorax
    ),
    "Infarction": Sign("pleural-based hump (Hampton) at the right lateral lower zone", _infarction),
    "Infiltration": Sign("several small fluffy opacities in the left lower-mid zone", _infiltration),
    "Kyphosis": Sign("C-curved spine (lateral films: the whole spine bends)", reshape=_kyphosis),
    "Lobar Atelectasis": Sign(
        "dense retrocardiac triangle (left lower lobe collapse, 'sail sign')", _lobar_atelectasis
    ),
    "Lung Lesion": Sign("spiculated nodule with radiating strands in the right upper zone", _lung_lesion),
    "Lung Opacity": Sign("ill-defined soft haze in the right mid-lower zone laterally", _lung_opacity),
    "Mass": Sign("large round dense opacity (diameter ~0.14-0.16 film width) in the left mid zone", _mass),
    "Nodule": Sign("small round soft opacity (diameter ~0.06 film width) in the left upper zone", _nodule),
    "Normal": Sign("no sign: Normal studies carry no finding except support devices and anatomical variants"),
    "Pleural Effusion": Sign("opaque right (and sometimes left) costophrenic base with a meniscus", _pleural_effusion),
    "Pleural Other": Sign("bright calcified plaque on the right dome and the right lateral wall", _pleural_other),
    "Pleural Thickening": Sign("smooth band along the left apex and upper lateral chest wall", _pleural_thickening),
    "Pneumomediastinum": Sign("dark air streaks in the neck and along the left heart border", _pneumomediastinum),
    "Pneumonia": Sign("patchy confluent opacities in the right lower zone", _pneumonia),
    "Pneumoperitoneum": Sign("dark crescent of free air under the right (and sometimes left) dome", _pneumoperitoneum),
    "Pneumothorax": Sign("dark right apical-lateral rim without lung markings, thin pleural line", _pneumothorax),
    "Pulmonary Embolism": Sign(
        "oligemic (dark, markings absent) left upper zone and a plump left hilum", _pulmonary_embolism
    ),
    "Pulmonary Hypertension": Sign(
        "bulging main pulmonary artery and a wide right descending artery", _pulmonary_hypertension
    ),
    "Rib Fracture": Sign("bright callus with a fracture line on a left lateral rib", _rib_fracture),
    "Round(ed) Atelectasis": Sign("round right basal opacity with a comet tail to the hilum", _rounded_atelectasis),
    "Subcutaneous Emphysema": Sign(
        "dark streaks in the soft tissue of both lateral chest walls", _subcutaneous_emphysema
    ),
    "Support Devices": Sign("bright tubes, lines, pacemaker and ECG electrodes (a random subset)", _support_devices),
    "Tortuous Aorta": Sign(
        "large laterally displaced aortic knob and a wavy descending aorta", reshape=_tortuous_aorta
    ),
    "Tuberculosis": Sign("right apical cavity (bright ring, dark centre) with strands to the hilum", _tuberculosis),
}
"""Sign of every CXR-LT 2024 class (keys in CSV order)."""

SIGN_CATALOGUE: dict[str, str] = {name: sign.describe for name, sign in SIGNS.items()}
"""One line per class describing its sign."""


# --- signs of classes outside CXR-LT 2024 -------------------------------------------------------------------

_SHAPES = ("blob", "ring", "band", "dots", "haze", "streak")


@dataclasses.dataclass(frozen=True)
class GeneratedSign:
    """A sign made up for a class that has none of its own: a shape at a place in one lung, all drawn from the name.

    ``shape`` is one of ``blob`` (dense round opacity), ``ring`` (bright rim, dark centre), ``band`` (horizontal
    plate), ``dots`` (a cluster of small bright dots), ``haze`` (large faint opacity), ``streak`` (oblique line);
    ``side``, ``a``, ``b`` place it (:meth:`Anatomy.lung`), ``size`` is its radius in units of the film width.
    """

    shape: str
    side: str
    a: float
    b: float
    size: float

    @classmethod
    def from_name(cls, name: str) -> GeneratedSign:
        """The sign of ``name``: the same on every run and machine (SHA-256 of the name seeds the draw)."""
        rng = np.random.default_rng(int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "little"))
        return cls(_SHAPES[int(rng.integers(len(_SHAPES)))], "RL"[int(rng.integers(2))], float(rng.uniform(0.2, 0.8)),
                   float(rng.uniform(0.15, 0.85)), float(rng.uniform(0.028, 0.05)))

    @property
    def describe(self) -> str:
        side = "right" if self.side == "R" else "left"
        return (f"generated: {self.shape} in the {side} lung at (a={self.a:.2f}, b={self.b:.2f}), "
                f"size {self.size:.3f}")

    def __call__(self, c: Canvas, a: Anatomy, s: float, rng: np.random.Generator) -> None:
        u, v = _jitter(rng, a.lung(self.side, self.a, self.b), 0.006)
        r = self.size
        if self.shape == "blob":
            c.ellipse(u, v, ru=r, amp=0.26 * s, profile="dome", clip_to_lung=True)
        elif self.shape == "ring":
            c.ellipse(u, v, ru=r, amp=0.26 * s, clip_to_lung=True)
            c.ellipse(u, v, ru=0.55 * r, amp=-0.2 * s)
        elif self.shape == "band":
            left, right = a.lung(self.side, max(self.a - 0.3, 0.0), self.b), a.lung(self.side, min(self.a + 0.3, 1.0),
                                                                                     self.b + 0.02)
            c.polyline([left, right], width=0.6 * r, amp=0.22 * s, clip_to_lung=True)
        elif self.shape == "dots":
            for du, dv in ((0.0, 0.0), (1.6, 0.4), (-0.8, 1.3), (0.7, -1.4)):
                c.ellipse(u + du * r, v + dv * r, ru=0.3 * r, amp=0.4 * s, profile="dome")
        elif self.shape == "haze":
            c.ellipse(u, v, ru=2.0 * r, rv=2.4 * r, amp=0.12 * s, profile="gauss", clip_to_lung=True)
        else:
            c.polyline([(u - r, v - 2 * r), (u + r, v + 2 * r)], width=0.35 * r, amp=0.3 * s, clip_to_lung=True)


def sign_for(name: str) -> Sign:
    """The sign of any class name: a CXR-LT 2024 class's own; the sign of the CXR-LT class of the same finding
    (:mod:`~monai_cxrcml.data.vocabulary`: NIH ``Effusion`` looks like ``Pleural Effusion``, every normality class
    like ``Normal``, i.e. no sign); else :class:`GeneratedSign` of the name."""
    if name in SIGNS:
        return SIGNS[name]
    concept = concept_of(name)
    if concept in SIGNS:
        return SIGNS[concept]
    generated = GeneratedSign.from_name(name)
    return Sign(generated.describe, generated)


# --- anatomy -----------------------------------------------------------------------------------------------


def _lung_mask(c: Canvas, a: Anatomy, side: str) -> None:
    sigma = -1.0 if side == "R" else 1.0
    medial = a.cx + sigma * (a.mw - 0.01)
    m_px, cx_px, tw_px = c.p(medial, 0)[0], c.p(a.cx, 0)[0], c.w(a.tw)
    apex_px, base_px = c.p(0, a.apex)[1], c.p(0, a.base(side))[1]
    top_px = c.p(medial + sigma * 0.45 * (a.tw - a.mw), 0)[0]
    top_half = c.w(a.tw - a.mw)

    def fn(X: np.ndarray, Y: np.ndarray) -> np.ndarray:
        b = np.clip((Y - apex_px) / (base_px - apex_px), 0.0, 1.0)
        lateral = cx_px + sigma * tw_px * (0.78 + 0.22 * np.sin(np.minimum(1.0, b / 0.6) * np.pi / 2))
        top = apex_px + 0.16 * c.height * ((X - top_px) / top_half) ** 2
        dome = c.p(0, a.dome_v(side, X / c.width))[1]
        mask = _ramp(sigma * (lateral - X) / c.edge) * _ramp(sigma * (X - m_px) / c.edge)
        return mask * _ramp((Y - top) / (2 * c.edge)) * _ramp((dome - Y) / c.edge)

    u_lat = a.cx + sigma * (a.tw + 0.02)
    c.field((min(u_lat, medial), max(u_lat, medial), a.apex - 0.01, a.base(side) + 0.01), fn, layer="lung", op="max")


def _markings(c: Canvas, a: Anatomy, rng: np.random.Generator) -> None:
    """Vessel markings fanning out from each hilum (tapering, slightly curved)."""
    for side in ("R", "L"):
        hu, hv = a.hilum(side)
        sigma = -1.0 if side == "R" else 1.0
        c.ellipse(hu, hv, ru=0.04, rv=0.05, amp=0.8 * a.markings, profile="gauss", layer="markings")
        for angle in np.linspace(-70, 75, 6) + rng.normal(0, 8, 6):
            theta, bend = math.radians(angle), rng.normal(0, 0.25)
            length = rng.uniform(0.17, 0.27)
            mid = (hu + sigma * 0.45 * length * math.cos(theta), hv + 0.5 * length * math.sin(theta) * 1.1)
            end = (hu + sigma * length * math.cos(theta + bend), hv + length * math.sin(theta + bend) * 1.1)
            c.polyline([(hu, hv), mid, end], width=0.013, amp=a.markings, profile="gauss", layer="markings")


def _ribs(c: Canvas, a: Anatomy) -> None:
    cx_px, tw_px = c.p(a.cx, 0)[0], c.w(a.tw)
    v0_px, sp_px = c.p(0, a.apex - 0.045)[1], a.rib_spacing * c.height
    bottom_px = c.p(0, max(a.base_r, a.base_l) + 0.02)[1]

    def fn(X: np.ndarray, Y: np.ndarray) -> np.ndarray:
        x = np.abs(X - cx_px) / tw_px
        phase = (Y - v0_px - (0.05 * x + 0.07 * x * x) * c.height) / sp_px
        posterior = np.clip((np.cos(2 * np.pi * phase) - 0.35) / 0.65, 0.0, 1.0)
        anterior = np.clip((np.cos(2 * np.pi * (phase + 0.35 - 0.9 * (1 - x) * 0.6)) - 0.6) / 0.4, 0.0, 1.0)
        fade = np.clip((x - 0.12) / 0.12, 0.0, 1.0) * np.clip((1.08 - x) / 0.06, 0.0, 1.0)
        return (posterior + 0.4 * anterior) * fade * _ramp((bottom_px - Y) / (4 * c.edge)) * (phase > -0.3)

    c.field((a.cx - a.tw - 0.05, a.cx + a.tw + 0.05, a.apex - 0.08, max(a.base_r, a.base_l) + 0.03), fn, amp=a.bone)


def _clavicles(c: Canvas, a: Anatomy) -> None:
    for sigma in (-1.0, 1.0):
        points = [
            (a.cx + sigma * 0.035, a.apex + 0.06),
            (a.cx + sigma * 0.14, a.apex + 0.035),
            (a.cx + sigma * 0.3, a.apex - 0.015),
        ]
        if sigma < 0 and a.clavicle_break > 0:
            gap_u = a.cx - 0.15
            drop = 0.02 + 0.025 * a.clavicle_break
            c.polyline([points[0], (gap_u + 0.012, a.apex + 0.035)], width=0.036, amp=a.bone * 1.4)
            c.polyline(
                [(gap_u - 0.012, a.apex + 0.035 + drop), (points[2][0], points[2][1] + drop * 0.5)],
                width=0.036,
                amp=a.bone * 1.4,
            )
        else:
            c.polyline(points, width=0.036, amp=a.bone * 1.4)


def _frontal_anatomy(c: Canvas, a: Anatomy, rng: np.random.Generator) -> None:
    top_hw = a.body_hw + 0.04

    def body(X: np.ndarray, Y: np.ndarray) -> np.ndarray:
        v = Y / c.height
        neck = c.w(0.09)
        shoulder = np.clip((v - 0.0) / (a.apex + 0.02), 0.0, 1.0)
        hw = neck + (c.w(top_hw) - neck) * np.sqrt(shoulder)
        hw = np.where(v > a.apex + 0.1, c.w(a.body_hw) + c.w(0.03) * np.clip((v - a.base_r) / 0.3, 0, 1), hw)
        return _ramp((hw - np.abs(X - c.p(a.cx, 0)[0])) / (3 * c.edge))

    c.field((0, 1, 0, 1), body, amp=a.tissue)
    for sigma in (-1.0, 1.0):  # humeral heads in the upper corners
        c.ellipse(a.cx + sigma * (a.tw + 0.07), a.apex - 0.02, ru=0.06, rv=0.05, amp=a.bone * 1.5, profile="dome")
        if a.ap:  # scapulae project over the upper lateral lungs on AP films
            c.ellipse(
                a.cx + sigma * (a.tw - 0.02),
                a.apex + 0.16,
                ru=0.09,
                rv=0.15,
                amp=0.06,
                profile="dome",
                angle=sigma * 12,
            )
    _lung_mask(c, a, "R")
    _lung_mask(c, a, "L")
    # mediastinum, aortic knob, heart
    top, heart_top = c.p(0, 0.0)[1], c.p(0, a.heart_v)[1]
    cx_px, mw_px = c.p(a.cx, 0)[0], c.w(a.mw)

    def mediastinum(X: np.ndarray, Y: np.ndarray) -> np.ndarray:
        return (
            _ramp((mw_px - np.abs(X - cx_px)) / (2 * c.edge)) * _ramp((heart_top - Y) / (4 * c.edge) + 2) * (Y >= top)
        )

    c.field((a.cx - a.mw - 0.02, a.cx + a.mw + 0.02, 0, a.heart_v), mediastinum, layer="solid", op="max")
    c.ellipse(*a.knob, ru=a.knob_r, layer="solid", op="max")
    c.ellipse(
        a.heart_u, a.heart_v, ru=a.heart_hw, rv=a.heart_hh * c.height / c.width, angle=-12, layer="solid", op="max"
    )
    ku, kv = a.knob  # descending aorta, wavy where tortuous
    wave = [(ku - 0.01 + 0.03 * a.tortuous * math.sin(2.2 * t), kv + t * 0.12) for t in np.linspace(0, 3, 7)]
    c.polyline(wave, width=0.04, amp=1.0, layer="solid", op="max")
    lung, solid = c.layers["lung"], c.layers["solid"]
    c.layers["image"] -= a.air * lung * (1.0 - 0.85 * solid)
    c.layers["image"] += 0.05 * solid
    c.ellipse(
        a.heart_u,
        a.heart_v,
        ru=a.heart_hw * 0.8,
        rv=a.heart_hh * 0.8 * c.height / c.width,
        angle=-12,
        amp=0.05,
        profile="dome",
    )
    # abdomen below the domes: liver on the right, gastric bubble under the left dome
    for side, sigma in (("R", -1.0), ("L", 1.0)):
        lateral = a.cx + sigma * (a.tw + 0.02)
        lat_px, med_px = c.p(lateral, 0)[0], c.p(a.cx, 0)[0]

        def abdomen(X: np.ndarray, Y: np.ndarray, side: str = side) -> np.ndarray:
            dome = c.p(0, a.dome_v(side, X / c.width))[1]
            return _ramp((Y - dome) / c.edge - 1) * ((X - lat_px) * (X - med_px) <= 0)

        c.field((min(lateral, a.cx), max(lateral, a.cx), a.base(side) - a.dome - 0.01, 1.0), abdomen, amp=0.06)
    gu = a.cx + 0.2
    c.ellipse(gu, float(a.dome_v("L", gu)) + 0.05, ru=0.05, rv=0.03, amp=-a.gastric_bubble, profile="dome")
    # trachea (air column), spine, ribs, clavicles
    c.polyline([(a.cx, 0.0), (a.cx, a.apex + 0.15)], width=0.028, amp=-0.1)
    vs = np.linspace(0.0, 1.0, 12)
    c.polyline([(float(a.spine_u(v)), v) for v in vs], width=0.065, amp=0.07)
    sp = c.height * 0.036

    def vertebrae(X: np.ndarray, Y: np.ndarray) -> np.ndarray:
        spine = c.p(a.spine_u(Y / c.height), 0)[0]
        return _ramp((c.w(0.03) - np.abs(X - spine)) / c.edge) * (np.cos(2 * np.pi * Y / sp) > 0.6)

    c.field((a.cx - 0.12, a.cx + 0.12, 0, 1), vertebrae, amp=0.03)
    _ribs(c, a)
    _clavicles(c, a)
    _markings(c, a, rng)


def _lateral_anatomy(c: Canvas, a: Anatomy, rng: np.random.Generator) -> None:
    """A lateral chest: patient facing left, spine on the right, heart anterior-inferior, two domes."""
    depth = 0.30 + (a.tw - 0.4)
    c.ellipse(0.5, 0.5, ru=0.42, rv=0.62, amp=a.tissue, softness=3)
    c.ellipse(0.5, a.apex - 0.05, ru=0.36, rv=0.16, amp=0.08, profile="dome")  # raised arms
    base = max(a.base_r, a.base_l)

    def lungs(X: np.ndarray, Y: np.ndarray) -> np.ndarray:
        u, v = X / c.width, Y / c.height
        inside = ((u - 0.5) / depth) ** 2 + ((v - (a.apex + base) / 2) / ((base - a.apex) / 2 + 0.04)) ** 2 < 1
        dome = base - a.dome * 1.5 * (1 - ((u - 0.5) / 0.35) ** 2)
        return inside * _ramp((dome * c.height - Y) / c.edge)

    c.field((0.5 - depth, 0.5 + depth, a.apex - 0.05, base + 0.05), lungs, layer="lung", op="max")
    c.ellipse(
        0.38, a.heart_v + 0.02, ru=a.heart_hw * 0.8, rv=a.heart_hh * 1.1 * c.height / c.width, layer="solid", op="max"
    )
    c.layers["image"] -= a.air * 0.85 * c.layers["lung"] * (1.0 - 0.8 * c.layers["solid"])
    c.polyline([(0.45, 0.0), (0.47, a.apex + 0.05), (0.5, a.apex + 0.2)], width=0.03, amp=-0.1)  # trachea
    c.polyline([(0.2, a.apex + 0.02), (0.19, a.apex + 0.35)], width=0.02, amp=0.1)  # sternum
    bend = 0.02 + 2.0 * abs(a.kyphosis)
    vs = np.linspace(0.0, 1.0, 10)
    spine = [(0.8 - 0.06 * v + bend * math.sin(math.pi * v), v) for v in vs]
    c.polyline(spine, width=0.08, amp=0.12)
    c.polyline(spine, width=0.01, amp=-0.06, profile="gauss")
    for dv in (0.0, 0.025):  # the two domes
        us = np.linspace(0.25, 0.8, 7)
        c.polyline([(u, base + dv - a.dome * 1.5 * (1 - ((u - 0.5) / 0.35) ** 2)) for u in us], width=0.012, amp=0.05)


def _place(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Rotate (a few degrees), scale and shift the drawn patient inside the film (bilinear, zero fill)."""
    height, width = image.shape
    theta = math.radians(rng.normal(0, 1.5))
    scale = rng.uniform(0.95, 1.04)
    shift = rng.normal(0, 0.016) * width, rng.normal(0, 0.016) * height
    cos, sin = math.cos(theta) / scale, math.sin(theta) / scale
    cx, cy = width / 2 + shift[0], height / 2 + shift[1]
    # PIL maps each output pixel (x, y) to the input pixel (a x + b y + c, d x + e y + f)
    coeffs = (cos, sin, width / 2 - cos * cx - sin * cy, -sin, cos, height / 2 + sin * cx - cos * cy)
    placed = Image.fromarray(image).transform(
        (width, height), Image.Transform.AFFINE, coeffs, resample=Image.Resampling.BILINEAR
    )
    return np.asarray(placed, dtype=np.float32)


def _exposure(image: np.ndarray, rng: np.random.Generator, view: str) -> np.ndarray:
    """Film response: low-frequency mottle, gain/offset/gamma, quantum noise -> uint8 [H, W]."""
    height, width = image.shape
    coarse = rng.normal(0, 1, (6, 5)).astype(np.float32)
    image = image + 0.025 * np.asarray(Image.fromarray(coarse).resize((width, height), Image.Resampling.BICUBIC))
    gain = rng.uniform(0.85, 1.15) * (0.9 if view == "AP" else 1.0)
    image = np.clip(gain * image + rng.uniform(-0.05, 0.05), 0.0, 1.0) ** rng.uniform(0.85, 1.2)
    image += np.float32(rng.uniform(0.01, 0.03)) * rng.standard_normal(image.shape, dtype=np.float32)
    return np.clip(image * 255.0 + 0.5, 0, 255).astype(np.uint8)


def render_film(
    height: int,
    width: int,
    view: str,
    anatomy: Anatomy,
    strengths: dict[str, float],
    sign_rngs: dict[str, np.random.Generator],
    rng: np.random.Generator,
) -> np.ndarray:
    """Draw one film.

    Parameters
    ----------
    height, width
        Film size in pixels (portrait: height > width).
    view
        ``"PA"``/``"AP"`` draw a frontal film, anything else a lateral one.
    anatomy
        The patient's anatomy after :func:`vary_anatomy`.
    strengths
        Class name -> sign strength in (0, 1] for the study's positive classes (any name: :func:`sign_for`).
    sign_rngs
        Class name -> generator placing that class's sign (the same seed on every film of a study).
    rng
        This film's generator (position, exposure, noise).

    Returns
    -------
    np.ndarray
        uint8 [height, width], rows top -> bottom.
    """
    frontal = view in FRONTAL_VIEWS
    scale_signs = 1.0 if frontal else _LATERAL_SIGN_SCALE
    signs = {name: sign_for(name) for name in strengths}
    for name, strength in strengths.items():
        if signs[name].reshape is not None:
            anatomy = signs[name].reshape(anatomy, strength)
    canvas = Canvas(height, width)
    (_frontal_anatomy if frontal else _lateral_anatomy)(canvas, anatomy, rng)
    signs_canvas = canvas if frontal else canvas.with_u_map((0.22, 0.56))
    for name, strength in strengths.items():
        if signs[name].draw is not None:
            signs[name].draw(signs_canvas, anatomy, strength * scale_signs, sign_rngs[name])
    canvas.ellipse(rng.choice([0.06, 0.9]), 0.05, ru=0.025, rv=0.02, amp=0.45)  # lead side marker
    layers = canvas.layers
    image = layers["image"] + layers["markings"] * layers["visibility"] * layers["lung"]
    return _exposure(_place(image, rng), rng, view)
