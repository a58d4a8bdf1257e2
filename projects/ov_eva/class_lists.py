"""Class lists: one class a line, synonyms comma-separated.

A class is a list of synonyms; each synonym is scored on its own and the
class's probability is the max over them. Standard library only, so the
tools check class arguments before importing torch (``tools/_cli.py`` loads
this file by path).
"""
from pathlib import Path
from typing import Dict, List, Sequence, Union

CLASS_NAME_DIR = Path(__file__).parent / 'class_names'
ClassSpec = Union[str, Path, dict, Sequence[Union[str, Sequence[str]]]]


def parse_class_lines(lines: Sequence[str],
                      source: str,
                      verbatim: bool = False,
                      separator: str = ', ') -> List[List[str]]:
    """Lines like ``'wall, brick wall'`` -> ``[['wall', 'brick wall']]``.

    Names are stripped, inner white space collapsed and repeated synonyms
    dropped; ``verbatim`` keeps every name exactly as the SCLIP-family
    reference code reads its class files (split at ``', '``, nothing
    stripped: ``'wood '`` stays a different prompt from ``'wood'``), or at
    ``separator`` (CorrCLIP's files: ``'; '``).
    Rejects empty lists, empty names and classes named twice, naming
    ``source`` and the offending line in the error.
    """
    classes: List[List[str]] = []
    first_line: Dict[str, int] = {}
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        if verbatim:
            synonyms = line.split(separator)
        else:
            synonyms = [' '.join(s.split()) for s in line.split(',')]
        if any(not s.strip() for s in synonyms):
            raise ValueError(f'{source}, class {number}: empty name in '
                             f'{line.strip()!r} (stray comma?)')
        if not verbatim:
            synonyms = list(dict.fromkeys(synonyms))
        name = synonyms[0].strip().lower()
        # verbatim: a class is its line, as the official code reads it;
        # ADE-847's file has two lines opening with 'screen' (crt / silver)
        key = line if verbatim else name
        if key in first_line:
            raise ValueError(
                f'{source}: class {name!r} appears twice (classes '
                f'{first_line[key]} and {number}); merge them into one '
                'line of comma-separated synonyms')
        first_line[key] = number
        classes.append(synonyms)
    if not classes:
        raise ValueError(f'{source}: no class names; give one class a line')
    return classes


def read_class_file(path: Union[str, Path],
                    verbatim: bool = False,
                    separator: str = ', ') -> List[List[str]]:
    """Read a class file; a bare name like ``'ade20k'`` or
    ``'sclip/voc21'`` picks a shipped one from ``ov_eva/class_names``."""
    path = Path(path).expanduser()
    if not path.suffix and not path.exists():
        shipped = CLASS_NAME_DIR / f'{path}.txt'
        if shipped.is_file():
            path = shipped
    try:
        text = path.read_text(encoding='utf-8')
    except (OSError, UnicodeDecodeError) as error:
        shipped = sorted(
            p.relative_to(CLASS_NAME_DIR).with_suffix('').as_posix()
            for p in CLASS_NAME_DIR.rglob('*.txt'))
        raise ValueError(
            f'cannot read class file {str(path)!r} ({error}); give a UTF-8 '
            f'text file, one class a line, or a shipped name: {shipped}'
        ) from error
    return parse_class_lines(text.splitlines(), str(path), verbatim, separator)


def load_classes(spec: ClassSpec) -> List[List[str]]:
    """Classes from a class-file path / shipped name, a
    ``dict(file=..., verbatim=True[, separator='; '])`` (see
    ``parse_class_lines``), or a list
    whose items are ``'cat'``, ``'wall, brick wall'`` or
    ``['wall', 'brick']``."""
    if isinstance(spec, dict):
        unknown = set(spec) - {'file', 'verbatim', 'separator'}
        separator = spec.get('separator', ', ')
        if 'file' not in spec or unknown or not isinstance(
                separator, str) or not separator:
            raise ValueError(
                f'model.classes={spec!r}: a dict takes the keys file, '
                "verbatim and separator, e.g. dict(file='sclip/voc21', "
                "verbatim=True) or dict(file='corrclip/voc21', "
                "verbatim=True, separator='; ')")
        return read_class_file(spec['file'], bool(spec.get('verbatim')),
                               separator)
    if isinstance(spec, (str, Path)):
        return read_class_file(spec)
    lines = [s if isinstance(s, str) else ', '.join(s) for s in spec or []]
    return parse_class_lines(lines, 'model.classes')
