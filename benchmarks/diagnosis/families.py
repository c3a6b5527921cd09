"""Generated image families for the diagnosis benchmark: target families that differ in kind, and the
generic source task the base is pre-trained on.

- "shapes" (development): one filled or outlined shape on noise (samples/shapes.py's generator).
- "textures" (development since its first scoring; it was held out until then): a textured patch on noise:
  oriented gratings, checkerboards, dot fields, smooth noise blobs, with random colours, phases, scales,
  orientations and positions.
- "colours" (development since its first scoring; it was held out until then): blobs of one hue per class
  (red, yellow, green, blue, ±25°, random saturation and brightness) in random forms, sizes and places, with a
  grey distractor stroke, on noise.
- "glyphs" (held out): a letter (A, F, T, Z) in a random size, colour, place and tilt on noise. Never looked at
  while choosing recipes, manifestation checks, rules or thresholds.
- "scenes" (development since its first scoring; it was held out until then): a landscape layout per class, a
  horizon at a random height and tilt with random colours: sea (a horizon over horizontal wave lines), forest
  (vertical trunks standing on the ground), night (a dark sky with a moon and scattered stars), mountains (a
  jagged ridge silhouette against the sky). The class is the arrangement of the whole image, not one object.
- "counts" (development since its first scoring; it was held out until then): how many objects the image holds, one to four small filled shapes (circle, square,
  triangle or diamond, each of a random kind, colour, size, place and turn, none overlapping another) on noise.
  The class is a number, not what any object looks like.
- "quality" (held out): how the image was degraded, not what it shows: a few random filled shapes over a smooth
  two-colour gradient, then kept sharp, blurred, pixelated or speckled, each with a random strength. Never
  looked at while choosing recipes, manifestation checks, rules, thresholds or calibrations.
- "layouts" (held out): how four to six small objects are arranged, not what they are or how many: along a row,
  along a column, along a diagonal, or around a ring, each object of a random kind, colour and size, the whole
  arrangement at a random place, scale and tilt (±12°) with a little jitter per object, on noise. Never looked at
  while choosing recipes, manifestation checks, rules, thresholds, calibrations or autopilot policy.
- source: a mix of other shapes and other periodic patterns (rings, bars, diamonds, dot clusters, pentagons,
  hexagons, stars, ellipses, concentric rings, spokes, zigzags, grids), neither target family's classes,
  so both targets are transfer tasks.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from samples.shapes import draw as draw_shape

SIZE = 75


def _vertices(cx: float, cy: float, radii: tuple[float, ...], t0: float, n: int) -> list[tuple[float, float]]:
    """n points around (cx, cy) from angle t0, their distances cycling through `radii` (a star: two radii)."""
    return [
        (
            cx + radii[i % len(radii)] * np.cos(t0 + 2 * np.pi * i / n),
            cy + radii[i % len(radii)] * np.sin(t0 + 2 * np.pi * i / n),
        )
        for i in range(n)
    ]


def _noise(size: int, rng: random.Random) -> np.ndarray:
    return np.random.default_rng(rng.randrange(2**32)).integers(0, 90, (size, size, 3)).astype(np.float32)


def _colours(rng: random.Random) -> tuple[np.ndarray, np.ndarray]:
    a = np.array([rng.randrange(140, 256) for _ in range(3)], np.float32)
    b = np.array([rng.randrange(0, 110) for _ in range(3)], np.float32)
    return a, b


def _patch_mask(size: int, rng: random.Random) -> np.ndarray:
    """A random rectangle covering 35-80 % of each side: where the texture is."""
    w, h = (int(rng.uniform(0.55, 0.9) * size) for _ in range(2))
    x0, y0 = rng.randrange(0, size - w + 1), rng.randrange(0, size - h + 1)
    mask = np.zeros((size, size), bool)
    mask[y0 : y0 + h, x0 : x0 + w] = True
    return mask


def _coords(size: int, rng: random.Random) -> tuple[np.ndarray, np.ndarray]:
    """Pixel coordinates rotated by a random angle, so every pattern has a random orientation."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float32)
    t = rng.uniform(0, np.pi)
    return x * np.cos(t) + y * np.sin(t), -x * np.sin(t) + y * np.cos(t)


