"""Comparison pictures. From the label PNGs ``SavePredictionsHook`` writes
(``tools/test.py --save-predictions``): the images the configs disagree on
most, each config's per-class IoU, qualitative grids (image | ground truth |
each config's prediction, one palette and one legend) and a per-class IoU
chart of each config against the first (``tools/compare.py --figures``).
For one's own images (``tools/demo.py --compare``) and the page: the
outline of the pixels whose class changed between two predictions."""
import json
import math
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np
from PIL import Image

from .optional import require
from .visualization import blend_labels, class_palette, region_edges

PANEL_PX = 320  # width of one panel of a grid, in pixels
DPI = 100
TITLE_PX = 44  # two lines of title above the panels
LEGEND_ROW_PX = 22
MAX_LEGEND = 30  # legend entries of a grid, largest classes first
MAX_CHART_CLASSES = 40  # bars of the chart, largest changes first
# the outline of changed pixels: pure magenta, which the light palette
# (saturation <= 0.85) and a photo blended with it never produce
CHANGED_COLOUR = (255, 0, 255)


def read_label(path) -> np.ndarray:
    """A label PNG as written (uint8 or uint16)."""
    label = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if label is None:
        raise FileNotFoundError(f'{path}: no label PNG there')
    return label


def read_index(folder) -> dict:
    """``<folder>/index.json`` of a ``--save-predictions`` folder."""
    path = Path(folder) / 'index.json'
    if not path.is_file():
        raise FileNotFoundError(f'{path} is missing: run tools/test.py with '
                                f'--save-predictions {folder}')
    return json.loads(path.read_text())


def changed_outline(before: np.ndarray, after: np.ndarray) -> np.ndarray:
    """(H, W) bool: the outline of the pixels whose class differs between
    two predictions, thickened on large images as region outlines are."""
    changed = (before != after).astype(np.uint8)
    return region_edges(changed, max(1, round(min(changed.shape) / 300)))


def mark_changed(picture: np.ndarray, outline: np.ndarray) -> np.ndarray:
    """A copy of an RGB ``picture`` (its top-left part the size of
    ``outline``) with the outline drawn in ``CHANGED_COLOUR``."""
    out = np.array(picture, copy=True)
    height, width = outline.shape
    out[:height, :width][outline] = CHANGED_COLOUR
    return out


def scan_predictions(folders: Sequence, progress: bool = False) -> Dict:
    """One pass over the images every folder holds. ``scores``: per image,
    the mean share of its labelled pixels where another config's prediction
    differs from the first config's (with one config: where it differs from
    the ground truth). ``iou``: (configs, classes) per-class IoU computed as
    mmseg's IoUMetric does (NaN where a class is in neither prediction nor
    ground truth), ``label_area``: ground-truth pixels per class."""
    indexes = [read_index(folder) for folder in folders]
    classes = [str(name).strip() for name in indexes[0]['classes']]
    ignore_index = indexes[0]['ignore_index']
    images = {i['name']: i['image'] for i in indexes[0]['images']}
    names = sorted(
        set(images).intersection(*({i['name']
                                    for i in index['images']}
                                   for index in indexes[1:])))
    num = len(classes)
    intersect = np.zeros((len(folders), num))
    pred_area = np.zeros((len(folders), num))
    label_area = np.zeros(num)
    scores = {}
    bar = _progress_bar(len(names)) if progress else None
    for name in names:
        gt = read_label(Path(folders[0]) / 'gt' / f'{name}.png')
        valid = gt != ignore_index
        label = gt[valid].astype(np.int64)
        label_area += np.bincount(label, minlength=num)[:num]
        preds = [
            read_label(Path(folder) / 'pred' / f'{name}.png')[valid].astype(
                np.int64) for folder in folders
        ]
        for k, pred in enumerate(preds):
            intersect[k] += np.bincount(
                pred[pred == label], minlength=num)[:num]
            pred_area[k] += np.bincount(pred, minlength=num)[:num]
        others = preds[1:] or [label]
        scores[name] = float(
            np.mean([np.mean(pred != preds[0])
                     for pred in others])) if label.size else 0.0
        if bar is not None:
            bar.update()
    union = pred_area + label_area - intersect
    with np.errstate(invalid='ignore', divide='ignore'):
        iou = intersect / union
    return dict(
        classes=classes,
        ignore_index=ignore_index,
        images=images,
        scores=scores,
        iou=iou,
        label_area=label_area)


