"""Pictures of a prediction, as the demo writes them and the page shows
them: light class colours, the prediction blended over the photo with each
region outlined, and a legend of the classes present with their shares."""
from typing import List, Sequence, Tuple

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

WHITE, BLACK = (255, 255, 255), (0, 0, 0)


def class_palette(num_classes: int) -> np.ndarray:
    """(K, 3) uint8 light, distinct colours: hues a golden angle apart at
    high value and medium saturation, so that a class blended over a photo
    lightens it instead of darkening it (the regions get outlines in the
    same colours, see ``draw_overlay``); colours that round to the same
    bytes are nudged apart, so every class has its own."""
    k = np.arange(num_classes)
    hue = (k * 0.618033988749895) % 1.0 * 6
    saturation = np.array([0.35, 0.5, 0.65])[k % 3]
    value = np.array([0.98, 0.92])[k % 2]
    # HSV -> RGB (colorsys's formula, vectorised)
    sector, frac = np.floor(hue).astype(int) % 6, hue - np.floor(hue)
    p, q = value * (1 - saturation), value * (1 - saturation * frac)
    t = value * (1 - saturation * (1 - frac))
    rgb = np.choose(sector[None], [
        np.stack(c) for c in ((value, t, p), (q, value, p), (p, value, t),
                              (p, q, value), (t, p, value), (value, p, q))
    ]).T
    palette = np.round(rgb * 255).astype(int)
    seen = set()
    for row in palette:
        while tuple(row) in seen:
            row[2] = (row[2] + 7) % 256
        seen.add(tuple(row))
    return palette.astype(np.uint8)


def region_edges(label: np.ndarray, width: int = 1) -> np.ndarray:
    """(H, W) bool: pixels whose right or lower neighbour (``width`` pixels
    thick) has another label."""
    edges = np.zeros(label.shape, dtype=bool)
    edges[:, :-1] |= label[:, 1:] != label[:, :-1]
    edges[:-1] |= label[1:] != label[:-1]
    if width > 1:
        edges = cv2.dilate(
            edges.astype(np.uint8), np.ones((width, width),
                                            np.uint8)).astype(bool)
    return edges


def legend_font(image_height: int):
    """PIL's default font, ~14 px (larger on large images); the bitmap
    default on Pillow without a scalable default font."""
    size = max(14, round(image_height / 40))
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError, ImportError):
        return ImageFont.load_default()


def blend_labels(image: np.ndarray,
                 label: np.ndarray,
                 palette: np.ndarray,
                 opacity: float,
                 ignore_index: int = None) -> np.ndarray:
    """(H, W, 3) uint8: the image with each class's colour blended in and
    each region outlined in its colour (so it reads over any photo);
    pixels labelled ``ignore_index`` keep the photo, greyed."""
    height, width = label.shape
    ignored = None if ignore_index is None else label == ignore_index
    if ignored is not None and ignored.any():
        label = np.where(ignored, 0, label)
    # uint8 blending (rounded, saturated): a float copy of a 48-megapixel
    # photo would cost 0.6 GB a channel-stack
    colours = palette[label]
    blended = cv2.addWeighted(
        np.ascontiguousarray(image), 1 - opacity, colours, opacity, 0)
    edges = region_edges(label, max(1, round(min(height, width) / 300)))
    blended[edges] = colours[edges]
    if ignored is not None and ignored.any():
        grey = image[ignored].mean(axis=-1, keepdims=True) * 0.6
        blended[ignored] = grey.astype(np.uint8)
    return blended


def draw_overlay(image: np.ndarray, label: np.ndarray, palette: np.ndarray,
                 rows, opacity: float) -> Image.Image:
    """The image with the prediction blended in, and on its right a legend
    panel: one row (swatch, name, share) per class present."""
    height, width = label.shape
    blended = Image.fromarray(blend_labels(image, label, palette, opacity))
    font = legend_font(height)
    measure = ImageDraw.Draw(Image.new('RGB', (1, 1)))
    box = measure.textbbox((0, 0), 'Hg', font=font)
    line = box[3] - box[1]
    pad, swatch, step = line, line + 4, line + 12
    header = f'{len(rows)} of {len(palette)} classes'
    texts = [f'{name}  {share_text(share)}' for _, name, share in rows]
    text_width = max(
        measure.textlength(t, font=font) for t in texts + [header])
    legend_w = int(pad + swatch + pad // 2 + text_width + pad)
    legend_h = int(pad + step * (len(rows) + 1) + pad)
    canvas = Image.new('RGB', (width + legend_w, max(height, legend_h)), WHITE)
    canvas.paste(blended, (0, 0))
    draw = ImageDraw.Draw(canvas)
    x, y = width + pad, pad
    draw.text((x, y), header, fill=BLACK, font=font)
    for (k, _, _), text in zip(rows, texts):
        y += step
        draw.rectangle([x, y, x + swatch - 1, y + swatch - 1],
                       fill=tuple(int(c) for c in palette[k]),
                       outline=BLACK)
        draw.text((x + swatch + pad // 2, y + 2), text, fill=BLACK, font=font)
    return canvas


def share_text(share: float) -> str:
    return '<0.1%' if share < 0.05 else f'{share:.1f}%'


def class_records(classes, palette) -> list:
    """The classes as the JSON and the page show them."""
    return [
        dict(
            index=k,
            name=synonyms[0],
            synonyms=list(synonyms),
            color=palette[k].tolist()) for k, synonyms in enumerate(classes)
    ]


def present_rows(label: np.ndarray, names: Sequence[str],
                 num_classes: int) -> Tuple[np.ndarray, List[tuple]]:
    """Pixel counts per class, and a legend row ``(index, name, share in
    %)`` per class present, largest first."""
    counts = np.bincount(label.ravel(), minlength=num_classes)
    total = int(counts.sum())
    present = sorted(np.flatnonzero(counts), key=lambda k: (-counts[k], k))
    return counts, [(int(k), names[k], 100.0 * counts[k] / total)
                    for k in present]