def _texture(pattern: str, size: int, rng: random.Random) -> np.ndarray:
    """A value in [0, 1] per pixel."""
    u, v = _coords(size, rng)
    period = rng.uniform(6, 16)
    phase = rng.uniform(0, 2 * np.pi)
    if pattern == "grating":
        return 0.5 + 0.5 * np.sin(2 * np.pi * u / period + phase)
    if pattern == "checker":
        return ((np.floor(u / period + phase) + np.floor(v / period + phase)) % 2).astype(np.float32)
    if pattern == "dotfield":
        cu, cv = (np.mod(a / period + phase, 1.0) - 0.5 for a in (u, v))
        return (np.hypot(cu, cv) < rng.uniform(0.18, 0.32)).astype(np.float32)
    if pattern == "blobs":  # smooth noise: a coarse random grid upsampled
        cells = rng.randrange(3, 7)
        coarse = np.random.default_rng(rng.randrange(2**32)).random((cells, cells)).astype(np.float32)
        img = Image.fromarray((coarse * 255).astype(np.uint8)).resize((size, size), Image.BICUBIC)
        return (np.asarray(img, np.float32) / 255 > 0.5).astype(np.float32)
    # source-only patterns
    if pattern == "concentric":
        cx, cy = rng.uniform(0.2, 0.8) * size, rng.uniform(0.2, 0.8) * size
        y, x = np.mgrid[0:size, 0:size].astype(np.float32)
        return 0.5 + 0.5 * np.sin(2 * np.pi * np.hypot(x - cx, y - cy) / period + phase)
    if pattern == "spokes":
        cx, cy = rng.uniform(0.3, 0.7) * size, rng.uniform(0.3, 0.7) * size
        y, x = np.mgrid[0:size, 0:size].astype(np.float32)
        return 0.5 + 0.5 * np.sign(np.sin(rng.randrange(4, 10) * np.arctan2(y - cy, x - cx) + phase))
    if pattern == "zigzag":
        return 0.5 + 0.5 * np.sign(np.sin(2 * np.pi * (v + period / 2 * np.abs(np.mod(u / period, 2) - 1)) / period))
    if pattern == "grid":
        return ((np.mod(u / period + phase, 1) < 0.2) | (np.mod(v / period + phase, 1) < 0.2)).astype(np.float32)
    if pattern == "gradient":
        return np.clip((u - u.min()) / (np.ptp(u) + 1e-6), 0, 1)
    raise ValueError(pattern)


def draw_polygon(kind: str, size: int, rng: random.Random) -> Image.Image:
    """Source-only shapes: a rotated pentagon, hexagon, five-point star or ellipse on noise."""
    img = Image.fromarray(_noise(size, rng).astype(np.uint8))
    r = rng.uniform(0.22, 0.38) * size
    cx, cy = rng.uniform(r, size - r), rng.uniform(r, size - r)
    t0, colour = rng.uniform(0, 2 * np.pi), tuple(rng.randrange(140, 256) for _ in range(3))
    d = ImageDraw.Draw(img)
    if kind == "ellipse":
        d.ellipse((cx - r, cy - r * rng.uniform(0.35, 0.6), cx + r, cy + r * rng.uniform(0.35, 0.6)), fill=colour)
        return img
    n, radii = {"pentagon": (5, (r,)), "hexagon": (6, (r,)), "star": (10, (r, r * 0.45))}[kind]
    d.polygon(_vertices(cx, cy, radii, t0, n), fill=colour)
    return img


def draw_texture(pattern: str, size: int, rng: random.Random) -> Image.Image:
    img = _noise(size, rng)
    mask = _patch_mask(size, rng)
    hi, lo = _colours(rng)
    t = _texture(pattern, size, rng)[..., None]
    img[mask] = (lo + t * (hi - lo))[mask]
    return Image.fromarray(img.clip(0, 255).astype(np.uint8))


HUES = {"red": 0.0, "yellow": 55.0, "green": 125.0, "blue": 220.0}