def _progress_bar(total: int):
    import sys

    from mmengine.utils import ProgressBar
    return ProgressBar(total, file=sys.stderr)


def choose_images(scores: Dict[str, float], count: int) -> List[str]:
    """The ``count`` images with the largest scores (ties: by name)."""
    return sorted(scores, key=lambda name: (-scores[name], name))[:count]


def legend_entries(labels: Sequence[np.ndarray], num_classes: int,
                   ignore_index: Optional[int]) -> Tuple[List[int], int]:
    """Classes in any of ``labels``, largest total area first, at most
    ``MAX_LEGEND`` of them; and how many more there are."""
    area = np.zeros(num_classes)
    for label in labels:
        values = label[label != ignore_index] if ignore_index is not None \
            else label
        area += np.bincount(
            values.ravel(), minlength=num_classes)[:num_classes]
    present = sorted(np.flatnonzero(area), key=lambda k: (-area[k], k))
    return [int(k)
            for k in present[:MAX_LEGEND]], max(0,
                                                len(present) - MAX_LEGEND)


def draw_grid(image: np.ndarray,
              panels: Sequence[Tuple[str, np.ndarray]],
              classes: Sequence[str],
              path,
              ignore_index: Optional[int] = None,
              outline: Optional[np.ndarray] = None,
              opacity: float = 0.5) -> Tuple[int, int]:
    """One row: the image, then each (title, label) panel blended over it in
    the shared palette (``class_palette(len(classes))``), ``outline`` (the
    changed pixels) drawn on the last panel; under the row, one legend of
    the classes shown. Each panel is ``PANEL_PX`` wide; the PNG's size."""
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch
    palette = class_palette(len(classes))
    height, width = image.shape[:2]
    panel_h = max(1, round(PANEL_PX * height / width))
    cols = 1 + len(panels)
    shown, more = legend_entries([label for _, label in panels], len(classes),
                                 ignore_index)
    per_row = max(1, cols * PANEL_PX // 160)
    rows = math.ceil((len(shown) + (1 if more else 0)) / per_row)
    legend_px = LEGEND_ROW_PX * max(1, rows) + 12
    size = (cols * PANEL_PX, TITLE_PX + panel_h + legend_px)
    figure = Figure(figsize=(size[0] / DPI, size[1] / DPI), dpi=DPI)
    pictures = [('image', image)]
    for k, (title, label) in enumerate(panels):
        picture = blend_labels(image, label, palette, opacity, ignore_index)
        if outline is not None and k == len(panels) - 1:
            picture = mark_changed(picture, outline)
        pictures.append((title, picture))
    for col, (title, picture) in enumerate(pictures):
        axes = figure.add_axes(
            (col / cols, legend_px / size[1], 1 / cols, panel_h / size[1]))
        small = Image.fromarray(picture).resize((PANEL_PX, panel_h),
                                                Image.BILINEAR)
        axes.imshow(np.asarray(small), interpolation='none')
        axes.set_axis_off()
        axes.set_title(title, fontsize=9)
    handles = [
        Patch(facecolor=palette[k] / 255, edgecolor='black') for k in shown
    ]
    labels = [classes[k] for k in shown]
    if more:
        handles.append(Patch(facecolor='white', edgecolor='white'))
        labels.append(f'+{more} more')
    if handles:
        figure.legend(
            handles,
            labels,
            loc='lower center',
            ncol=per_row,
            fontsize=8,
            frameon=False)
    figure.savefig(str(path), dpi=DPI)
    return size


def pixel_accuracy(pred: np.ndarray, gt: np.ndarray, ignore_index) -> float:
    valid = gt != ignore_index
    return 100.0 * float(np.mean(pred[valid] == gt[valid])) \
        if valid.any() else float('nan')


def chart_rows(iou: np.ndarray, label_area: np.ndarray) -> np.ndarray:
    """The classes the chart shows: those in the ground truth, at most
    ``MAX_CHART_CLASSES`` with the largest change (one config: the largest
    IoU), ordered by the mean change (IoU)."""
    present = np.flatnonzero(label_area > 0)
    values = iou[1:, present] - iou[0, present] if len(iou) > 1 \
        else iou[:1, present]
    strength = np.abs(values).max(axis=0)
    keep = np.argsort(-strength, kind='stable')[:MAX_CHART_CLASSES]
    keep = keep[np.argsort(values[:, keep].mean(axis=0), kind='stable')]
    return present[keep]


def draw_iou_chart(iou: np.ndarray, label_area: np.ndarray,
                   classes: Sequence[str], titles: Sequence[str],
                   stem) -> List[str]:
    """Horizontal bars per class: each config's IoU minus the first's, in
    points (one config: its IoU), as ``<stem>.png`` and ``<stem>.svg`` (text
    kept as text); the two paths."""
    matplotlib = require('matplotlib', 'the per-class IoU chart')
    from matplotlib.figure import Figure
    rows = chart_rows(iou, label_area)
    values = 100 * (
        iou[1:, rows] - iou[0, rows] if len(iou) > 1 else iou[:1, rows])
    series = titles[1:] if len(titles) > 1 else titles[:1]
    n = max(1, len(rows))
    figure = Figure(
        figsize=(8, 1.6 + 0.22 * n * max(1, 0.6 * len(series))), dpi=DPI)
    axes = figure.add_subplot()
    step = 0.8 / len(series)
    y = np.arange(len(rows))
    for k, (title, value) in enumerate(zip(series, values)):
        axes.barh(y - 0.4 + step * (k + 0.5), value, height=step, label=title)
    axes.set_yticks(y, [classes[k] for k in rows], fontsize=8)
    axes.axvline(0, color='black', linewidth=0.8)
    axes.set_ylim(-0.6, len(rows) - 0.4)
    if len(titles) > 1:
        axes.set_xlabel(f'IoU minus {titles[0]}\'s (points)')
        axes.set_title(f'Per-class IoU against {titles[0]}\n'
                       f'{len(rows)} of {int((label_area > 0).sum())} '
                       'classes in the ground truth, largest changes',
                       fontsize=10)
    else:
        axes.set_xlabel('IoU (%)')
        axes.set_title(f'Per-class IoU of {titles[0]}')
    axes.legend(fontsize=8, loc='lower right')
    figure.tight_layout()
    paths = [f'{stem}.png', f'{stem}.svg']
    with matplotlib.rc_context({'svg.fonttype': 'none'}):
        for path in paths:
            figure.savefig(path, dpi=DPI)
    return paths


def write_figures(folders: Sequence,
                  titles: Sequence[str],
                  count: int,
                  out_dir,
                  progress: bool = False) -> Dict:
    """The ``count`` grids of the images the configs disagree on most and
    the per-class IoU chart, in ``out_dir``; what was written (paths,
    scores, per-class IoU) for the table and its JSON."""
    from .vocabulary.base import read_rgb
    require('matplotlib', 'tools/compare.py --figures')
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    scan = scan_predictions(folders, progress)
    classes, ignore = scan['classes'], scan['ignore_index']
    grids = []
    for rank, name in enumerate(choose_images(scan['scores'], count), 1):
        gt = read_label(Path(folders[0]) / 'gt' / f'{name}.png')
        preds = [
            read_label(Path(folder) / 'pred' / f'{name}.png')
            for folder in folders
        ]
        panels = [('ground truth', gt)] + [(
            f'{title}\npixel accuracy {pixel_accuracy(pred, gt, ignore):.1f}%',
            pred) for title, pred in zip(titles, preds)]
        path = out_dir / f'grid_{rank}_{name}.png'
        size = draw_grid(
            read_rgb(scan['images'][name]), panels, classes, path, ignore)
        grids.append(
            dict(
                name=name,
                image=scan['images'][name],
                file=str(path),
                size=list(size),
                disagreement=round(scan['scores'][name], 6)))
    chart = draw_iou_chart(scan['iou'], scan['label_area'], classes, titles,
                           out_dir / 'per_class_iou')
    iou = np.where(
        np.isnan(scan['iou']), None, np.round(100 * scan['iou'], 4)).tolist()
    return dict(
        folder=str(out_dir),
        images=len(scan['scores']),
        grids=grids,
        chart=chart,
        classes=classes,
        per_class_iou=dict(zip(titles, iou)),
        label_area=scan['label_area'].astype(int).tolist())
