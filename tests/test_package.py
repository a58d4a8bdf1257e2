"""The package as a user installs it: the wheel ``pip`` builds from the
repository holds every subpackage and data file, declares what the code
imports, and, installed into a folder of its own, runs a config of the
user's through mmseg's Runner from another folder (no ``configs/``, no
repository on the path)."""
import ast
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from email.parser import Parser
from importlib.metadata import packages_distributions
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO
from PIL import Image

PACKAGE = REPO / 'projects' / 'ov_eva'
# read at run time through Path(__file__): every file below these folders
DATA = ('class_names', 'model_configs', 'vocabulary/lexicon',
        'vocabulary/prices.json')
# what the build reads: the rest of the repository must not matter
BUILD_INPUTS = ('setup.cfg', 'pyproject.toml', 'README.md')
# optional on purpose, in no extra: without it token counts are estimated
OPTIONAL_WITHOUT_EXTRA = {'tiktoken'}
# a full mmcv and mmcv-lite install the same package: an extra, not a
# requirement (setup.cfg says why)
IN_AN_EXTRA_BY_DESIGN = {'mmcv'}

CONFIG = """
default_scope = 'mmseg'
custom_imports = dict(imports=['ov_eva'], allow_failed_imports=False)
randomness = dict(seed=0)
model = dict(
    type='OVEVASegmentor',
    data_preprocessor=dict(
        type='SegDataPreProcessor',
        mean=[122.771, 116.746, 104.094],
        std=[68.501, 66.632, 70.323],
        bgr_to_rgb=True),
    clip=dict(name='ov-eva-tiny', pretrained=None),
    classes=None,  # the dataset's, from its class file
    vocabulary=dict(type='LexiconVocabulary'),  # the shipped lexicon
    test_cfg=dict(mode='slide', crop_size=(224, 224), stride=(112, 112)))
test_dataloader = dict(
    batch_size=1,
    num_workers=0,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type='ClassFileSegDataset',
        class_file='{root}/classes.txt',
        data_root='{root}',
        data_prefix=dict(img_path='images', seg_map_path='labels'),
        img_suffix='.jpg',
        seg_map_suffix='.png',
        pipeline=[
            dict(type='LoadImageFromFile'),
            dict(type='Resize', scale=(336, 336), keep_ratio=True),
            dict(type='LoadAnnotations'),
            dict(type='PackSegInputs')
        ]))
test_evaluator = dict(type='IoUMetric', iou_metrics=['mIoU'])
test_cfg = dict(type='TestLoop')
custom_hooks = [dict(type='DatasetClassesHook')]
"""

# run by the installed package's user: import everything, read every
# shipped class list, test the config
USER_SCRIPT = """
import json, pkgutil, sys
import ov_eva
from mmengine.config import Config
from mmengine.runner import Runner
from ov_eva.class_lists import CLASS_NAME_DIR, read_class_file

modules = [m.name for m in pkgutil.walk_packages(ov_eva.__path__, 'ov_eva.')]
for name in modules:
    __import__(name)
shipped = sorted(p.relative_to(CLASS_NAME_DIR).with_suffix('').as_posix()
                 for p in CLASS_NAME_DIR.rglob('*.txt'))
# verbatim, as the configs read them: ADE-847's official file opens two
# lines with 'screen'
sizes = {name: len(read_class_file(name, verbatim=True)) for name in shipped}
cfg = Config.fromfile(sys.argv[1])
cfg.work_dir = sys.argv[2]
metrics = Runner.from_cfg(cfg).test()
print('RESULT', json.dumps(dict(
    file=ov_eva.__file__, modules=modules, class_lists=sizes,
    metrics={k: float(v) for k, v in metrics.items()})))
"""


def source_modules():
    """Every module of the source package, as its dotted name."""
    names = []
    for path in sorted(PACKAGE.rglob('*.py')):
        parts = path.relative_to(PACKAGE.parent).with_suffix('').parts
        if parts[-1] == '__init__':
            parts = parts[:-1]
        if (PACKAGE.parent.joinpath(*parts[:-1]) / '__init__.py').is_file():
            names.append('.'.join(parts))
    return names


def data_files():
    files = []
    for entry in DATA:
        path = PACKAGE / entry
        found = [p for p in path.rglob('*') if p.is_file()] \
            if path.is_dir() else [path]
        files += [p.relative_to(PACKAGE.parent).as_posix() for p in found]
    assert files
    return sorted(files)


def imports(path: Path):
    """The top-level modules ``path`` imports: (at import time, on first
    use inside a function), third-party only."""
    at_import, later = set(), set()

    def visit(node, in_function):
        for child in ast.iter_child_nodes(node):
            names = []
            if isinstance(child, ast.Import):
                names = [alias.name for alias in child.names]
            elif isinstance(child, ast.ImportFrom) and not child.level:
                names = [child.module]
            elif isinstance(child, ast.Call) and getattr(
                    child.func, 'id', None) == 'require':  # ov_eva.optional
                names = [child.args[0].value]
            for name in names:
                top = name.split('.')[0]
                if top not in sys.stdlib_module_names and top != 'ov_eva':
                    (later if in_function else at_import).add(top)
            visit(
                child, in_function
                or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)))

    visit(ast.parse(path.read_text()), False)
    return at_import, later


def requirements(metadata: str):
    """{distribution: set of extras it comes with ('' = always)}."""
    found = {}
    for line in Parser().parsestr(metadata).get_all('Requires-Dist'):
        name = re.match(r'[A-Za-z0-9._-]+', line).group(0)
        extra = re.search(r'extra == "([^"]+)"', line)
        found.setdefault(canonical(name),
                         set()).add(extra.group(1) if extra else '')
    return found


def canonical(name: str) -> str:
    return re.sub(r'[-_.]+', '-', name).lower()


