"""Build LexiconVocabulary's shipped concept list from public label sets.

Every name is read from a PyPI package's source, statically (``ast``), so no
package is imported or installed and the result depends only on the package
versions read:

* mmdet 3.3.0 (a wheel given by path, never installed): LVIS v1 and v0.5,
  Objects365 v1, COCO and COCO panoptic METAINFO from
  ``mmdet/datasets/*.py``; Open Images v6 and Open Images Challenge and
  ImageNet DET from ``mmdet/evaluation/functional/class_names.py``.
* mmsegmentation 1.2.2 (installed): ADE20K-150, COCO-Stuff-171, Cityscapes,
  PASCAL VOC, PASCAL Context (59/60) and Mapillary Vistas v1.2/v2.0
  METAINFO from ``mmseg/datasets/*.py``.
* open_clip_torch 3.3.0 (installed): ``IMAGENET_CLASSNAMES`` (ImageNet-1k,
  OpenAI's cleaned names) from ``open_clip/zero_shot_metadata.py``.

Regenerate (or check that the shipped file is current) with::

    pip download --no-deps mmdet==3.3.0 -d /tmp/mmdet
    python tools/build_lexicon.py /tmp/mmdet/mmdet-3.3.0-py3-none-any.whl
    python tools/build_lexicon.py /tmp/mmdet/mmdet-3.3.0-*.whl --check

Names are lower-cased; ``_`` becomes a space; a parenthesised qualifier
becomes plain words (``football (american)`` -> ``american football``) where
it is an adjective, and is dropped otherwise (``bat (animal)`` -> ``bat``);
``a/b`` gives both names; COCO-Stuff's ``wall-brick`` reads ``brick wall``
and its ``-other`` / ``-stuff`` / ``-merged`` suffixes go; Mapillary's
``lane marking - crosswalk`` reads ``crosswalk lane marking``; a leading
``other`` goes (``other shoes`` -> ``shoes``); a handful of run-together or
misspelt names are respelt (``SPELLINGS``). Unlabelled, background, void and
catch-all classes are left out (``SKIP``). Objects365 v2 is not read: it has
the same 365 categories as v1, re-ordered and with misspellings (``Moniter``,
``Bakset``, ``Mushroon``). The list is sorted and de-duplicated.
"""
import argparse
import ast
import importlib.metadata
import importlib.util
import re
import sys
import zipfile
from collections import OrderedDict
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Tuple

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO / 'projects/ov_eva/vocabulary/lexicon/concepts.txt'
EXPECTED = {
    'mmdet': '3.3.0',
    'mmsegmentation': '1.2.2',
    'open_clip_torch': '3.3.0'
}

# (label set, file inside the package, class holding METAINFO or None for a
# module-level function/constant, name of the function/constant)
MMDET_SOURCES = [
    ('LVIS v1', 'mmdet/datasets/lvis.py', 'LVISV1Dataset', None),
    ('LVIS v0.5', 'mmdet/datasets/lvis.py', 'LVISV05Dataset', None),
    ('Objects365 v1', 'mmdet/datasets/objects365.py', 'Objects365V1Dataset',
     None),
    ('COCO', 'mmdet/datasets/coco.py', 'CocoDataset', None),
    ('COCO panoptic', 'mmdet/datasets/coco_panoptic.py', 'CocoPanopticDataset',
     None),
    ('Open Images v6', 'mmdet/evaluation/functional/class_names.py', None,
     'oid_v6_classes'),
    ('Open Images Challenge 2019',
     'mmdet/evaluation/functional/class_names.py', None,
     'oid_challenge_classes'),
    ('ImageNet DET', 'mmdet/evaluation/functional/class_names.py', None,
     'imagenet_det_classes'),
]
MMSEG_SOURCES = [
    ('ADE20K-150', 'datasets/ade.py', 'ADE20KDataset'),
    ('COCO-Stuff-171', 'datasets/coco_stuff.py', 'COCOStuffDataset'),
    ('Cityscapes', 'datasets/cityscapes.py', 'CityscapesDataset'),
    ('PASCAL VOC', 'datasets/voc.py', 'PascalVOCDataset'),
    ('PASCAL Context 60', 'datasets/pascal_context.py',
     'PascalContextDataset'),
    ('PASCAL Context 59', 'datasets/pascal_context.py',
     'PascalContextDataset59'),
    ('Mapillary Vistas v1.2', 'datasets/mapillary.py', 'MapillaryDataset_v1'),
    ('Mapillary Vistas v2.0', 'datasets/mapillary.py', 'MapillaryDataset_v2'),
]
OPEN_CLIP_SOURCES = [('ImageNet-1k', 'zero_shot_metadata.py', None,
                      'IMAGENET_CLASSNAMES')]

