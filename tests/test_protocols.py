"""The official protocols: every baseline and OV-EVA config against the one
table in configs/_base_/protocols.py, and through the real Runner."""

import statistics

import pytest
from conftest import REPO, TINY, TINY_VFM, run_cli, shared_data
from mmengine.config import Config

TABLE = Config.fromfile(str(REPO / 'configs/_base_/protocols.py')).protocol
METHODS = ('maskclip', 'sclip', 'clearclip', 'naclip', 'proxyclip', 'corrclip',
           'corrclipv2')
CLIP_ONLY = ('maskclip', 'sclip', 'clearclip', 'naclip')
# the official CLIP of each method's protocol
WEIGHTS = dict(
    corrclip=('ViT-B-16-quickgelu', 'metaclip_fullcc'),
    corrclipv2=('ViT-B-16-quickgelu', 'metaclip_fullcc'))
# larger CLIPs of the best base, as its official code lists them
LARGER = dict(
    vitl14=('ViT-L-14', 'openai'), vith14=('ViT-H-14', 'laion2b_s32b_b79k'))
DATASETS = ('ade', 'voc21', 'voc20', 'context60', 'context59', 'coco_stuff171',
            'cityscapes', 'coco_object', 'ade847', 'context459')
DATASET_BASES = dict(
    ade='ADE20KDataset',
    voc21='PascalVOCDataset',
    voc20='PascalVOC20Dataset',
    context60='PascalContextDataset',
    context59='PascalContextDataset59',
    coco_stuff171='COCOStuffDataset',
    cityscapes='CityscapesDataset',
    coco_object='COCOObjectDataset',
    ade847='ADE20K847Dataset',
    context459='PascalContext459Dataset')

# every config a user runs: all of configs/ but the bases
LEAVES = sorted(
    str(p.relative_to(REPO)) for p in (REPO / 'configs').rglob('*.py')
    if '_base_' not in p.parts)
# the leaves whose size the matrix keeps small
MATRIX_LEAVES = sorted([
    *(REPO / 'configs/baselines').glob('*.py'),
    *(REPO / 'configs').glob('oveva_*.py')
])
MAX_CODE_LINES = 8


def baseline(method, dataset):
    return REPO / 'configs' / 'baselines' / f'{method}_vitb16_{dataset}.py'


def dataset_base(dataset):
    name = 'ade20k' if dataset == 'ade' else dataset
    return REPO / 'configs/_base_/datasets' / f'{name}.py'


def code_lines(path) -> int:
    """Lines that are neither blank nor a comment."""
    lines = (line.strip() for line in path.read_text().splitlines())
    return sum(1 for line in lines if line and not line.startswith('#'))


def test_the_table_covers_every_method_and_dataset():
    assert set(TABLE) == set(METHODS)
    for method in METHODS:
        assert set(TABLE[method]) == set(DATASETS)
    configs = {p.name for p in (REPO / 'configs' / 'baselines').glob('*.py')}
    assert configs == {
        f'{m}_vitb16_{d}.py'
        for m in METHODS
        for d in DATASETS
    } | {f'proxyclip_{arch}_{d}.py'
         for arch in LARGER
         for d in DATASETS} | {
             f'corrclip_{t}_{d}.py'
             for t in ('vitl14', 'vith14')
             for d in DATASETS
         } | {f'corrclipv2_vitl14_{d}.py'
              for d in DATASETS}


@pytest.mark.parametrize('method', METHODS)
def test_method_base_is_its_column(method):
    """configs/_base_/methods/<method>.py holds the method's column of the
    table (a row per dataset), which its leaves pick their row from."""
    base = Config.fromfile(
        str(REPO / 'configs/_base_/methods' / f'{method}.py'))
    assert base.protocol == TABLE[method]
    assert base.model.type == 'OVEVASegmentor'
    assert 'test_dataloader' not in base  # the dataset base's part


def test_leaves_show_the_matrix_instead_of_repeating_it():
    """A leaf names its method base, dataset base and row (or its
    baseline and what differs): at most 8 code lines each, so the median
    over configs/baselines/*.py and configs/oveva_*.py stays at most 8."""
    sizes = {p.relative_to(REPO): code_lines(p) for p in MATRIX_LEAVES}
    # + 3: the CorrCLIPv2 ViT-L/14 baselines, OV-EVA on CorrCLIPv2 B and L
    assert len(sizes) == len(DATASETS) * (len(METHODS) + 4 + 5 + 3)
    assert statistics.median(sizes.values()) <= MAX_CODE_LINES
    too_long = {str(p): n for p, n in sizes.items() if n > MAX_CODE_LINES}
    assert not too_long, f'leaves over {MAX_CODE_LINES} code lines'


