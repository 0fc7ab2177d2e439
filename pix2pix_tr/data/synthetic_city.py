"""A procedural street-scene city written in the exact Cityscapes layout.

Real Cityscapes cannot be downloaded on every machine, and a new user first wants to see the whole pipeline run:
prepare -> train -> test -> FCN-score. :func:`make_synthetic_cityscapes` writes::

    out/leftImg8bit/{split}/{city}/{city}_{seq:06d}_{frame:06d}_leftImg8bit.png   photo, RGB
    out/gtFine/{split}/{city}/{city}_{seq:06d}_{frame:06d}_gtFine_labelIds.png    uint8 Cityscapes label ids
    out/gtFine/{split}/{city}/{city}_{seq:06d}_{frame:06d}_gtFine_color.png       official palette colours

so ``datasets/prepare_cityscapes_dataset.py`` and the FCN-score read it exactly as they read the real thing.

How a scene is made
-------------------
Each image is a small 3-D street seen by a pinhole camera (height ``hc`` metres above a flat ground, horizon
row ``yh``, vanishing column ``xv``, focal length ``f`` pixels). A ground point at lateral offset ``X`` and depth
``Z`` projects to ``(xv + f X / Z, yh + f hc / Z)``, and an object ``m`` metres tall at depth ``Z`` is
``f m / Z`` pixels tall, so every object has a plausible size and place: a road (label 7) whose edges meet at the
vanishing point, sidewalks (8) or grass (22) beside it, building blocks (11) with per-block colour, height and
window grid, an occasional wall (12) or fence (13), street lamps (17), traffic lights (19) and signs (20) at the
kerb, trees and hedges (21), sky (23) with clouds, pedestrians (24) on the sidewalks, cyclists (25 on 33), cars
(26), now and then a truck (27), bus (28) or motorbike (32), and sometimes the ego vehicle's bonnet (1) at the
bottom, as in Cityscapes. Objects are painted far to near into the label map and the photo at the same time.

The photo is *rendered from* that geometry, so labels->photo is learnable but not a colour lookup: every class
has its own colour range and texture (asphalt grain, lane marks that are ``road`` in the labels, facade windows
that are ``building``, car windows, tyres and tail lights that are ``car``, clothing, foliage), plus lighting that
varies per image (sun side, shadows of the buildings across the street, overall gain and colour temperature,
distance haze, vignetting) and sensor noise. Photo->labels is learnable too: classes differ in colour,
texture and place.

Everything about image ``i`` of a split comes from ``numpy.random.default_rng([seed, split_code, i])``, so the set
is deterministic for a seed and image ``i`` does not depend on how many images are made.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import cv2
import numpy as np

from pix2pix_tr.cityscapes_labels import ids_to_color
from pix2pix_tr.data.manifest import Part, claim, command_line, mark_complete
from pix2pix_tr.io import atomic_write_bytes

# Cityscapes label ids used by the generator (see cityscapes_labels.LABELS).
EGO, ROAD, SIDEWALK, BUILDING, WALL, FENCE = 1, 7, 8, 11, 12, 13
POLE, LIGHT, SIGN, VEGETATION, TERRAIN, SKY = 17, 19, 20, 21, 22, 23
PERSON, RIDER, CAR, TRUCK, BUS, MOTORCYCLE, BICYCLE = 24, 25, 26, 27, 28, 32, 33

#: City names per split (invented, so nobody mistakes a synthetic frame for a real one).
CITIES = {
    "train": ("altheim", "bergfeld", "dornbach", "elmstadt", "fichtenau", "grauburg"),
    "val": ("hallbruck", "isenried", "juntal"),
    "test": ("kesselau", "lindmoor"),
}
_SPLIT_CODE = {"train": 1, "val": 2, "test": 3}
#: Cityscapes' annotated frames are all frame 19 of a 30-frame snippet; we keep that convention.
FRAME = 19
SYNTHETIC_TOOL = "make_synthetic_cityscapes.py"

# Per-class texture strength (fine grain, coarse blotches), indexed by label id.
_FINE = np.zeros(256, np.float32)
_COARSE = np.zeros(256, np.float32)
for _id, _f, _c in ((ROAD, 0.06, 0.06), (SIDEWALK, 0.05, 0.05), (BUILDING, 0.03, 0.06), (WALL, 0.05, 0.05),
                    (FENCE, 0.04, 0.03), (POLE, 0.02, 0.02), (VEGETATION, 0.16, 0.14), (TERRAIN, 0.1, 0.12),
                    (SKY, 0.005, 0.0), (PERSON, 0.03, 0.02), (RIDER, 0.03, 0.02), (CAR, 0.015, 0.02),
                    (TRUCK, 0.02, 0.03), (BUS, 0.02, 0.03), (BICYCLE, 0.02, 0.0), (MOTORCYCLE, 0.02, 0.0),
                    (EGO, 0.01, 0.02), (LIGHT, 0.02, 0.0), (SIGN, 0.01, 0.0)):
    _FINE[_id], _COARSE[_id] = _f, _c

_CAR_COLORS = np.array([(30, 30, 35), (200, 200, 205), (235, 235, 235), (120, 125, 130), (150, 20, 25),
                        (25, 45, 110), (20, 70, 45), (180, 150, 60), (90, 90, 95), (60, 30, 20),
                        (210, 210, 200), (40, 60, 80)], np.float32)
_FACADE_COLORS = np.array([(190, 175, 150), (170, 150, 130), (150, 150, 150), (200, 190, 170), (165, 110, 90),
                           (120, 115, 110), (215, 205, 185), (140, 120, 100), (180, 170, 175), (110, 100, 95),
                           (205, 180, 140), (95, 95, 105)], np.float32)
_CLOTHES = np.array([(30, 30, 40), (60, 60, 70), (20, 40, 90), (120, 30, 35), (200, 200, 200), (90, 70, 50),
                     (40, 80, 50), (150, 120, 90), (200, 160, 40), (80, 40, 90)], np.float32)


class _Scene:
    """One camera, one street; draws polygons into the label map and the photo together."""

    def __init__(self, rng: np.random.Generator, width: int, height: int):
        self.rng, self.W, self.H = rng, width, height
        self.lab = np.zeros((height, width), np.uint8)
        self.img = np.zeros((height, width, 3), np.float32)
        self.shade = np.ones((height, width), np.float32)  # photo-only multiplicative shadows
        self.yh = height * rng.uniform(0.38, 0.5)
        self.xv = width * rng.uniform(0.4, 0.6)
        self.f = width * rng.uniform(0.75, 1.05)
        self.hc = rng.uniform(1.3, 1.7)
        self.z_near = self.f * self.hc / (height + 2 - self.yh)  # the depth seen at the bottom row
        self.haze = np.array([205, 210, 215], np.float32) * rng.uniform(0.85, 1.05)
        self.haze_depth = rng.uniform(90, 250)
        self.sun_left = rng.random() < 0.5
        self.sunny = rng.random() < 0.6
        self.min_px = 0.9  # thin objects stay at least ~1 pixel wide at small sizes

    # --- projection -------------------------------------------------------------------------------------------
    def x(self, X, Z):
        return self.xv + self.f * np.asarray(X, np.float64) / Z

    def y(self, height_m, Z):
        """Image row of a point ``height_m`` metres above the ground at depth ``Z``."""
        return self.yh + self.f * (self.hc - np.asarray(height_m, np.float64)) / Z

    def size(self, metres, Z):
        return self.f * metres / Z

    def haze_mix(self, color, Z):
        t = 1.0 - math.exp(-Z / self.haze_depth)
        return (1 - t) * np.asarray(color, np.float32) + t * self.haze

    # --- drawing ----------------------------------------------------------------------------------------------
    @staticmethod
    def _pts(polys):
        return [np.round(np.clip(np.asarray(p, np.float64), -1e5, 1e5) * 4).astype(np.int32).reshape(-1, 1, 2)
                for p in polys]

    def fill(self, polys, label, color):
        """Fill polygons (each an (N, 2) array of x, y) with ``label`` in the labels and ``color`` in the photo."""
        pts = self._pts(polys)
        if label is not None:
            cv2.fillPoly(self.lab, pts, int(label), lineType=cv2.LINE_8, shift=2)
        cv2.fillPoly(self.img, pts, tuple(float(c) for c in color), lineType=cv2.LINE_8, shift=2)

    def paint(self, polys, color):
        """Photo-only detail (windows, lane marks, tyres): the label map is untouched."""
        self.fill(polys, None, color)

    def ellipse(self, cx, cy, rx, ry, label, color):
        t = np.linspace(0, 2 * np.pi, 20, endpoint=False)
        self.fill([np.stack([cx + rx * np.cos(t), cy + ry * np.sin(t)], 1)], label, color)

    def box(self, X0, X1, h0, h1, Z, label, color, paint_only=False):
        """An upright rectangle facing the camera at depth ``Z``: lateral X0..X1, heights h0..h1 metres."""
        x0, x1 = self.x(X0, Z), self.x(X1, Z)
        if x1 - x0 < self.min_px:
            c = 0.5 * (x0 + x1)
            x0, x1 = c - self.min_px / 2, c + self.min_px / 2
        y0, y1 = self.y(h1, Z), self.y(h0, Z)
        poly = np.array([(x0, y0), (x1, y0), (x1, y1), (x0, y1)])
        if paint_only:
            self.paint([poly], color)
        else:
            self.fill([poly], label, color)
        return poly

    def side(self, X, Z0, Z1, h0, h1, label, color):
        """A vertical face along the street (constant X) from depth Z0 to Z1, heights h0..h1."""
        poly = np.array([(self.x(X, Z0), self.y(h1, Z0)), (self.x(X, Z1), self.y(h1, Z1)),
                         (self.x(X, Z1), self.y(h0, Z1)), (self.x(X, Z0), self.y(h0, Z0))])
        if label is None:
            self.paint([poly], color)
        else:
            self.fill([poly], label, color)
        return poly

    def ground_quad(self, X0, X1, Z0, Z1):
        return np.array([(self.x(X0, Z0), self.y(0, Z0)), (self.x(X1, Z0), self.y(0, Z0)),
                         (self.x(X1, Z1), self.y(0, Z1)), (self.x(X0, Z1), self.y(0, Z1))])


def _jitter(rng, color, amount=12.0):
    return np.clip(np.asarray(color, np.float32) + rng.normal(0, amount, 3), 0, 255)


def _jitter_grey(rng, color, lum=14.0, chroma=3.0):
    """Mostly brightness variation: asphalt and paving stay grey instead of drifting to pink or green."""
    return np.clip(np.asarray(color, np.float32) + rng.normal(0, lum) + rng.normal(0, chroma, 3), 0, 255)


def _build_street(s: _Scene) -> None:
    rng = s.rng
    kind = rng.choice(["city", "city", "city", "suburb", "avenue"])  # urban canyon is the common case
    z_far = 1e4
    zn = s.z_near

    # Lateral layout (metres, X < 0 is left). The ego car drives in a lane of a 2-4 lane road.
    lane_w = rng.uniform(2.9, 3.6)
    n_lanes = int(rng.integers(2, 5))
    ego_lane = int(rng.integers(0, n_lanes))
    road_l = -(ego_lane + rng.uniform(0.3, 0.7)) * lane_w
    road_r = road_l + n_lanes * lane_w
    walk_l, walk_r = rng.uniform(2.5, 5.5), rng.uniform(2.5, 5.5)
    grass_l = rng.uniform(1.5, 4.0) if kind != "city" and rng.random() < 0.7 else 0.0
    grass_r = rng.uniform(1.5, 4.0) if kind != "city" and rng.random() < 0.7 else 0.0
    setback = 0.0 if kind == "city" else rng.uniform(3, 12)
    face_l = road_l - grass_l - walk_l - setback
    face_r = road_r + grass_r + walk_r + setback

    # Sky: vertical gradient, clouds come later with the textures.
    zenith = np.array([rng.uniform(80, 140), rng.uniform(130, 175), rng.uniform(190, 235)], np.float32)
    if not s.sunny:
        zenith = zenith * 0.3 + np.float32(rng.uniform(150, 200)) * 0.7
    horizon_sky = s.haze * 1.02
    rows = np.clip(np.arange(s.H, dtype=np.float32) / max(s.yh, 1.0), 0, 1)[:, None, None]
    s.img[:] = zenith * (1 - rows) + horizon_sky * rows
    s.lab[:] = SKY

    # The ground beyond the facades (seen in gaps between blocks): lawns and bare ground.
    ground = np.array([(0, s.yh), (s.W, s.yh), (s.W, s.H + 5), (0, s.H + 5)], np.float64)
    s.fill([ground], TERRAIN, s.haze_mix(_jitter(rng, (95, 120, 60), 15), 40))

    asphalt = _jitter_grey(rng, (88, 88, 92), 12)
    s.fill([s.ground_quad(road_l, road_r, zn, z_far)], ROAD, asphalt)
    walk_col = _jitter_grey(rng, (160, 157, 150), 16)
    grass_col = _jitter(rng, (90, 135, 55), 15)
    for sign, grass, walk, edge in ((-1, grass_l, walk_l, road_l), (1, grass_r, walk_r, road_r)):
        inner = edge + sign * grass
        outer = inner + sign * walk
        if grass:
            s.fill([s.ground_quad(min(edge, inner), max(edge, inner), zn, z_far)], TERRAIN, grass_col)
        s.fill([s.ground_quad(min(inner, outer), max(inner, outer), zn, z_far)], SIDEWALK, walk_col)
        # kerb: a light line on the road side of the sidewalk (photo only, the label stays sidewalk)
        kx = inner if not grass else edge
        s.paint([s.ground_quad(kx - 0.12, kx + 0.12, zn, z_far)], walk_col * 1.15)
    _lane_marks(s, road_l, road_r, lane_w, n_lanes)

    # Far end of the street: a cross facade, trees, or open sky.
    end_z = rng.uniform(60, 160)
    objects = []  # (depth, draw callable), painted far to near after the facades
    if kind == "city" and rng.random() < 0.7:
        for X0 in np.arange(face_l - 20, face_r + 20, rng.uniform(8, 20)):
            w = rng.uniform(8, 20)
            s.box(X0, X0 + w, 0, rng.uniform(8, 30), end_z, BUILDING,
                  s.haze_mix(_FACADE_COLORS[rng.integers(len(_FACADE_COLORS))], end_z))
    else:
        for X0 in np.arange(face_l - 40, face_r + 40, rng.uniform(4, 8)):
            cz = end_z * rng.uniform(0.8, 1.3)
            r = rng.uniform(3, 7)
            s.ellipse(s.x(X0, cz), s.y(r * 0.9, cz), s.size(r, cz), s.size(r * 0.9, cz), VEGETATION,
                      s.haze_mix(_jitter(rng, (60, 90, 40), 12), cz))

    # Facades on both sides: blocks of varying length/height, with gaps holding trees, walls or fences.
    for sign, face in ((-1, face_l), (1, face_r)):
        z = zn * rng.uniform(0.3, 1.0)
        sunlit = (sign < 0) != s.sun_left  # the facade facing the sun is brighter
        while z < end_z:
            length = rng.uniform(10, 35)
            z1 = min(z + length, end_z)
            gap = kind != "city" and rng.random() < 0.45 or rng.random() < 0.12
            if gap:
                objects.extend(_gap_fill(s, sign, face, z, z1))
            else:
                _facade(s, face, z, z1, rng.uniform(9, 28) if kind != "avenue" else rng.uniform(12, 22),
                        sunlit, sign)
            z = z1 + (rng.uniform(0, 6) if kind != "city" else 0)

    # Building shadows across the street when the sun is out (photo only).
    if s.sunny:
        sh_x = face_l + rng.uniform(2, 12) if s.sun_left else face_r - rng.uniform(2, 12)
        far_face = face_l if s.sun_left else face_r
        quad = s.ground_quad(min(far_face, sh_x), max(far_face, sh_x), zn, end_z)
        cv2.fillPoly(s.shade, _Scene._pts([quad]), 0.62, lineType=cv2.LINE_8, shift=2)

    objects.extend(_street_furniture(s, road_l, road_r, grass_l, grass_r, walk_l, walk_r, end_z))
    objects.extend(_traffic(s, road_l, road_r, lane_w, n_lanes, ego_lane, walk_l, walk_r, grass_l, grass_r, end_z))
    objects.sort(key=lambda item: -item[0])
    for _, draw in objects:
        draw()
    if rng.random() < 0.4:
        _ego_bonnet(s)


def _lane_marks(s: _Scene, road_l, road_r, lane_w, n_lanes):
    rng = s.rng
    white = np.array([225, 225, 220], np.float32) * rng.uniform(0.8, 1.0)
    dash, period = rng.uniform(2.5, 4), rng.uniform(8, 12)
    offset = rng.uniform(0, period)
    polys = []
    for k in range(1, n_lanes):
        X = road_l + k * lane_w
        for z0 in np.arange(s.z_near - offset, 150, period):
            z0 = max(z0, s.z_near * 0.5)
            polys.append(s.ground_quad(X - 0.08, X + 0.08, z0, z0 + dash))
    for X in (road_l + 0.3, road_r - 0.3):  # solid edge lines
        polys.append(s.ground_quad(X - 0.08, X + 0.08, s.z_near * 0.5, 1e4))
    s.paint(polys, white)


def _facade(s: _Scene, X, z0, z1, height, sunlit, sign):
    rng = s.rng
    base = _FACADE_COLORS[rng.integers(len(_FACADE_COLORS))] * rng.uniform(0.8, 1.1)
    light = 1.0 if sunlit or not s.sunny else 0.72
    zm = 0.5 * (z0 + z1)
    s.side(X, z0, z1, 0, height, BUILDING, s.haze_mix(base * light, zm))
    # Window grid: floors every ~3 m, windows every ~2.5 m along the street (photo only).
    floor_h = rng.uniform(2.8, 3.6)
    pitch = rng.uniform(2.2, 3.5)
    win_w, win_h = pitch * rng.uniform(0.35, 0.6), floor_h * rng.uniform(0.4, 0.6)
    glass = np.array([rng.uniform(40, 90), rng.uniform(50, 95), rng.uniform(60, 110)], np.float32)
    frame = base * 1.12
    floors = np.arange(floor_h * rng.uniform(0.9, 1.3), height - floor_h * 0.7, floor_h)
    cols = np.arange(z0 + rng.uniform(0.5, 1.5), z1 - win_w, pitch)
    if len(floors) and len(cols):
        Za, Zb = cols[None, :], cols[None, :] + win_w
        h0, h1 = floors[:, None], floors[:, None] + win_h
        Za, Zb = np.broadcast_to(Za, (len(floors), len(cols))), np.broadcast_to(Zb, (len(floors), len(cols)))
        h0, h1 = np.broadcast_to(h0, Za.shape), np.broadcast_to(h1, Za.shape)
        poly = np.stack([np.stack([s.x(X, Za), s.y(h1, Za)], -1), np.stack([s.x(X, Zb), s.y(h1, Zb)], -1),
                         np.stack([s.x(X, Zb), s.y(h0, Zb)], -1), np.stack([s.x(X, Za), s.y(h0, Za)], -1)], -2)
        poly = poly.reshape(-1, 4, 2)
        big = np.abs(poly[:, 1, 0] - poly[:, 0, 0]) >= 1.0  # skip sub-pixel windows (far away)
        if big.any():
            s.paint(list(poly[big] + np.array([0.0, -0.5])), s.haze_mix(frame * light, zm))
            lit = rng.random(big.sum()) < 0.15
            glass_cols = np.where(lit[:, None], np.array([210, 190, 120], np.float32), glass * light)
            for g in (False, True):
                sel = poly[big][lit == g]
                if len(sel):
                    s.paint(list(sel), s.haze_mix(glass_cols[lit == g][0], zm))
    # Shop front / ground-floor band.
    if rng.random() < 0.6:
        band = _jitter(rng, base * 0.6, 20)
        s.side(X, z0, z1, 0, floor_h * 0.8, None, s.haze_mix(band * light, zm))
    # Cornice (roof edge) line.
    s.side(X, z0, z1, height - 0.5, height, None, s.haze_mix(base * 0.75 * light, zm))


def _tree(s: _Scene, X, Z, height=None):
    rng = s.rng
    height = height or rng.uniform(5, 9)
    r = height * rng.uniform(0.28, 0.4)
    leaf = _jitter(rng, (65, 100, 35), 15) * (1.0 if s.sunny else 0.8)
    trunk = _jitter(rng, (75, 60, 45), 8)

    def draw():
        s.box(X - 0.15, X + 0.15, 0, height - r, Z, VEGETATION, s.haze_mix(trunk, Z))
        cx, cy = s.x(X, Z), s.y(height - r, Z)
        s.ellipse(cx, cy, s.size(r, Z), s.size(r * 1.05, Z), VEGETATION, s.haze_mix(leaf, Z))
        s.ellipse(cx - s.size(r * 0.3, Z), cy - s.size(r * 0.3, Z), s.size(r * 0.5, Z), s.size(r * 0.45, Z),
                  VEGETATION, s.haze_mix(leaf * 1.25, Z))
    return Z, draw


def _gap_fill(s: _Scene, sign, face, z0, z1):
    """Between building blocks: trees, a hedge, a wall or a fence in front of the lawn."""
    rng = s.rng
    out = []
    choice = rng.choice(["trees", "hedge", "wall", "fence"], p=[0.45, 0.2, 0.2, 0.15])
    zm = 0.5 * (z0 + z1)
    if choice == "trees":
        for z in np.arange(z0 + rng.uniform(1, 4), z1, rng.uniform(4, 8)):
            out.append(_tree(s, face + sign * rng.uniform(-1, 6), z, rng.uniform(6, 12)))
    elif choice == "hedge":
        col = _jitter(rng, (55, 95, 40), 12)
        out.append((zm, lambda: s.side(face, z0, z1, 0, rng.uniform(1.0, 2.0), VEGETATION, s.haze_mix(col, zm))))
        for z in np.arange(z0 + 3, z1, rng.uniform(6, 10)):
            out.append(_tree(s, face + sign * rng.uniform(1, 5), z))
    elif choice == "wall":
        col = _jitter(rng, (150, 140, 125), 20)
        h = rng.uniform(1.2, 3.0)
        out.append((zm, lambda: s.side(face, z0, z1, 0, h, WALL, s.haze_mix(col, zm))))
        for z in np.arange(z0 + 3, z1, rng.uniform(6, 12)):
            out.append(_tree(s, face + sign * rng.uniform(2, 6), z + 30))
    else:
        h = rng.uniform(1.0, 2.0)
        col = _jitter(rng, (120, 110, 95), 15)

        def fence():
            s.side(face, z0, z1, 0, h, FENCE, s.haze_mix(col, zm))
            # slats: photo-only darker bars
            for z in np.arange(z0, z1, 0.6):
                s.side(face, z, z + 0.2, 0, h, None, s.haze_mix(col * 0.6, zm))
        out.append((zm, fence))
    return out


def _street_furniture(s: _Scene, road_l, road_r, grass_l, grass_r, walk_l, walk_r, end_z):
    rng = s.rng
    out = []
    grey = _jitter_grey(rng, (115, 115, 118), 10)
    for sign, edge, grass, walk in ((-1, road_l, grass_l, walk_l), (1, road_r, grass_r, walk_r)):
        kerb = edge + sign * (grass + 0.5)
        # street lamps at regular spacing
        spacing = rng.uniform(15, 30)
        for z in np.arange(s.z_near * rng.uniform(0.8, 2.0), end_z, spacing):
            h = rng.uniform(6, 8)

            def lamp(z=z, h=h, X=kerb):
                c = s.haze_mix(grey, z)
                s.box(X - 0.1, X + 0.1, 0, h, z, POLE, c)
                arm = -sign * 1.5
                s.box(min(X, X + arm), max(X, X + arm), h - 0.15, h, z, POLE, c)
            out.append((z, lamp))
        # traffic lights and signs near the kerb
        for _ in range(int(rng.integers(0, 3))):
            z = rng.uniform(s.z_near * 1.5, 45)
            X = kerb + sign * rng.uniform(0, 0.6)
            if rng.random() < 0.5:
                def light(z=z, X=X):
                    h = rng.uniform(2.8, 3.6)
                    s.box(X - 0.07, X + 0.07, 0, h, z, POLE, s.haze_mix(grey * 0.8, z))
                    s.box(X - 0.2, X + 0.2, h, h + 0.9, z, LIGHT, s.haze_mix((35, 35, 30), z))
                    lamp_on = rng.integers(3)
                    for k, col in enumerate(((230, 40, 30), (240, 180, 30), (40, 210, 90))):
                        hk = h + 0.9 - 0.3 * (k + 0.5)
                        c = col if k == lamp_on else (60, 55, 50)
                        s.ellipse(s.x(X, z), s.y(hk, z), s.size(0.1, z), s.size(0.1, z), None, c)
                out.append((z, light))
            else:
                def sign_(z=z, X=X):
                    h = rng.uniform(2.0, 2.8)
                    s.box(X - 0.05, X + 0.05, 0, h, z, POLE, s.haze_mix(grey * 0.9, z))
                    shape = rng.integers(3)
                    cx, cy, r = s.x(X, z), s.y(h + 0.35, z), s.size(0.35, z)
                    col = [(200, 30, 30), (30, 70, 170), (230, 230, 230)][shape]
                    if shape == 0:
                        s.ellipse(cx, cy, r, r, SIGN, col)
                        s.ellipse(cx, cy, r * 0.7, r * 0.7, None, (235, 235, 235))
                    elif shape == 1:
                        s.fill([np.array([(cx - r, cy - r), (cx + r, cy - r), (cx + r, cy + r), (cx - r, cy + r)])],
                               SIGN, col)
                    else:
                        s.fill([np.array([(cx, cy - r), (cx + r, cy + r * 0.8), (cx - r, cy + r * 0.8)])], SIGN,
                               (200, 30, 30))
                        s.fill([np.array([(cx, cy - r * 0.45), (cx + r * 0.55, cy + r * 0.5),
                                          (cx - r * 0.55, cy + r * 0.5)])], None, col)
                out.append((z, sign_))
        # trees on the sidewalk or grass strip
        if rng.random() < 0.6:
            X0 = edge + sign * (grass * 0.5 if grass else walk * 0.7)
            for z in np.arange(s.z_near * rng.uniform(1, 3), end_z, rng.uniform(8, 16)):
                if rng.random() < 0.8:
                    out.append(_tree(s, X0 + rng.normal(0, 0.2), z))
        # pedestrians
        for _ in range(int(rng.poisson(2.5))):
            z = rng.uniform(s.z_near * 1.2, 45)
            X = edge + sign * (grass + rng.uniform(0.5, walk - 0.3))
            out.append((z, _person(s, X, z)))
    return out


def _person(s: _Scene, X, z, label=PERSON, h=None, base=0.0, legs=True):
    rng = s.rng
    h = h or rng.uniform(1.55, 1.9)
    top, bottom = _CLOTHES[rng.integers(len(_CLOTHES))], _CLOTHES[rng.integers(len(_CLOTHES))]
    skin = _jitter(rng, (200, 160, 130), 25)

    def draw():
        w = 0.45
        if legs:
            s.box(X - w * 0.45, X - 0.02, base, base + h * 0.47, z, label, s.haze_mix(bottom, z))
            s.box(X + 0.02, X + w * 0.45, base, base + h * 0.47, z, label, s.haze_mix(bottom, z))
        s.box(X - w / 2, X + w / 2, base + h * 0.45, base + h * 0.83, z, label, s.haze_mix(top, z))
        s.ellipse(s.x(X, z), s.y(base + h * 0.915, z), s.size(0.11, z), s.size(0.13, z), label, s.haze_mix(skin, z))
    return draw


def _bike(s: _Scene, X, z, motor=False):
    """A cyclist (rider 25 on bicycle 33) or a motorbike (32) seen from the side."""
    rng = s.rng
    frame_col = _jitter(rng, (40, 40, 45) if not motor else (150, 30, 30), 25)
    length = 1.7 if not motor else 2.0
    r_wheel = 0.34 if not motor else 0.32
    x_dir = 1 if rng.random() < 0.5 else -1
    label = MOTORCYCLE if motor else BICYCLE

    def draw():
        cx, gy = s.x(X, z), s.y(0, z)
        L, R = s.size(length, z), s.size(r_wheel, z)
        thick = max(1, int(round(s.size(0.07, z))))
        for dx in (-L / 2 + R, L / 2 - R):
            c = (int(round(cx + dx)), int(round(gy - R)))
            cv2.circle(s.lab, c, max(1, int(round(R))), label, thick)
            cv2.circle(s.img, c, max(1, int(round(R))), (25, 25, 25), thick)
        seat = np.array([(cx - L / 2 + R, gy - R), (cx, gy - R * 2.4), (cx + L / 2 - R, gy - R)])
        if motor:
            s.fill([np.array([(cx - L * 0.35, gy - R * 1.2), (cx + L * 0.35, gy - R * 1.2),
                              (cx + L * 0.3, gy - R * 2.3), (cx - L * 0.3, gy - R * 2.3)])], label, frame_col)
        else:
            for a, b in ((0, 1), (1, 2), (0, 2)):
                p = np.round(seat[[a, b]]).astype(np.int32)
                cv2.line(s.lab, tuple(p[0]), tuple(p[1]), label, thick)
                cv2.line(s.img, tuple(p[0]), tuple(p[1]), tuple(float(c) for c in frame_col), thick)
        # rider: torso and head above the seat, leaning forward
        top = _CLOTHES[rng.integers(len(_CLOTHES))]
        skin = _jitter(rng, (200, 160, 130), 25)
        hip_y = gy - R * 2.4
        torso = s.size(0.65, z)
        lean = x_dir * torso * 0.35
        w = s.size(0.2, z)
        s.fill([np.array([(cx - w, hip_y), (cx + w, hip_y), (cx + w + lean, hip_y - torso),
                          (cx - w + lean, hip_y - torso)])], RIDER, s.haze_mix(top, z))
        s.fill([np.array([(cx - w * 0.8, hip_y), (cx + w * 0.8, hip_y), (cx + x_dir * L * 0.2, gy - R),
                          (cx + x_dir * L * 0.2 - w, gy - R)])], RIDER, s.haze_mix(_CLOTHES[0], z))
        s.ellipse(cx + lean * 1.1, hip_y - torso - s.size(0.13, z), s.size(0.12, z), s.size(0.13, z), RIDER,
                  s.haze_mix(skin, z))
    return draw


def _vehicle(s: _Scene, X, z, kind=CAR, oncoming=False):
    """A car / truck / bus seen from behind (or from the front when ``oncoming``), with its near side visible
    when it is off the camera axis."""
    rng = s.rng
    if kind == CAR:
        w, h_body, h_roof, length = rng.uniform(1.7, 1.95), rng.uniform(0.9, 1.1), rng.uniform(1.4, 1.6), 4.3
        col = _CAR_COLORS[rng.integers(len(_CAR_COLORS))]
    elif kind == TRUCK:
        w, h_body, h_roof, length = 2.4, rng.uniform(2.8, 3.5), 0, 8.0
        col = _jitter(rng, (210, 210, 205), 20)
    else:
        w, h_body, h_roof, length = 2.55, 3.0, 0, 12.0
        col = _jitter(rng, rng.choice([(220, 190, 40), (200, 40, 40), (235, 235, 230), (40, 110, 170)]), 10)
    col = col * rng.uniform(0.85, 1.1)
    dark = np.array([30, 33, 38], np.float32)
    shadow = np.array([45, 45, 48], np.float32)

    def draw():
        light = 1.0 if s.sunny else 0.85
        c = s.haze_mix(col * light, z)
        x0, x1 = X - w / 2, X + w / 2
        # shadow on the road (photo only)
        s.paint([s.ground_quad(x0 - 0.1, x1 + 0.1, z - 0.3, z + length)], s.haze_mix(shadow, z))
        side_X = x1 if X < 0 else x0  # the side facing the camera axis
        if abs(X) > w / 2:
            s.side(side_X, z, z + length, 0.2, h_body, kind, s.haze_mix(col * 0.8 * light, z))
            if kind == CAR:
                s.side(side_X, z + 0.8, z + length - 1.2, h_body, h_roof, kind, s.haze_mix(dark * 1.3, z))
            else:
                s.side(side_X, z + 1.0, z + length - 1.0, h_body * 0.55, h_body * 0.75, None,
                       s.haze_mix(dark * 1.5, z))
            for zw in (z + 0.8, z + length - 0.9):
                s.side(side_X, zw, zw + 0.7, 0, 0.6, kind, dark)
        s.box(x0, x1, 0.25, h_body, z, kind, c)
        if kind == CAR:
            roof = np.array([(s.x(x0 + 0.12, z), s.y(h_body, z)), (s.x(x1 - 0.12, z), s.y(h_body, z)),
                             (s.x(x1 - 0.3, z), s.y(h_roof, z)), (s.x(x0 + 0.3, z), s.y(h_roof, z))])
            s.fill([roof], kind, c)
            win = np.array([(s.x(x0 + 0.25, z), s.y(h_body + 0.05, z)), (s.x(x1 - 0.25, z), s.y(h_body + 0.05, z)),
                            (s.x(x1 - 0.38, z), s.y(h_roof - 0.08, z)), (s.x(x0 + 0.38, z), s.y(h_roof - 0.08, z))])
            s.paint([win], s.haze_mix(dark * 1.6, z))
            lamp = (235, 230, 200) if oncoming else (170, 25, 25)  # head lights or tail lights
            for lx in (x0 + 0.08, x1 - 0.33):
                s.box(lx, lx + 0.25, h_body - 0.3, h_body - 0.12, z, kind, lamp, paint_only=True)
            if oncoming:  # radiator grille
                s.box(X - 0.4, X + 0.4, h_body - 0.35, h_body - 0.15, z, kind, dark * 1.2, paint_only=True)
            s.box(X - 0.26, X + 0.26, 0.45, 0.57, z, kind, (225, 225, 215), paint_only=True)  # plate
        else:
            s.box(x0 + 0.2, x1 - 0.2, h_body * 0.55, h_body * 0.9, z, kind, s.haze_mix(dark * 1.5, z),
                  paint_only=True)
        for wx in (x0, x1 - 0.3):  # tyres under the body
            s.box(wx, wx + 0.3, 0, 0.35, z, kind, dark)

    return [(z, draw)]


def _traffic(s: _Scene, road_l, road_r, lane_w, n_lanes, ego_lane, walk_l, walk_r, grass_l, grass_r, end_z):
    rng = s.rng
    out = []
    z_min = s.z_near + 2.5
    two_way = rng.random() < 0.6  # lanes left of the ego lane carry oncoming traffic
    for lane in range(n_lanes):
        z = z_min + rng.exponential(10.0) + (4 if lane == ego_lane else 0)
        while z < min(end_z, 90):
            X = road_l + (lane + 0.5) * lane_w + rng.normal(0, 0.15)
            r = rng.random()
            kind = CAR if r < 0.88 else (TRUCK if r < 0.94 else BUS)
            out.extend(_vehicle(s, X, z, kind, oncoming=lane < ego_lane and two_way))
            z += (8 if kind == CAR else 14) + rng.exponential(14.0)
    # parked cars along one or both kerbs
    for sign, edge in ((-1, road_l), (1, road_r)):
        if rng.random() < 0.5:
            z = z_min + rng.uniform(0, 8)
            while z < 70:
                if rng.random() < 0.8:
                    out.extend(_vehicle(s, edge - sign * 1.1, z, CAR))
                z += 5.2 + rng.exponential(4.0)
    # cyclists near the kerb, the odd motorbike
    for _ in range(int(rng.poisson(1.2))):
        sign = rng.choice([-1, 1])
        edge = road_l if sign < 0 else road_r
        z = rng.uniform(z_min, 40)
        X = edge - sign * rng.uniform(0.6, 1.4)
        out.append((z, _bike(s, X, z, motor=rng.random() < 0.25)))
    return out


def _ego_bonnet(s: _Scene):
    """The ego vehicle's bonnet along the bottom edge (Cityscapes label 1, 'ego vehicle', ignored in scoring)."""
    rng = s.rng
    top = s.H * rng.uniform(0.88, 0.94)
    xs = np.linspace(-0.05, 1.05, 24) * s.W
    ys = top + (s.H - top) * 0.6 * ((xs / s.W - 0.5) * 2) ** 2
    poly = np.concatenate([np.stack([xs, ys], 1), [(s.W * 1.05, s.H + 2), (-s.W * 0.05, s.H + 2)]])
    s.fill([poly], EGO, _jitter(rng, (40, 40, 45), 15))