# labels that name no concept (after normalisation)
SKIP = {
    'background', 'unlabeled', 'unlabelled', 'void', 'other', 'others',
    'ego vehicle', 'car mount', 'dynamic', 'static', 'on rails',
    'wheeled slow', 'ambiguous barrier', 'solid', 'structural'
}
# parenthesised qualifiers that are adjectives of the name: kept as words
ADJECTIVE_QUALIFIERS = {'american'}
# Mapillary sub-kinds that add nothing to the head name
VAGUE_KINDS = {'general', 'other', 'ambiguous', 'test', 'back', 'front'}
# run-together or misspelt names in a source -> their usual spelling
SPELLINGS = {
    'playingfield': 'playing field',
    'diningtable': 'dining table',
    'pottedplant': 'potted plant',
    'tvmonitor': 'tv monitor',
    'pine apple': 'pineapple',
    'hamimelon': 'hami melon',
    'hotair balloon': 'hot-air balloon',
    'monitor computer monitor': 'computer monitor',
}


def literal_in_source(text: str, cls: Optional[str],
                      name: Optional[str]) -> List[str]:
    """The class names in ``text``: ``cls.METAINFO['classes']`` or the list
    returned by function ``name`` or assigned to constant ``name``."""
    tree = ast.parse(text)
    for node in ast.walk(tree):
        if cls is not None and isinstance(node, ast.ClassDef) and \
                node.name == cls:
            for item in node.body:
                if isinstance(item, ast.Assign) and any(
                        getattr(t, 'id', None) == 'METAINFO'
                        for t in item.targets):
                    return list(ast.literal_eval(_classes_node(item.value)))
        if cls is None and isinstance(node, ast.FunctionDef) and \
                node.name == name:
            for item in ast.walk(node):
                if isinstance(item, ast.Return):
                    return list(ast.literal_eval(item.value))
        if cls is None and isinstance(node, ast.Assign) and any(
                getattr(t, 'id', None) == name for t in node.targets):
            return list(ast.literal_eval(node.value))
    raise LookupError(f'{cls or name} not found')


def _classes_node(node: ast.expr) -> ast.expr:
    """The ``classes`` entry of a ``{...}`` or ``dict(...)`` METAINFO (its
    palette may be computed, so only this entry is evaluated)."""
    if isinstance(node, ast.Dict):
        for key, value in zip(node.keys, node.values):
            if isinstance(key, ast.Constant) and key.value == 'classes':
                return value
    if isinstance(node, ast.Call):
        for keyword in node.keywords:
            if keyword.arg == 'classes':
                return keyword.value
    raise LookupError('METAINFO has no literal classes entry')