def test_code_lines_counts_code_only(tmp_path):
    leaf = tmp_path / 'leaf.py'
    leaf.write_text("# a comment\n\n_base_ = ['./x.py']\n"
                    "    # an indented comment\nmodel = dict(\n    a=1)\n")
    assert code_lines(leaf) == 3


@pytest.mark.parametrize('path', LEAVES)
def test_every_leaf_builds(path):
    """Config.fromfile resolves every leaf; a leaf on a protocol row runs
    the row's resize (in place of its dataset base's) in the test loader,
    and its model carries the row's settings."""
    cfg = Config.fromfile(str(REPO / path))
    assert cfg.model.type == 'OVEVASegmentor'
    pipeline = cfg.test_dataloader.dataset.pipeline
    assert pipeline == cfg.test_pipeline
    if 'protocol' not in cfg:
        return
    assert [t for t in pipeline if t.type == 'Resize'] == [cfg.protocol.resize]
    for key in ('logit_scale', 'area_thd', 'templates'):  # custom/: prob_thd
        assert cfg.model[key] == cfg.protocol.model[key], key
    assert dict(cfg.model.test_cfg, _delete_=True) == \
        cfg.protocol.model.test_cfg


@pytest.mark.parametrize('method', METHODS)
@pytest.mark.parametrize('dataset', DATASETS)
def test_baseline_config_is_its_row(method, dataset):
    row = TABLE[method][dataset]
    cfg = Config.fromfile(str(baseline(method, dataset)))
    model = cfg.model
    assert cfg.protocol.method == method and cfg.protocol.dataset == dataset
    for key in ('logit_scale', 'prob_thd', 'area_thd', 'bg_idx', 'pamr',
                'templates', 'classes'):
        assert model[key] == row.model[key], key
    for key, value in row.model.clip.items():
        if key != '_delete_':
            assert model.clip[key] == value, key
    if method in ('proxyclip', 'corrclip'):  # nothing CLIP-only is left
        assert set(model.clip) == set(row.model.clip) - {'_delete_'}
    if method == 'proxyclip':
        assert model.clip.vfm.name == 'facebook/dino-vitb8'
    name, pretrained = WEIGHTS.get(method, ('ViT-B-16', 'openai'))
    assert model.clip.name == name and model.clip.pretrained == pretrained
    assert model.clip.autocast == 'fp32'  # the references' CPU precision
    assert 'vocabulary' not in model  # the plain baseline
    want_cfg = {k: v for k, v in row.model.test_cfg.items() if k != '_delete_'}
    assert dict(model.test_cfg) == want_cfg
    resize = [
        t for t in cfg.test_dataloader.dataset.pipeline if t.type == 'Resize'
    ]
    assert resize == [
        dict(type='Resize', scale=(2048, row.short_side), keep_ratio=True)
    ]
    # the dataset base's steps around the row's resize; its other loaders
    # (val) as the dataset base has them
    data = Config.fromfile(str(dataset_base(dataset)))
    assert cfg.test_pipeline == [
        row.resize if step.type == 'Resize' else step
        for step in data.test_pipeline
    ]
    assert cfg.val_dataloader == data.val_dataloader
    assert cfg.test_dataloader.dataset.type == DATASET_BASES[dataset]
    assert row.source.startswith('https://github.com/')
    assert row.published is None or 5 < row.published < 100


@pytest.mark.parametrize('dataset', DATASETS)
def test_oveva_config_is_naclip_plus_a_vocabulary(dataset):
    base = Config.fromfile(str(baseline('naclip', dataset)))
    ours = Config.fromfile(
        str(REPO / 'configs' / f'oveva_vitb16_{dataset}.py'))
    assert ours.model.vocabulary.type == 'LexiconVocabulary'
    plain = ours.model.copy()
    plain.pop('vocabulary')
    assert plain == base.model
    ours_rest = {k: v for k, v in ours.items() if k != 'model'}
    assert ours_rest == {k: v for k, v in base.items() if k != 'model'}


