"""The package's shape: sizes, imports without circles, no per-batch state
on the model."""
import ast
from pathlib import Path

import torch

PACKAGE = Path(__file__).resolve().parents[1] / 'projects' / 'ov_eva'


def modules():
    """(dotted name, path, parsed tree) of every module of the package."""
    for path in sorted(PACKAGE.rglob('*.py')):
        parts = path.relative_to(PACKAGE.parent).with_suffix('').parts
        name = '.'.join(parts[:-1] if parts[-1] == '__init__' else parts)
        yield name, path, ast.parse(path.read_text())


def imported(name: str, path: Path, tree: ast.AST, known: set) -> set:
    """The package modules ``name`` imports, at any depth of its code."""
    package = name if path.name == '__init__.py' else name.rpartition('.')[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ''
            if node.level:
                anchor = package.split('.')
                anchor = anchor[:len(anchor) - node.level + 1]
                base = '.'.join(anchor + ([base] if base else []))
            if base.startswith('ov_eva'):
                # ``from . import scoring`` imports the module, not the
                # package's __init__ (already running)
                found.update(f'{base}.{a.name}' for a in node.names)
                if not all(f'{base}.{a.name}' in known for a in node.names):
                    found.add(base)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names
                         if a.name.startswith('ov_eva'))
    return found


def test_no_import_circle():
    parsed = list(modules())
    known = {name for name, _, _ in parsed}
    graph = {
        name: imported(name, path, tree, known)
        for name, path, tree in parsed
    }
    names = set(graph)
    graph = {
        name: {t
               for t in targets if t in names and t != name}
        for name, targets in graph.items()
    }

    def reaches(start, goal, seen):
        for nxt in graph[start]:
            if nxt == goal:
                return True
            if nxt not in seen:
                seen.add(nxt)
                if reaches(nxt, goal, seen):
                    return True
        return False

    # a package's __init__ importing its own modules is no circle
    circles = [(a, b) for a in graph for b in graph[a]
               if not a.startswith(b + '.') and reaches(b, a, set())]
    assert not circles, f'import circles: {circles}'


def test_sizes():
    segmentor = (PACKAGE / 'segmentor.py').read_text().splitlines()
    assert len(segmentor) <= 300
    too_long = []
    for name, path, tree in modules():
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                limit = 70
            elif isinstance(node, ast.ClassDef):
                limit = 350
            else:
                continue
            length = node.end_lineno - node.lineno + 1
            if length > limit:
                too_long.append(f'{name}.{node.name}: {length} lines')
    assert not too_long, too_long


def test_no_state_between_calls(tiny_segmentor_cfg):
    """predict leaves the model as it found it: everything per image
    travels in the data samples."""
    import ov_eva  # noqa: F401  (compat before mmseg)
    from mmseg.registry import MODELS
    from mmseg.structures import SegDataSample
    model = MODELS.build(
        dict(
            tiny_segmentor_cfg,
            vocabulary=dict(
                type='StaticVocabulary',
                terms={'wall': ['brick masonry']}))).eval()

    def state():  # every attribute of the model and of its class bank
        return {
            **{f'model.{k}': v
               for k, v in vars(model).items()},
            **{f'bank.{k}': v
               for k, v in vars(model.class_bank).items()},
            **{f'head.{k}': v
               for k, v in vars(model.decode_head).items()},
        }

    with torch.no_grad():
        model.class_bank.query_set()  # the class text, encoded once
        before = state()
        sample = SegDataSample(
            metainfo=dict(
                img_path='a.jpg',
                ori_shape=(48, 64),
                img_shape=(48, 64),
                pad_shape=(48, 64)))
        out = model.predict(torch.randn(1, 3, 48, 64), [sample])[0]
    assert out.ov_eva_terms == [('brick masonry', 'wall')]
    assert [r['term'] for r in out.ov_eva_vocabulary] == ['brick masonry']
    after = state()
    assert before.keys() == after.keys()
    for name in before:  # nothing rebound (caches may grow in place)
        assert before[name] is after[name], name