def _vignette(H: int, W: int) -> np.ndarray:
    key = (H, W)
    if key not in _VIGNETTE:
        yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
        _VIGNETTE[key] = (((xx - W / 2) / (W / 2)) ** 2 + ((yy - H / 2) / (H / 2)) ** 2) / 2
    return _VIGNETTE[key]


_VIGNETTE: dict = {}


def _finish_photo(s: _Scene) -> np.ndarray:
    """Textures, clouds, lighting, vignetting and sensor noise; returns the uint8 photo."""
    rng, H, W, lab = s.rng, s.H, s.W, s.lab
    coarse = cv2.resize(rng.standard_normal((max(2, H // 12), max(2, W // 12)), dtype=np.float32), (W, H),
                        interpolation=cv2.INTER_CUBIC)
    fine = rng.standard_normal((H, W), dtype=np.float32)
    fine = 0.6 * fine + 0.8 * cv2.blur(fine, (3, 3))
    mod = 1.0 + _FINE[lab] * fine + _COARSE[lab] * coarse
    img = s.img
    img *= mod[..., None]
    # clouds: soft white blobs in the sky
    sky = lab == SKY
    if sky.any():
        cloud = cv2.resize(rng.standard_normal((max(2, H // 40), max(2, W // 25)), dtype=np.float32), (W, H),
                           interpolation=cv2.INTER_CUBIC)
        amount = np.clip(cloud - np.float32(rng.uniform(0.0, 0.8)), 0, 1) * np.float32(0.9 if s.sunny else 0.5)
        amount *= sky
        img += (np.float32(235) - img) * amount[..., None]
    gain = rng.uniform(0.7, 1.15) * (1.0 if s.sunny else 0.85)
    tint = np.array([rng.uniform(0.92, 1.08), 1.0, rng.uniform(0.92, 1.08)], np.float32) * np.float32(gain)
    light = s.shade * (1 - np.float32(rng.uniform(0.05, 0.25)) * _vignette(H, W))
    img *= light[..., None]
    img *= tint
    if min(H, W) >= 128:
        img = cv2.GaussianBlur(img, (3, 3), 0.6)
    # sensor noise: luminance grain plus a weaker colour grain at half resolution (cheap to draw)
    grain = rng.standard_normal((H, W), dtype=np.float32) * np.float32(rng.uniform(1.5, 4.0))
    chroma = rng.standard_normal((H // 2 + 1, W // 2 + 1, 3), dtype=np.float32)
    img += grain[..., None]
    img += cv2.resize(chroma, (W, H), interpolation=cv2.INTER_NEAREST)
    return np.clip(img, 0, 255).astype(np.uint8)


def render_scene(rng: np.random.Generator, width: int = 512, height: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """Draw one street scene: ``(label_ids (H, W) uint8, photo (H, W, 3) uint8 RGB)``."""
    if width < 16 or height < 8:
        raise ValueError(f"the synthetic city needs at least 16x8 pixels, got {width}x{height}")
    s = _Scene(rng, width, height)
    _build_street(s)
    return s.lab.copy(), _finish_photo(s)


def scene_rng(seed: int, split: str, index: int) -> np.random.Generator:
    """The generator for image ``index`` of ``split``: the image depends on nothing else."""
    return np.random.default_rng([int(seed) & 0xFFFFFFFFFFFFFFFF, _SPLIT_CODE[split], int(index)])


def frame_names(split: str, n: int) -> list[tuple[str, str]]:
    """``(city, stem)`` for the ``n`` images of a split: round-robin over the split's cities, ``seq`` counting up
    per city, frame 19 (``altheim_000000_000019`` ...)."""
    cities = CITIES[split][: max(1, min(len(CITIES[split]), n))]
    per_city = {c: 0 for c in cities}
    out = []
    for i in range(n):
        city = cities[i % len(cities)]
        out.append((city, f"{city}_{per_city[city]:06d}_{FRAME:06d}"))
        per_city[city] += 1
    return out


def _png(array: np.ndarray) -> bytes:
    if array.ndim == 3:
        array = cv2.cvtColor(array, cv2.COLOR_RGB2BGR)
    ok, buf = cv2.imencode(".png", array, [cv2.IMWRITE_PNG_COMPRESSION, 1])
    if not ok:  # pragma: no cover - cv2 only fails on invalid arrays
        raise RuntimeError("PNG encoding failed")
    return buf.tobytes()


def make_synthetic_cityscapes(out_dir, n_train: int, n_val: int, seed: int = 0, width: int = 512,
                              height: int = 256, *, n_test: int = 0, progress: bool = False,
                              overwrite: bool = False) -> dict:
    """Write a synthetic city in the Cityscapes layout under ``out_dir``.

    Args:
        out_dir: destination; ``leftImg8bit/`` and ``gtFine/`` are created inside. Its manifest
            (:mod:`pix2pix_tr.data.manifest`) records each split's settings and marks it complete after its last
            frame: a rerun with the same settings writes the split again (the same bytes: the frames are a
            function of the seed), one with other settings (another seed, size or frame count), or into a split
            holding images no recorded run wrote, is refused unless ``overwrite`` (the split's old images are
            removed first). Splits with 0 frames are not written and are left as they are.
        n_train, n_val, n_test: number of frames per split (``test`` is off by default, as in pix2pix).
        seed: the whole set is a function of ``(seed, split, index)``.
        width, height: image size (Cityscapes is 2048x1024; default 512x256 keeps the 2:1 aspect).
        overwrite: replace splits made with other settings (``--overwrite``).

    Returns:
        ``{"root": Path, "width", "height", "seed", "train": [stems], "val": [stems], "test": [stems],
        "seconds": wall-clock float, "cpu_seconds": this process's CPU time, "class_pixels": {label_id: count}}``.
    """
    for name, n in (("n_train", n_train), ("n_val", n_val), ("n_test", n_test)):
        if int(n) < 0:
            raise ValueError(f"{name} must be >= 0, got {n}")
    if width < 16 or height < 8:
        raise ValueError(f"--width/--height must be at least 16x8, got {width}x{height}")
    root = Path(out_dir)
    t0, c0 = time.perf_counter(), time.process_time()
    result: dict = {"root": root, "width": int(width), "height": int(height), "seed": int(seed)}
    counts = np.zeros(256, np.int64)
    todo = [(split, int(n)) for split, n in (("train", n_train), ("val", n_val), ("test", n_test))]
    parts = []
    for split, n in todo:
        if n == 0:
            continue
        files = []
        for city, stem in frame_names(split, n):
            files += [f"leftImg8bit/{split}/{city}/{stem}_leftImg8bit.png",
                      f"gtFine/{split}/{city}/{stem}_gtFine_labelIds.png", f"gtFine/{split}/{city}/{stem}_gtFine_color.png"]
        args = ["--out", out_dir, "--train", n_train, "--val", n_val, "--test", n_test, "--seed", seed,
                "--width", width, "--height", height]
        parts.append(Part(split, dict(seed=int(seed), width=int(width), height=int(height), frames=n), files,
                          [f"leftImg8bit/{split}", f"gtFine/{split}"],
                          command_line("datasets/make_synthetic_cityscapes.py", args),
                          dict(seed="--seed", width="--width", height="--height", frames=f"--{split}")))
    claim(root, SYNTHETIC_TOOL, parts, overwrite=overwrite, flag="--out")
    total = sum(n for _, n in todo)
    done = 0
    for split, n in todo:
        stems = []
        for i, (city, stem) in enumerate(frame_names(split, int(n))):
            labels, photo = render_scene(scene_rng(seed, split, i), int(width), int(height))
            counts += np.bincount(labels.ravel(), minlength=256)
            atomic_write_bytes(root / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png", _png(photo))
            gt = root / "gtFine" / split / city
            atomic_write_bytes(gt / f"{stem}_gtFine_labelIds.png", _png(labels))
            atomic_write_bytes(gt / f"{stem}_gtFine_color.png", _png(ids_to_color(labels)))
            stems.append(stem)
            done += 1
            if progress and (done % 25 == 0 or done == total):
                print(f"  {done}/{total} frames", flush=True)
        if n:
            mark_complete(root, split)
        result[split] = stems
    result["seconds"] = time.perf_counter() - t0
    result["cpu_seconds"] = time.process_time() - c0
    result["class_pixels"] = {int(i): int(c) for i, c in enumerate(counts) if c}
    return result