@pytest.mark.parametrize('tower', ['vitb16', 'vitl14', 'vith14'])
@pytest.mark.parametrize('dataset', DATASETS)
def test_corrclip_configs(tower, dataset):
    """Every CorrCLIP config is its row (the ViT-L/14 and ViT-H/14 ones
    with the official code's other towers), and the OV-EVA one is its
    baseline plus a vocabulary."""
    base = Config.fromfile(
        str(REPO / 'configs/baselines' / f'corrclip_{tower}_{dataset}.py'))
    row = TABLE.corrclip[dataset]
    towers = dict(
        vitb16=('ViT-B-16-quickgelu', 'metaclip_fullcc'),
        vitl14=('ViT-L-14-quickgelu', 'metaclip_fullcc'),
        vith14=('ViT-H-14', 'laion2b_s32b_b79k'))
    assert (base.model.clip.name, base.model.clip.pretrained) == towers[tower]
    assert base.model.clip.type == 'CorrCLIPEncoder'
    assert 'variant' not in base.model.clip
    assert base.model.clip.dino == row.model.clip.dino
    assert base.model.clip.masks == row.model.clip.masks
    for key in ('logit_scale', 'prob_thd', 'classes'):
        assert base.model[key] == row.model[key], key
    assert dict(base.model.test_cfg, _delete_=True) == row.model.test_cfg
    ours = Config.fromfile(
        str(REPO / 'configs' / f'oveva_corrclip_{tower}_{dataset}.py'))
    assert ours.model.vocabulary.type == 'LexiconVocabulary'
    plain = ours.model.copy()
    plain.pop('vocabulary')
    assert plain == base.model


@pytest.mark.parametrize('arch', LARGER)
@pytest.mark.parametrize('dataset', DATASETS)
def test_larger_clip_configs_change_only_the_clip(arch, dataset):
    base = Config.fromfile(str(baseline('proxyclip', dataset)))
    cfg = Config.fromfile(
        str(REPO / 'configs/baselines' / f'proxyclip_{arch}_{dataset}.py'))
    assert (cfg.model.clip.name, cfg.model.clip.pretrained) == LARGER[arch]
    cfg.model.clip.name = base.model.clip.name
    cfg.model.clip.pretrained = base.model.clip.pretrained
    assert cfg.model == base.model
    assert cfg.test_dataloader == base.test_dataloader


@pytest.mark.parametrize('dataset', DATASETS)
def test_oveva_proxyclip_config_is_its_baseline_plus_a_vocabulary(dataset):
    base = Config.fromfile(str(baseline('proxyclip', dataset)))
    ours = Config.fromfile(
        str(REPO / 'configs' / f'oveva_proxyclip_vitb16_{dataset}.py'))
    assert ours.model.vocabulary.type == 'LexiconVocabulary'
    plain = ours.model.copy()
    plain.pop('vocabulary')
    assert plain == base.model
    assert {
        k: v
        for k, v in ours.items() if k != 'model'
    } == {
        k: v
        for k, v in base.items() if k != 'model'
    }


@pytest.mark.parametrize('method,dataset', [('sclip', 'voc21'),
                                            ('naclip', 'voc21'),
                                            ('clearclip', 'voc20'),
                                            ('maskclip', 'voc21'),
                                            ('proxyclip', 'voc21'),
                                            ('proxyclip', 'coco_object'),
                                            ('corrclip', 'voc21'),
                                            ('corrclip', 'context60')])
def test_class_files_are_the_references_verbatim(method, dataset):
    from ov_eva.text_bank import load_classes
    classes = load_classes(TABLE[method][dataset].model.classes)
    repo = 'clearclip' if method in ('clearclip', 'maskclip') else 'sclip'
    repo = 'corrclip' if method == 'corrclip' else repo
    separator = '; ' if method == 'corrclip' else ', '
    if method == 'proxyclip':
        # ProxyCLIP's own files: its background line splits at '; '
        text = PROXYCLIP_FILES[dataset]
        assert classes == [
            line.split('; ') for line in text.split('\n') if line
        ]
        return
    text = (REPO / 'projects/ov_eva/class_names' / repo /
            f'{dataset}.txt').read_text()
    # the references: readlines(), split(', ') (CorrCLIP: '; '), strip '\n'
    lines = text.split('\n')
    assert classes == [line.split(separator) for line in lines if line]


