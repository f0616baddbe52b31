"""Drawing one synthetic pedestrian with PIL ImageDraw: body, clothing, accessories, hair, then the scene; and the
exact label map of what was drawn (each primitive paints its fine part label where it paints its colour)."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
from PIL import Image, ImageChops, ImageDraw

from reid.data.parts import LABEL
from reid.data.synth import vocab
from reid.data.synth.attributes import Identity, Nuisance, Outfit
from reid.data.synth.body import Body, Limb, layout_body
from reid.data.synth.scene import apply_light, draw_background

RGB = tuple[int, int, int]
SUPERSAMPLE = 2
LONG_SLEEVES = ("shirt", "jacket", "sweater", "coat")


def shade(rgb: RGB, factor: float) -> RGB:
    """``rgb`` darkened (factor < 1) or lightened (factor > 1), clipped to 0..255."""
    return tuple(max(0, min(255, round(c * factor))) for c in rgb)  # type: ignore[return-value]


def pattern_colour(rgb: RGB) -> RGB:
    """White stripes or checks on dark garments, black on light ones."""
    luminance = 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2]
    return vocab.COLOURS["white"] if luminance < 140 else vocab.COLOURS["black"]


class Pen:
    """ImageDraw calls on the RGB canvas, repeated on a label canvas with the current part's label as the fill.

    Later primitives overwrite earlier ones on both canvases alike, so the label map holds, per pixel, the part
    whose colour is visible there. ``labels=None`` draws the RGB canvas only.
    """

    def __init__(self, rgb: ImageDraw.ImageDraw, labels: ImageDraw.ImageDraw | None) -> None:
        self.rgb, self.labels, self.label = rgb, labels, 0

    @contextmanager
    def part(self, name: str) -> Iterator[None]:
        """Draw what follows as fine label ``name`` (:data:`reid.data.parts.FINE_LABELS`)."""
        previous, self.label = self.label, LABEL[name]
        try:
            yield
        finally:
            self.label = previous

    def __getattr__(self, name: str) -> Callable[..., None]:
        paint = getattr(self.rgb, name)
        if self.labels is None:
            return paint
        mark = getattr(self.labels, name)

        def both(*args: Any, **kwargs: Any) -> None:
            paint(*args, **kwargs)
            mark(*args, **{k: (self.label if k in ("fill", "outline") and v is not None else v)
                           for k, v in kwargs.items()})

        return both


def render_person(identity: Identity, outfit: Outfit, nuisance: Nuisance, size: tuple[int, int]) -> Image.Image:
    """An RGB image of ``size = (H, W)`` showing the person in the outfit, pose, scene and light given."""
    return render_person_with_labels(identity, outfit, nuisance, size, labels=False)[0]


def render_person_with_labels(identity: Identity, outfit: Outfit, nuisance: Nuisance, size: tuple[int, int],
                              labels: bool = True) -> tuple[Image.Image, np.ndarray | None]:
    """:func:`render_person` and its label map ``uint8 [H, W]`` (None without ``labels``).

    A pixel's label is the most common fine label of the ``SUPERSAMPLE x SUPERSAMPLE`` canvas pixels it
    averages (the lowest label on a tie), so a label always names a part drawn inside that pixel.
    """
    canvas, label_canvas = draw_canvas(identity, outfit, nuisance, size, labels)
    height, width = size
    image = canvas.resize((width, height), Image.Resampling.BOX)
    image = apply_light(image, nuisance.brightness, nuisance.contrast)
    if label_canvas is None:
        return image, None
    return image, downsample_labels(np.asarray(label_canvas, dtype=np.uint8), SUPERSAMPLE)


def draw_canvas(identity: Identity, outfit: Outfit, nuisance: Nuisance, size: tuple[int, int],
                labels: bool = True) -> tuple[Image.Image, Image.Image | None]:
    """The supersampled RGB canvas (before resizing and light) and its label canvas (mode ``L``)."""
    height, width = size
    canvas_size = (width * SUPERSAMPLE, height * SUPERSAMPLE)
    canvas = Image.new("RGB", canvas_size)
    label_canvas = Image.new("L", canvas_size, 0) if labels else None
    draw_background(ImageDraw.Draw(canvas), nuisance, canvas_size)
    pen = Pen(ImageDraw.Draw(canvas), ImageDraw.Draw(label_canvas) if label_canvas is not None else None)
    body = layout_body(identity, nuisance, canvas_size)
    _draw_figure(canvas, pen, body, identity, outfit)
    return canvas, label_canvas


def downsample_labels(labels: np.ndarray, factor: int) -> np.ndarray:
    """``uint8 [H f, W f] -> [H, W]``: the most common label of each ``f x f`` block (lowest on a tie)."""
    h, w = labels.shape[0] // factor, labels.shape[1] // factor
    blocks = labels[: h * factor, : w * factor].reshape(h, factor, w, factor).transpose(0, 2, 1, 3).reshape(h, w, -1)
    counts = np.stack([(blocks == value).sum(-1) for value in range(len(LABEL))], axis=-1)
    return counts.argmax(-1).astype(np.uint8)


def _draw_figure(canvas: Image.Image, draw: Pen, body: Body, identity: Identity, outfit: Outfit) -> None:
    skin, hair = identity.skin_rgb, identity.hair_rgb
    upper = vocab.COLOURS[outfit.upper_colour]
    side, back = body.direction != 0, body.facing == "back"
    if side:
        _draw_arm(draw, body.arms[0], skin, shade(upper, 0.8), outfit.upper_type)
    if outfit.bag == "backpack" and side:
        with draw.part("bag"):
            _draw_backpack(draw, body, outfit)
    if identity.hair_style in ("long", "ponytail") and not back:
        with draw.part("hair"):
            _draw_hair_behind(draw, body, hair, identity.hair_style)
    _draw_lower(draw, body, skin, outfit)
    with draw.part("clothes"):
        _draw_upper(canvas, draw, body, outfit)
    if outfit.bag == "backpack" and not side:
        with draw.part("bag"):
            _draw_backpack(draw, body, outfit)
    for arm in body.arms[1:] if side else body.arms:
        _draw_arm(draw, arm, skin, upper, outfit.upper_type)
    if outfit.bag == "handbag":
        with draw.part("bag"):
            _draw_handbag(draw, body, outfit)
    _draw_head(draw, body, identity)
    if outfit.hat != "none":
        with draw.part("hat"):
            _draw_hat(draw, body, outfit)


def _line(draw: Pen, limb: Limb, start: float, stop: float, colour: RGB) -> None:
    draw.line([limb.point(start), limb.joint if start < 0.5 < stop else limb.point(start), limb.point(stop)],
              fill=colour, width=limb.width, joint="curve")
    for t in (start, stop):
        x, y = limb.point(t)
        r = limb.width / 2
        draw.ellipse((x - r, y - r, x + r, y + r), fill=colour)


def _draw_lower(draw: Pen, body: Body, skin: RGB, outfit: Outfit) -> None:
    colour = vocab.COLOURS[outfit.lower_colour]
    shoes = vocab.COLOURS[outfit.shoes_colour]
    cover = {"trousers": 0.97, "shorts": 0.5, "skirt": 0.0}[outfit.lower_type]
    for leg in body.legs:
        with draw.part("legs"):
            _line(draw, leg, 0.0, 1.0, skin)
        if cover:
            with draw.part("pants"):
                _line(draw, leg, 0.0, cover, colour)
        fx, fy = leg.end
        length, tall = 0.1 * body.person_height, 0.035 * body.person_height
        fx += body.direction * length * 0.3
        with draw.part("shoes"):
            draw.ellipse((fx - length / 2, fy - tall / 2, fx + length / 2, fy + tall / 2), fill=shoes)
    cx, hw = body.centre_x, body.hip_half
    if outfit.lower_type == "skirt":
        hem = body.y(0.73)
        with draw.part("skirt"):
            draw.polygon([(cx - hw, body.hip_y - 2), (cx + hw, body.hip_y - 2), (cx + hw * 1.5, hem),
                          (cx - hw * 1.5, hem)], fill=colour)
    else:
        with draw.part("pants"):
            draw.rectangle((cx - hw, body.hip_y - 2, cx + hw, body.y(0.6)), fill=colour)


def _torso_outline(body: Body, outfit: Outfit) -> list[tuple[float, float]]:
    if outfit.upper_type != "coat":
        return body.torso
    cx, hem = body.centre_x, body.y(0.65)
    a, b = body.torso[:2]
    return [a, b, (cx + body.hip_half * 1.25, hem), (cx - body.hip_half * 1.25, hem)]


def _draw_upper(canvas: Image.Image, draw: Pen, body: Body, outfit: Outfit) -> None:
    colour = vocab.COLOURS[outfit.upper_colour]
    outline = _torso_outline(body, outfit)
    draw.polygon(outline, fill=colour)
    if outfit.upper_pattern != "plain":
        _draw_pattern(canvas, outline, outfit.upper_pattern, pattern_colour(colour), body.person_height)
    cx, top, bottom = body.centre_x, body.shoulder_y, outline[2][1]
    dark = shade(colour, 0.6)
    width = max(1, round(0.012 * body.person_height))
    if outfit.upper_type == "jacket" and body.facing == "front":
        draw.line((cx, top, cx, bottom), fill=dark, width=width)
    elif outfit.upper_type == "shirt" and body.facing != "back":
        collar = 0.05 * body.person_height
        draw.polygon([(cx - collar, top), (cx, top + collar), (cx + collar, top)], fill=shade(colour, 1.35))
    elif outfit.upper_type == "sweater":
        band = 0.025 * body.person_height
        left, right = outline[3][0], outline[2][0]
        draw.rectangle((left, bottom - band, right, bottom), fill=dark)
    elif outfit.upper_type == "coat" and body.facing == "front":
        for i in range(3):
            y = top + (bottom - top) * (0.2 + 0.25 * i)
            draw.ellipse((cx - width, y - width, cx + width, y + width), fill=dark)


def _draw_pattern(canvas: Image.Image, outline: list[tuple[float, float]], pattern: str, colour: RGB,
                  ph: float) -> None:
    mask = Image.new("L", canvas.size, 0)
    lines = Image.new("L", canvas.size, 0)
    ImageDraw.Draw(mask).polygon(outline, fill=255)
    pen = ImageDraw.Draw(lines)
    step = 0.05 * ph if pattern == "stripes" else 0.065 * ph
    thick = max(1, round(step * (0.45 if pattern == "stripes" else 0.22)))
    y0, y1 = outline[0][1], outline[2][1]
    x0, x1 = min(p[0] for p in outline), max(p[0] for p in outline)
    y = y0 + step / 2
    while y < y1:
        pen.line((x0, y, x1, y), fill=255, width=thick)
        y += step
    if pattern == "checks":
        x = x0 + step / 2
        while x < x1:
            pen.line((x, y0, x, y1), fill=255, width=thick)
            x += step
    canvas.paste(colour, mask=ImageChops.multiply(mask, lines))


def _draw_arm(draw: Pen, arm: Limb, skin: RGB, sleeve: RGB, upper_type: str) -> None:
    with draw.part("body"):
        _line(draw, arm, 0.0, 1.0, skin)
    with draw.part("clothes"):
        _line(draw, arm, 0.0, 0.9 if upper_type in LONG_SLEEVES else 0.38, sleeve)
    x, y = arm.end
    r = arm.width * 0.6
    with draw.part("body"):
        draw.ellipse((x - r, y - r, x + r, y + r), fill=skin)


def _draw_backpack(draw: Pen, body: Body, outfit: Outfit) -> None:
    colour = vocab.COLOURS[outfit.bag_colour or "black"]
    ph, cx, sw = body.person_height, body.centre_x, body.shoulder_half
    top, bottom = body.shoulder_y + 0.02 * ph, body.shoulder_y + 0.27 * ph
    strap = max(1, round(0.022 * ph))
    if body.direction:
        back = cx - body.direction * sw
        x0, x1 = sorted((back, back - body.direction * 0.11 * ph))
        draw.rounded_rectangle((x0, top, x1, bottom), radius=0.02 * ph, fill=colour)
    elif body.facing == "back":
        draw.rounded_rectangle((cx - sw * 0.72, top, cx + sw * 0.72, bottom), radius=0.02 * ph, fill=colour,
                               outline=shade(colour, 0.6), width=strap)
    else:
        for s in (-1, 1):
            draw.line((cx + s * sw * 0.55, body.shoulder_y, cx + s * sw * 0.62, bottom), fill=colour, width=strap)


def _draw_handbag(draw: Pen, body: Body, outfit: Outfit) -> None:
    colour = vocab.COLOURS[outfit.bag_colour or "black"]
    ph = body.person_height
    side = body.direction or 1
    x = body.centre_x + side * (body.hip_half + 0.035 * ph)
    y = body.hip_y - 0.02 * ph
    w, h = 0.06 * ph, 0.08 * ph
    strap_from = (body.centre_x - side * body.shoulder_half * 0.7, body.shoulder_y)
    draw.line([strap_from, (x, y)], fill=shade(colour, 0.7), width=max(1, round(0.012 * ph)))
    draw.rounded_rectangle((x - w, y, x + w, y + h), radius=0.015 * ph, fill=colour)


def _draw_hair_behind(draw: Pen, body: Body, hair: RGB, style: str) -> None:
    (hx, hy), r = body.head, body.head_radius
    if style == "long":
        draw.rounded_rectangle((hx - 1.2 * r, hy - 0.5 * r, hx + 1.2 * r, body.shoulder_y + 0.1 * body.person_height),
                               radius=0.5 * r, fill=hair)
    else:
        tx = hx - (body.direction or 1) * 0.95 * r
        draw.ellipse((tx - 0.45 * r, hy - 0.2 * r, tx + 0.45 * r, hy + 1.9 * r), fill=hair)


def _draw_head(draw: Pen, body: Body, identity: Identity) -> None:
    (hx, hy), r = body.head, body.head_radius
    skin = identity.skin_rgb
    neck = 0.45 * r
    with draw.part("body"):
        draw.rectangle((body.centre_x - neck, hy, body.centre_x + neck, body.shoulder_y + 1), fill=skin)
    with draw.part("face"):
        draw.ellipse((hx - r, hy - r, hx + r, hy + r), fill=skin)
    with draw.part("hair"):
        _draw_hair(draw, body, identity)
    if body.facing != "back":
        with draw.part("face"):
            _draw_face(draw, body)


def _draw_hair(draw: Pen, body: Body, identity: Identity) -> None:
    (hx, hy), r, ph = body.head, body.head_radius, body.person_height
    hair, style = identity.hair_rgb, identity.hair_style
    back = body.facing == "back"
    if style != "bald":
        cap = (hx - 1.1 * r, hy - 1.18 * r, hx + 1.1 * r, hy + 1.02 * r)
        if back:
            draw.ellipse(cap, fill=hair)
            if style == "long":
                draw.rounded_rectangle((hx - 1.2 * r, hy, hx + 1.2 * r, body.shoulder_y + 0.12 * ph),
                                       radius=0.5 * r, fill=hair)
            elif style == "ponytail":
                draw.ellipse((hx - 0.45 * r, hy + 0.5 * r, hx + 0.45 * r, hy + 2.4 * r), fill=hair)
        else:
            draw.chord(cap, 180, 360, fill=hair)
            if body.direction:
                draw.pieslice(cap, 180 if body.direction > 0 else 270, 270 if body.direction > 0 else 360,
                              fill=hair)
                draw.pieslice(cap, 90 if body.direction > 0 else 0, 180 if body.direction > 0 else 90, fill=hair)
        if style == "curly":
            for i in range(9):
                a = 160 + i * 27.5
                cx_, cy_ = hx + 1.0 * r * math.cos(math.radians(a)), hy + 1.0 * r * math.sin(math.radians(a))
                draw.ellipse((cx_ - 0.36 * r, cy_ - 0.36 * r, cx_ + 0.36 * r, cy_ + 0.36 * r), fill=hair)
        elif style == "bun":
            draw.ellipse((hx - 0.5 * r, hy - 1.75 * r, hx + 0.5 * r, hy - 0.8 * r), fill=hair)


def _draw_face(draw: Pen, body: Body) -> None:
    (hx, hy), r = body.head, body.head_radius
    eye = max(1.0, 0.13 * r)
    dark = (30, 24, 20)
    xs = [hx + body.direction * 0.55 * r] if body.direction else [hx - 0.38 * r, hx + 0.38 * r]
    for x in xs:
        draw.ellipse((x - eye, hy - eye + 0.1 * r, x + eye, hy + eye + 0.1 * r), fill=dark)


def _draw_hat(draw: Pen, body: Body, outfit: Outfit) -> None:
    (hx, hy), r = body.head, body.head_radius
    colour = vocab.COLOURS[outfit.hat_colour or "black"]
    if outfit.hat == "cap":
        draw.chord((hx - 1.12 * r, hy - 1.25 * r, hx + 1.12 * r, hy + 0.5 * r), 180, 360, fill=colour)
        if body.direction:
            x0, x1 = sorted((hx, hx + body.direction * 1.9 * r))
            draw.rectangle((x0, hy - 0.5 * r, x1, hy - 0.32 * r), fill=shade(colour, 0.75))
        elif body.facing == "front":
            draw.ellipse((hx - 1.2 * r, hy - 0.55 * r, hx + 1.2 * r, hy - 0.25 * r), fill=shade(colour, 0.75))
    else:
        draw.rounded_rectangle((hx - 1.1 * r, hy - 1.3 * r, hx + 1.1 * r, hy - 0.2 * r), radius=0.5 * r,
                               fill=colour)
        draw.rectangle((hx - 1.1 * r, hy - 0.45 * r, hx + 1.1 * r, hy - 0.2 * r), fill=shade(colour, 0.75))