def package_dir(module: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit(f'package {module!r} is not installed here')
    return Path(list(spec.submodule_search_locations)[0])


def wheel_version(wheel: zipfile.ZipFile) -> str:
    for name in wheel.namelist():
        if name.endswith('.dist-info/METADATA'):
            for line in wheel.read(name).decode().splitlines():
                if line.startswith('Version:'):
                    return line.split(':', 1)[1].strip()
    raise SystemExit('the wheel has no METADATA')


def read_sources(mmdet_wheel: Path) -> 'OrderedDict[str, List[str]]':
    """Raw names of every label set, by label set."""
    sets: 'OrderedDict[str, List[str]]' = OrderedDict()
    with zipfile.ZipFile(mmdet_wheel) as wheel:
        versions = {'mmdet': wheel_version(wheel)}
        for label, path, cls, name in MMDET_SOURCES:
            sets[label] = literal_in_source(
                wheel.read(path).decode(), cls, name)
    for dist in ('mmsegmentation', 'open_clip_torch'):
        versions[dist] = importlib.metadata.version(dist)
    root = package_dir('mmseg')
    for label, path, cls in MMSEG_SOURCES:
        sets[label] = literal_in_source((root / path).read_text(), cls, None)
    root = package_dir('open_clip')
    for label, path, cls, name in OPEN_CLIP_SOURCES:
        sets[label] = literal_in_source((root / path).read_text(), cls, name)
    for dist, version in versions.items():
        if version != EXPECTED[dist]:
            print(
                f'warning: read {dist} {version}; the shipped list was '
                f'built from {EXPECTED[dist]}',
                file=sys.stderr)
    return sets


def normalise(raw: str, label_set: str) -> List[str]:
    """The plain concept names one raw class name stands for."""
    name = ' '.join(raw.replace('_', ' ').lower().split())
    if label_set.startswith('COCO'):  # wall-brick, sky-other-merged
        name = re.sub(r'-(other|stuff|merged)\b', '', name)
        if name == 'window-blind':
            name = 'window blind'
        match = re.fullmatch(r'([a-z]+)-([a-z]+)', name)
        if match:  # material after the thing: wall-brick -> brick wall
            name = f'{match.group(2)} {match.group(1)}'
    qualifier = re.search(r'\s*\(([^)]*)\)', name)
    if qualifier:  # bat (animal) -> bat; football (american) -> american..
        words = qualifier.group(1).strip()
        name = (name[:qualifier.start()] + name[qualifier.end():]).strip()
        if words in ADJECTIVE_QUALIFIERS:
            name = f'{words} {name}'
    if ' - ' in name:  # mapillary: lane marking - crosswalk
        head, _, kind = name.partition(' - ')
        name = head if kind in VAGUE_KINDS else f'{kind} {head}'
    names = [' '.join(n.split()) for n in name.split('/')]
    names = [SPELLINGS.get(n, n) for n in names]
    names = [n[len('other '):] if n.startswith('other ') else n for n in names]
    return [n for n in names if n and n not in SKIP]


def build(
    sets: Dict[str, Iterable[str]]
) -> Tuple[List[str], List[Tuple[str, int, int, int]]]:
    """The sorted concept list, and per label set (name, raw names,
    distinct normalised names, names no earlier set gave)."""
    concepts: set = set()
    stats = []
    for label_set, raw_names in sets.items():
        raw_names = list(raw_names)
        names = {n for raw in raw_names for n in normalise(raw, label_set)}
        stats.append(
            (label_set, len(raw_names), len(names), len(names - concepts)))
        concepts |= names
    bad = sorted(
        c for c in concepts if not re.fullmatch(r"[a-z0-9][a-z0-9 .'&-]*", c))
    if bad:
        raise SystemExit(f'names with unexpected characters: {bad}')
    return sorted(concepts), stats


def parse_args():
    parser = argparse.ArgumentParser(
        description=__doc__.split('\n')[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split('\n', 2)[2])
    parser.add_argument(
        'mmdet_wheel',
        type=Path,
        help='mmdet-3.3.0-py3-none-any.whl (pip download --no-deps '
        'mmdet==3.3.0 -d DIR); read, never installed')
    parser.add_argument(
        '--out', type=Path, default=DEFAULT_OUT, help='concept file to write')
    parser.add_argument(
        '--check',
        action='store_true',
        help='write nothing; exit 1 when --out differs from the build')
    return parser.parse_args()


def main():
    args = parse_args()
    if not zipfile.is_zipfile(args.mmdet_wheel):
        raise SystemExit(f'{args.mmdet_wheel} is not a wheel; get it with '
                         'pip download --no-deps mmdet==3.3.0 -d DIR')
    sets = read_sources(args.mmdet_wheel)
    concepts, stats = build(sets)
    print(f'{"label set":28s} {"raw":>5s} {"names":>5s} {"new":>5s}')
    for label_set, raw, names, new in stats:
        print(f'{label_set:28s} {raw:5d} {names:5d} {new:5d}')
    print(f'{"unique concepts":28s} {"":5s} {"":5s} {len(concepts):5d}')
    text = '\n'.join(concepts) + '\n'
    if args.check:
        current = args.out.read_text() if args.out.is_file() else ''
        if current != text:
            raise SystemExit(f'{args.out} is not what the sources give; '
                             'rerun without --check')
        print(f'{args.out} is up to date')
        return
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(f'wrote {args.out}')


if __name__ == '__main__':
    main()
