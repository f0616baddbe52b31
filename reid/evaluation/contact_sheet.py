"""The search contact sheet: the query text on top, then ranked thumbnails framed by correctness.

Layout in pixels, with ``PAD``, ``BORDER``, ``LINE_HEIGHT``, ``LABEL_HEIGHT`` below, ``n`` thumbnails of
``(th, tw)`` in ``columns`` columns and ``rows = ceil(n / columns)``:

    width  = max(MIN_WIDTH, columns * (tw + 2 * BORDER) + (columns + 1) * PAD)
    height = PAD + lines * LINE_HEIGHT + rows * (th + 2 * BORDER + LABEL_HEIGHT + PAD) + PAD

where ``lines`` (1 to ``MAX_LINES``) is the number of lines the query wraps to.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from reid.storage import resolve, write_bytes
from reid.storage.config import StorageConfig

PAD = 8
BORDER = 4
LINE_HEIGHT = 16
LABEL_HEIGHT = 30  # two lines: rank and score, person id
MIN_WIDTH = 320
MAX_LINES = 3
FONT_SIZE = 12
CORRECT = (0, 170, 0)
WRONG = (220, 0, 0)
UNKNOWN = (150, 150, 150)
BACKGROUND = (255, 255, 255)
TEXT = (0, 0, 0)


def render_contact_sheet(
    query: str,
    thumbnails: Sequence[np.ndarray],
    labels: Sequence[str],
    correct: Sequence[bool | None],
    thumb_size: tuple[int, int] = (128, 64),
    columns: int | None = None,
) -> Image.Image:
    """The sheet as an RGB image. ``thumbnails[i]`` is uint8 ``[3, th, tw]`` (``thumb_size = (th, tw)``);
    ``labels[i]`` is written under it (up to two lines); ``correct[i]`` True/False draws a green/red frame,
    None a grey one."""
    n = len(thumbnails)
    if not (n == len(labels) == len(correct)) or n == 0:
        raise ValueError(f"need as many labels ({len(labels)}) and flags ({len(correct)}) as thumbnails "
                         f"({n}), at least one")
    th, tw = thumb_size
    columns = min(columns or n, n)
    rows = math.ceil(n / columns)
    font = ImageFont.load_default(size=FONT_SIZE)
    width = max(MIN_WIDTH, columns * (tw + 2 * BORDER) + (columns + 1) * PAD)
    lines = wrap_text(query, font, width - 2 * PAD)
    header = PAD + len(lines) * LINE_HEIGHT
    height = header + rows * (th + 2 * BORDER + LABEL_HEIGHT + PAD) + PAD
    sheet = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    for i, line in enumerate(lines):
        draw.text((PAD, PAD + i * LINE_HEIGHT), line, fill=TEXT, font=font)
    for i, (thumb, label, flag) in enumerate(zip(thumbnails, labels, correct, strict=True)):
        if thumb.shape != (3, th, tw) or thumb.dtype != np.uint8:
            raise ValueError(f"thumbnail {i} must be uint8 [3, {th}, {tw}], got {thumb.dtype} {thumb.shape}")
        x = PAD + (i % columns) * (tw + 2 * BORDER + PAD)
        y = header + PAD + (i // columns) * (th + 2 * BORDER + LABEL_HEIGHT + PAD)
        colour = UNKNOWN if flag is None else (CORRECT if flag else WRONG)
        draw.rectangle((x, y, x + tw + 2 * BORDER - 1, y + th + 2 * BORDER - 1), fill=colour)
        sheet.paste(Image.fromarray(thumb.transpose(1, 2, 0)), (x + BORDER, y + BORDER))
        draw.multiline_text((x, y + th + 2 * BORDER + 1), label, fill=TEXT, font=font, spacing=2)
    return sheet


def save_png(image: Image.Image, uri: str, storage: StorageConfig | None = None) -> None:
    """Write ``image`` as PNG to a local path or URI."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    write_bytes(resolve(uri, storage), buffer.getvalue())


def wrap_text(text: str, font: ImageFont.ImageFont | ImageFont.FreeTypeFont, width: int) -> list[str]:
    """Greedy word wrap of ``text`` to ``width`` pixels, at most :data:`MAX_LINES` lines ("..." if cut)."""
    lines: list[str] = []
    current = ""
    for word in text.split():
        candidate = f"{current} {word}".strip()
        if current and font.getlength(candidate) > width:
            lines.append(current)
            current = word
        else:
            current = candidate
    lines.append(current)
    if len(lines) > MAX_LINES:
        lines = lines[:MAX_LINES]
        lines[-1] = lines[-1] + " ..."
    return lines
