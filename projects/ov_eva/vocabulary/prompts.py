"""The MLLM prompts of method step 3. ``PROMPT_VERSION`` is part of every
vocabulary cache key: change it whenever a prompt's wording changes."""
import json
from typing import Dict, List, Sequence

PROMPT_VERSION = 'ov-eva-prompts-v1'

SYSTEM = ('You label images for semantic segmentation. Answer with JSON '
          'only, no prose. Every term is a short English noun phrase.')


def perceive_prompt() -> str:
    """Stage 1: the image alone."""
    return ('List every object, stuff region (sky, road, wall, grass, ...) '
            'and material visible in this image, as short English noun '
            'phrases of at most four words. Answer with a JSON object whose '
            'key "terms" holds a list of strings, e.g. {"terms": ["wooden '
            'floor", "white ceiling", "sofa"]}.')


def expand_prompt(class_names: Sequence[str], perceived: Sequence[str],
                  held: Dict[str, List[str]], k: int) -> str:
    """Stage 2 (and its later rounds): per target class that may be present,
    up to ``k`` new alternative names or visually specific descriptions."""
    lines = [
        'Target classes: ' + json.dumps(list(class_names)),
        'Seen in the image: ' + json.dumps(list(perceived)),
        f'For each target class that may be present in this image, give up '
        f'to {k} alternative names or visually specific descriptions of it '
        'as it appears in this image (material, colour, kind), each at most '
        'six words.',
    ]
    if any(held.values()):
        lines.append('Terms already held (do not repeat them, give only new '
                     'ones): ' + json.dumps(held))
    lines.append('Answer with a JSON object mapping a target class name to '
                 'a list of strings; leave out classes that are absent, e.g. '
                 '{"floor": ["parquet floor", "carpet"]}.')
    return '\n'.join(lines)
