# Copyright (c) OpenMMLab. All rights reserved.
"""The README is a short front door: its set-up commands exist in the
Makefile and its links into docs/ resolve."""
import json
import re
import runpy
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
README = (REPO / 'README.md').read_text()


def test_readme_is_short():
    assert README.count('\n') <= 300, 'README.md: move detail into docs/'


def test_readme_make_commands_exist():
    commands = set(re.findall(r'^make (\w+)', README, re.M))
    assert {'demo', 'test'} <= commands
    targets = set(
        re.findall(r'^([\w-]+):', (REPO / 'Makefile').read_text(), re.M))
    assert commands <= targets, commands - targets


def test_links_resolve():
    pages = [REPO / 'README.md', *sorted((REPO / 'docs').glob('*.md'))]
    for page in pages:
        # code (fenced or inline) is not a link
        text = re.sub(r'```.*?```', '', page.read_text(), flags=re.S)
        text = re.sub(r'`[^`\n]*`', '', text)
        for target in re.findall(r'\]\(([^)#\s]+)', text):
            if re.match(r'\w+://', target):
                continue
            assert (page.parent / target).exists(), f'{page.name}: {target}'


def test_site_builds_strict(tmp_path):
    """The MkDocs site (make docs): every nav page exists, every link and
    API reference resolves; --strict turns a warning into a failure."""
    proc = subprocess.run([
        sys.executable, '-m', 'mkdocs', 'build', '--strict', '--site-dir',
        str(tmp_path / 'site')
    ],
                          cwd=REPO,
                          capture_output=True,
                          text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / 'site' / 'protocols' / 'index.html').exists()


def test_quoted_prices_match_the_price_table():
    """docs/vocabulary.md quotes prices.json (the one source): its date and
    the per-million prices of the two models it names."""
    prices = json.loads(
        (REPO / 'projects/ov_eva/vocabulary/prices.json').read_text())
    page = ' '.join((REPO / 'docs' / 'vocabulary.md').read_text().split())
    assert f"dated ({prices['date']}:" in page
    gpt4o, mini = prices['models']['gpt-4o'], prices['models']['gpt-4o-mini']
    assert (f"GPT-4o ${gpt4o['input']:.2f} / ${gpt4o['output']:.2f} per "
            'million') in page
    assert f"GPT-4o mini ${mini['input']:.2f} / ${mini['output']:.2f}" in page
    assert prices['batch_discount'] == 0.5 and 'batch at half price' in page


def test_readme_numbers_match_the_protocol_table():
    """The README's published baselines are the ones of
    configs/_base_/protocols.py (the one source tools/compare.py reads)."""
    published = runpy.run_path(str(
        REPO / 'configs/_base_/protocols.py'))['__published']
    columns = ('voc21', 'context60', 'coco_object', 'voc20', 'context59',
               'coco_stuff171', 'cityscapes', 'ade')
    rows = {
        'sclip': '| SCLIP (official code re-run) | none |',
        'naclip': '| NACLIP | PAMR |',
        'clearclip': '| ClearCLIP (its own implementation) | none |',
        'maskclip': '| MaskCLIP (ClearCLIP\'s implementation) | none |',
    }
    lines = README.splitlines()
    for method, start in rows.items():
        row = next(line for line in lines if line.startswith(start))
        cells = [c.strip() for c in row[len(start):].split('|')][:8]
        expected = [published[method][name] for name in columns]
        shown = [None if cell == '–' else float(cell) for cell in cells]
        assert shown == expected, method