@pytest.fixture(scope='module')
def wheel(tmp_path_factory):
    """The wheel pip builds from a copy of what the build reads (no stale
    build/ folder of the checkout can add or hide a file)."""
    tmp = tmp_path_factory.mktemp('wheel')
    source = tmp / 'source'
    (source / 'projects').mkdir(parents=True)
    for name in BUILD_INPUTS:
        shutil.copy(REPO / name, source / name)
    shutil.copytree(
        PACKAGE,
        source / 'projects' / 'ov_eva',
        ignore=shutil.ignore_patterns('__pycache__', '*.pyc'))
    subprocess.run([
        sys.executable, '-m', 'pip', 'wheel', '--no-deps',
        '--no-build-isolation', '-q', '-w', tmp / 'dist', source
    ],
                   check=True,
                   capture_output=True,
                   timeout=300)
    found = list((tmp / 'dist').glob('ov_eva-*.whl'))
    assert len(found) == 1, found
    return found[0]


def test_the_wheel_holds_every_module_and_data_file(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for module in source_modules():
        path = module.replace('.', '/')
        assert f'{path}.py' in names or f'{path}/__init__.py' in names, \
            f'{module} is not in the wheel'
    missing = [f for f in data_files() if f not in names]
    assert not missing, f'data files missing from the wheel: {missing}'
    # the loopback OpenAI server is test support (tools/fake_openai.py)
    assert not [n for n in names if 'fake_openai' in n or 'testing' in n]


def test_the_wheel_declares_what_the_package_imports(wheel):
    """A module imported at import time comes with ``pip install ov-eva``;
    one imported on first use comes with it or with an extra."""
    with zipfile.ZipFile(wheel) as archive:
        metadata = next(
            archive.read(n).decode() for n in archive.namelist()
            if n.endswith('.dist-info/METADATA'))
    declared = requirements(metadata)
    distributions = packages_distributions()
    for path in sorted(PACKAGE.rglob('*.py')):
        at_import, later = imports(path)
        for module in sorted(at_import | later):
            if module in OPTIONAL_WITHOUT_EXTRA:
                continue
            dists = {canonical(d) for d in distributions.get(module, [])}
            assert dists, f'{path.name} imports {module}: not installed here'
            extras = set().union(*(declared.get(d, set()) for d in dists))
            where = f'{path.relative_to(REPO)} imports {module} ({dists})'
            assert extras, f'{where}, which setup.cfg does not declare'
            if module in at_import and module not in IN_AN_EXTRA_BY_DESIGN:
                assert '' in extras, \
                    f'{where} at import time, but only extras {extras} ' \
                    'bring it: add it to install_requires'
    for extra in ('openai', 'hf', 'app', 'all'):
        assert f'Provides-Extra: {extra}' in metadata


def test_the_pinned_set_satisfies_the_declared_requirements(wheel):
    """requirements.txt (what the tests run on) meets every requirement
    and extra the wheel declares."""
    from packaging.requirements import Requirement
    pins = {}
    for line in (REPO / 'requirements.txt').read_text().splitlines():
        if '==' in line and not line.startswith('#'):
            name, version = line.split('==')
            pins[canonical(name)] = version.strip()
    with zipfile.ZipFile(wheel) as archive:
        metadata = next(
            archive.read(n).decode() for n in archive.namelist()
            if n.endswith('.dist-info/METADATA'))
    for line in Parser().parsestr(metadata).get_all('Requires-Dist'):
        requirement = Requirement(line)
        name = canonical(requirement.name)
        if name in pins:
            assert requirement.specifier.contains(pins[name]), \
                f'requirements.txt pins {name}=={pins[name]}: ' \
                f'setup.cfg asks {requirement}'


def make_dataset(root: Path):
    """Two small photos, their labels (0 sky, 1 grass) and a class file."""
    (root / 'images').mkdir(parents=True)
    (root / 'labels').mkdir()
    for i in range(2):
        label = np.zeros((48 + 8 * i, 64), np.uint8)
        label[label.shape[0] // 2:] = 1
        colours = np.array([[120, 170, 240], [60, 160, 60]], np.uint8)
        Image.fromarray(colours[label]).save(root / 'images' / f'{i}.jpg')
        Image.fromarray(label).save(root / 'labels' / f'{i}.png')
    (root / 'classes.txt').write_text('sky\ngrass, lawn\n')


def test_installed_wheel_runs_a_config_from_another_folder(wheel, tmp_path):
    target = tmp_path / 'site'
    subprocess.run([
        sys.executable, '-m', 'pip', 'install', '--no-deps', '-q', '--target',
        target, wheel
    ],
                   check=True,
                   capture_output=True,
                   timeout=300)
    make_dataset(tmp_path / 'data')
    config = tmp_path / 'my_config.py'
    config.write_text(CONFIG.replace('{root}', str(tmp_path / 'data')))
    script = tmp_path / 'user.py'
    script.write_text(USER_SCRIPT)
    work = tmp_path / 'elsewhere'
    work.mkdir()
    # only the installed copy on the path: not projects/, not the checkout
    env = dict(os.environ, PYTHONPATH=str(target))
    proc = subprocess.run(
        [sys.executable, script, config, tmp_path / 'work_dir'],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    result = json.loads(proc.stdout.split('RESULT ', 1)[1])
    assert Path(result['file']).resolve().is_relative_to(target.resolve())
    assert sorted(result['modules']) == sorted(m for m in source_modules()
                                               if m != 'ov_eva')
    assert result['class_lists']['ade20k'] == 150
    assert len(result['class_lists']) == len(
        list((PACKAGE / 'class_names').rglob('*.txt')))
    assert 0 <= result['metrics']['mIoU'] <= 100