def draw_colour(name: str, size: int, rng: random.Random) -> Image.Image:
    """One to three blobs of the class's hue (±25°, random saturation and brightness) and a grey distractor stroke
    on noise: the class is the colour, whatever the form, size or place."""
    import colorsys

    img = Image.fromarray(_noise(size, rng).astype(np.uint8))
    d = ImageDraw.Draw(img)
    for _ in range(rng.randint(1, 3)):
        hue = ((HUES[name] + rng.uniform(-25, 25)) % 360) / 360
        r, g, b = colorsys.hsv_to_rgb(hue, rng.uniform(0.45, 1.0), rng.uniform(0.55, 1.0))
        w, h = rng.randint(size // 6, size // 2), rng.randint(size // 6, size // 2)
        x0, y0 = rng.randint(0, size - w), rng.randint(0, size - h)
        box = (x0, y0, x0 + w, y0 + h)
        (d.ellipse if rng.random() < 0.5 else d.rectangle)(box, fill=(int(r * 255), int(g * 255), int(b * 255)))
    grey = rng.randint(90, 200)
    d.line([(rng.randint(0, size), rng.randint(0, size)) for _ in range(3)], fill=(grey, grey, grey), width=3)
    return img


GLYPHS = ("A", "F", "T", "Z")


def draw_glyph(name: str, size: int, rng: random.Random) -> Image.Image:
    """A letter in a random size (40-75 % of the image), colour, place and tilt (±25°) on noise."""
    from PIL import ImageFont

    img = Image.fromarray(_noise(size, rng).astype(np.uint8))
    font = ImageFont.load_default(size=int(size * rng.uniform(0.4, 0.75)))
    layer = Image.new("L", (size, size), 0)
    ImageDraw.Draw(layer).text((size / 2, size / 2), name, fill=255, font=font, anchor="mm")
    layer = layer.rotate(
        rng.uniform(-25, 25), translate=(rng.randint(-size // 8, size // 8), rng.randint(-size // 8, size // 8))
    )
    colour = tuple(rng.randrange(120, 256) for _ in range(3))
    img.paste(Image.new("RGB", (size, size), colour), (0, 0), layer)
    return img


SCENES = ("sea", "forest", "night", "mountains")


def draw_scene(name: str, size: int, rng: random.Random) -> Image.Image:
    """A landscape: sky above a horizon at 35-70 % of the height, tilted ±8°, the class's structure drawn over it."""
    sky, ground = _colours(rng)
    if name == "night":
        sky = np.array([rng.randrange(0, 50) for _ in range(3)], np.float32)
    img = _noise(size, rng) * 0.4
    y, x = np.mgrid[0:size, 0:size].astype(np.float32)
    h0, tilt = rng.uniform(0.35, 0.7) * size, np.tan(np.radians(rng.uniform(-8, 8)))
    below = y > h0 + (x - size / 2) * tilt
    img[~below] += sky * 0.6
    img[below] += ground * 0.6
    out = Image.fromarray(img.clip(0, 255).astype(np.uint8))
    d = ImageDraw.Draw(out)
    bright = tuple(rng.randrange(170, 256) for _ in range(3))
    if name == "sea":  # wave lines parallel to the horizon
        step = rng.uniform(4, 8)
        for k in range(1, 20):
            yy = h0 + k * step
            d.line([(0, yy - size / 2 * tilt), (size, yy + size / 2 * tilt)], fill=bright, width=1)
    elif name == "forest":  # trunks from the horizon down, crowns above
        for _ in range(rng.randint(4, 8)):
            cx, w = rng.uniform(0, size), rng.uniform(2, 5)
            top = h0 + (cx - size / 2) * tilt - rng.uniform(5, 20)
            d.rectangle((cx - w / 2, top, cx + w / 2, size), fill=bright)
            d.ellipse((cx - 3 * w, top - 4 * w, cx + 3 * w, top + w), fill=tuple(int(c * 0.6) for c in bright))
    elif name == "night":  # a moon and stars in the sky
        r = rng.uniform(4, 9)
        mx, my = rng.uniform(r, size - r), rng.uniform(r, max(r + 1, h0 - r))
        d.ellipse((mx - r, my - r, mx + r, my + r), fill=(240, 240, 210))
        for _ in range(rng.randint(10, 25)):
            sx, sy = rng.uniform(0, size), rng.uniform(0, h0)
            d.point((sx, sy), fill=(255, 255, 255))
            d.point((sx + 1, sy), fill=(255, 255, 255))
    else:  # mountains: a jagged ridge rising from the horizon
        pts = [(0.0, float(size)), (0.0, h0 - size / 2 * tilt)]
        for k in range(1, rng.randint(3, 6) * 2):
            xx = k * size / 10 + rng.uniform(-2, 2)
            peak = rng.uniform(0.15, 0.45) * size if k % 2 else rng.uniform(0.0, 0.1) * size
            pts.append((xx, h0 + (xx - size / 2) * tilt - peak))
        pts += [(float(size), h0 + size / 2 * tilt), (float(size), float(size))]
        d.polygon(pts, fill=tuple(int(c * 0.5) for c in bright))
    return out


COUNTS = ("one", "two", "three", "four")
COUNT_KINDS = ("circle", "square", "triangle", "diamond")


def draw_count(name: str, size: int, rng: random.Random) -> Image.Image:
    """As many small filled shapes as the class says (radius 6-12 % of the image), each of a random kind, colour,
    place and turn, none overlapping another (placed by rejection, at least 2 px apart), on noise."""
    img = Image.fromarray(_noise(size, rng).astype(np.uint8))
    d = ImageDraw.Draw(img)
    placed: list[tuple[float, float, float]] = []
    while len(placed) < COUNTS.index(name) + 1:
        r = rng.uniform(0.06, 0.12) * size
        cx, cy = rng.uniform(r + 1, size - r - 1), rng.uniform(r + 1, size - r - 1)
        if any(np.hypot(cx - x, cy - y) < r + q + 2 for x, y, q in placed):
            continue
        placed.append((cx, cy, r))
        kind, colour, t0 = (
            rng.choice(COUNT_KINDS),
            tuple(rng.randrange(140, 256) for _ in range(3)),
            rng.uniform(0, 2 * np.pi),
        )
        if kind == "circle":
            d.ellipse((cx - r, cy - r, cx + r, cy + r), fill=colour)
            continue
        n = {"square": 4, "triangle": 3, "diamond": 4}[kind]
        radii = (r, r * 0.6) if kind == "diamond" else (r,)  # a diamond: a rhombus, one diagonal shorter
        d.polygon(_vertices(cx, cy, radii, t0, n), fill=colour)
    return img


QUALITIES = ("sharp", "blurred", "pixelated", "speckled")


def _content(size: int, rng: random.Random) -> Image.Image:
    """Two to five filled ellipses and polygons of random colours, sizes, places and turns over a smooth gradient
    between two random colours in a random direction, with faint noise: the same kind of picture for every class."""
    a, b = _colours(rng)
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / size
    angle = rng.uniform(0, 2 * np.pi)
    t = ((x - 0.5) * np.cos(angle) + (y - 0.5) * np.sin(angle) + 0.75) / 1.5
    img = a * (1 - t[..., None]) + b * t[..., None] + _noise(size, rng) * 0.15
    out = Image.fromarray(img.clip(0, 255).astype(np.uint8))
    d = ImageDraw.Draw(out)
    for _ in range(rng.randint(2, 5)):
        r = rng.uniform(0.08, 0.25) * size
        cx, cy = rng.uniform(0, size), rng.uniform(0, size)
        colour = tuple(rng.randrange(0, 256) for _ in range(3))
        if rng.random() < 0.4:
            d.ellipse((cx - r, cy - r * rng.uniform(0.5, 1), cx + r, cy + r * rng.uniform(0.5, 1)), fill=colour)
        else:
            d.polygon(_vertices(cx, cy, (r,), rng.uniform(0, 2 * np.pi), rng.randint(3, 6)), fill=colour)
    return out


def draw_quality(name: str, size: int, rng: random.Random) -> Image.Image:
    """The class is the degradation: none (sharp), a Gaussian blur of radius 1-2.5 % of the image, pixelation into
    blocks of 5-12 % of the image (downscaled, then enlarged again without smoothing), or 4-12 % of the pixels
    replaced by black or white specks."""
    img = _content(size, rng)
    if name == "blurred":
        return img.filter(ImageFilter.GaussianBlur(rng.uniform(0.01, 0.025) * size))
    if name == "pixelated":
        blocks = max(2, round(size / (rng.uniform(0.05, 0.12) * size)))
        return img.resize((blocks, blocks), Image.Resampling.BOX).resize((size, size), Image.Resampling.NEAREST)
    if name == "speckled":
        arr = np.asarray(img).copy()
        g = np.random.default_rng(rng.randrange(2**32))
        hit = g.random((size, size)) < rng.uniform(0.04, 0.12)
        arr[hit] = np.where(g.random((int(hit.sum()), 1)) < 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(arr)
    return img


LAYOUTS = ("row", "column", "diagonal", "ring")


def _layout_points(name: str, n: int, size: int, rng: random.Random) -> list[tuple[float, float]]:
    """n centres of the arrangement, before its tilt: evenly spread along a line through the middle, or round a
    circle from a random start angle."""
    span = rng.uniform(0.5, 0.75) * size
    if name == "ring":
        t0 = rng.uniform(0, 2 * np.pi)
        return [
            (span / 2 * np.cos(t0 + 2 * np.pi * i / n), span / 2 * np.sin(t0 + 2 * np.pi * i / n)) for i in range(n)
        ]
    steps = [span * (i / (n - 1) - 0.5) for i in range(n)]
    if name == "row":
        return [(s, 0.0) for s in steps]
    if name == "column":
        return [(0.0, s) for s in steps]
    return [(s * 0.75, s * 0.75) for s in steps] if rng.random() < 0.5 else [(s * 0.75, -s * 0.75) for s in steps]


def draw_layout(name: str, size: int, rng: random.Random) -> Image.Image:
    """Four to six small filled shapes (radius 5-8 % of the image, each of a random kind and colour) placed as the
    class says, tilted ±12° as a whole, each moved by up to 2 % of the image, centred at a random place that keeps
    the arrangement inside the image, on noise."""
    img = Image.fromarray(_noise(size, rng).astype(np.uint8))
    d = ImageDraw.Draw(img)
    points = _layout_points(name, rng.randint(4, 6), size, rng)
    tilt = np.radians(rng.uniform(-12, 12))
    cos, sin = np.cos(tilt), np.sin(tilt)
    turned = [(x * cos - y * sin, x * sin + y * cos) for x, y in points]
    r_max = 0.08 * size
    lo_x, hi_x = min(x for x, _ in turned), max(x for x, _ in turned)
    lo_y, hi_y = min(y for _, y in turned), max(y for _, y in turned)
    margin = r_max + 0.02 * size + 1
    cx = rng.uniform(margin - lo_x, max(margin - lo_x, size - margin - hi_x))
    cy = rng.uniform(margin - lo_y, max(margin - lo_y, size - margin - hi_y))
    for x, y in turned:
        r = rng.uniform(0.05, 0.08) * size
        px, py = cx + x + rng.uniform(-0.02, 0.02) * size, cy + y + rng.uniform(-0.02, 0.02) * size
        colour = tuple(rng.randrange(140, 256) for _ in range(3))
        kind = rng.choice(COUNT_KINDS)
        if kind == "circle":
            d.ellipse((px - r, py - r, px + r, py + r), fill=colour)
        else:
            n = {"square": 4, "triangle": 3, "diamond": 4}[kind]
            radii = (r, r * 0.6) if kind == "diamond" else (r,)
            d.polygon(_vertices(px, py, radii, rng.uniform(0, 2 * np.pi), n), fill=colour)
    return img


@dataclass(frozen=True)
class Family:
    classes: tuple[str, ...]
    draw: Callable[[str, int, random.Random], Image.Image]
    seed: int
    held_out: bool


FAMILIES = {
    "shapes": Family(("circle", "square", "triangle", "cross"), draw_shape, 11, held_out=False),
    "textures": Family(("grating", "checker", "dotfield", "blobs"), draw_texture, 22, held_out=False),
    "colours": Family(tuple(HUES), draw_colour, 33, held_out=False),
    "glyphs": Family(GLYPHS, draw_glyph, 44, held_out=True),
    "scenes": Family(SCENES, draw_scene, 55, held_out=False),
    "counts": Family(COUNTS, draw_count, 66, held_out=False),
    "quality": Family(QUALITIES, draw_quality, 77, held_out=True),
    "layouts": Family(LAYOUTS, draw_layout, 88, held_out=True),
}

SOURCE_SHAPES = ("ring", "bar", "diamond", "dots")
SOURCE_POLYGONS = ("pentagon", "hexagon", "star", "ellipse")
SOURCE_PATTERNS = ("concentric", "spokes", "zigzag", "grid")


def _draw_source(cls: str, size: int, rng: random.Random) -> Image.Image:
    draw = draw_shape if cls in SOURCE_SHAPES else draw_polygon if cls in SOURCE_POLYGONS else draw_texture
    return draw(cls, size, rng)


SOURCE = Family(SOURCE_SHAPES + SOURCE_POLYGONS + SOURCE_PATTERNS, _draw_source, 100, False)


def write_split(family: Family, out: Path, counts: dict[str, int], rng: random.Random, size: int = SIZE) -> None:
    for cls, n in counts.items():
        folder = out / cls
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(n):
            family.draw(cls, size, rng).save(folder / f"{cls}_{i:04d}.png")