# the first lines of ProxyCLIP's configs/cls_{voc21,coco_object}.txt as the
# official repository ships them (the rest are one name a line, as ours)
PROXYCLIP_BACKGROUND = {
    'voc21':
    'sky; wall; tree; wood; grass; road; sea; river; mountain; sands; desk; '
    'bed; building; cloud; lamp; door; window; wardrobe; ceiling; shelf; '
    'curtain; stair; floor; hill; rail; fence',
    'coco_object':
    'sky; wall; tree; wood; grass; road; sea; river; mountain; sands; desk; '
    'bed; building; cloud; floor; hill; rail'
}
PROXYCLIP_FILES = {
    name:
    '\n'.join([first] + (REPO / 'projects/ov_eva/class_names/proxyclip' /
                         f'{name}.txt').read_text().split('\n')[1:])
    for name, first in PROXYCLIP_BACKGROUND.items()
}


def test_verbatim_names_keep_what_the_references_keep():
    from ov_eva.text_bank import load_classes
    context = load_classes(dict(file='sclip/context60', verbatim=True))
    assert context[-1] == ['wood ']  # 'a photo of a wood .' as in SCLIP
    assert load_classes('sclip/context60')[-1] == ['wood']
    coco = load_classes(dict(file='sclip/coco_object', verbatim=True))
    assert 'bed' in coco[0] and coco[60] == ['bed']  # one name, two queries


def run_labels(config, data, out, *options):
    """tools/test.py --out with the tiny CLIP on real samples: the label
    PNGs by file name."""
    import numpy as np
    from PIL import Image
    run_cli('tools/test.py', config, '--work-dir', out / 'work', '--out',
            out / 'pred', '--cfg-options', *TINY,
            f'test_dataloader.dataset.data_root={shared_data(data)}', *options)
    files = sorted((out / 'pred').rglob('*.png'))
    assert files
    return {f.name: np.asarray(Image.open(f)) for f in files}


VOC_FIRST = ['test_dataloader.dataset.indices=2']


@pytest.mark.parametrize('method', CLIP_ONLY)  # CorrCLIP: test_corrclip.py
def test_baselines_run_through_the_runner(tmp_path, method):
    """Each method's VOC21 protocol (SCLIP's area rule, NACLIP's whole
    image with PAMR, ClearCLIP's centred windows and 0.5 threshold) on real
    VOC samples."""
    faster = ['model.pamr.num_iter=2'] if method == 'naclip' else []
    faster += TINY_VFM if method == 'proxyclip' else []
    labels = run_labels(
        baseline(method, 'voc21'), 'VOCdevkit/VOC2012', tmp_path, *VOC_FIRST,
        *faster)
    assert len(labels) == 2
    for label in labels.values():
        assert label.max() <= 20


def test_oveva_without_vocabulary_is_its_baseline(tmp_path):
    base = run_labels(
        baseline('naclip', 'ade'), 'ADEChallengeData2016', tmp_path / 'b',
        'model.pamr.num_iter=2', 'test_dataloader.dataset.indices=1')
    ours = run_labels(REPO / 'configs' / 'oveva_vitb16_ade.py',
                      'ADEChallengeData2016', tmp_path / 'o',
                      'model.pamr.num_iter=2',
                      'test_dataloader.dataset.indices=1',
                      'model.vocabulary=none')
    assert base.keys() == ours.keys()
    for name, label in base.items():
        assert (label == ours[name]).all(), name
    lexicon = run_labels(REPO / 'configs' / 'oveva_vitb16_ade.py',
                         'ADEChallengeData2016', tmp_path / 'l',
                         'model.pamr.num_iter=2',
                         'test_dataloader.dataset.indices=1')
    assert any((label != lexicon[name]).any() for name, label in base.items())


@pytest.mark.parametrize('page', ['docs/benchmarks.md', 'docs/protocols.md'])
def test_the_docs_show_the_table(page):
    out = run_cli('tools/print_protocols.py')
    table = out.stdout
    assert table.count('\n') == 2 + len(METHODS) * len(DATASETS)
    assert table in (REPO / page).read_text(), (
        f'{page}: paste the output of python tools/print_protocols.py')
