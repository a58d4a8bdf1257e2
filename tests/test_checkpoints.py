"""Checkpoints through the real entry points (tools/test.py, mim test and
the mmseg test script mim runs): the model a checkpoint holds is built from
the settings tools/export_checkpoint.py records, and a checkpoint that does
not fit the model built ends in one ``error:`` line before anything else;
so do config mistakes (issue 18, items 1, 3 and 5)."""
import json
import re
from pathlib import Path

import pytest
import torch
from conftest import NO_PAMR, TINY, TINY_VFM, run_cli, shared_data

ADE = 'configs/oveva_vitb16_ade.py'
PROXY = 'configs/oveva_proxyclip_vitb16_ade.py'
CORR = 'configs/oveva_corrclip_vitb16_voc20.py'
# one ADE image, one template: seconds per run on the tiny models
FAST = [NO_PAMR, 'model.templates=single', 'test_dataloader.dataset.indices=1']


def mmseg_test_script() -> Path:
    import mmseg
    return Path(mmseg.__file__).parent / '.mim' / 'tools' / 'test.py'


def ade_root() -> str:
    data = shared_data('ADEChallengeData2016')
    return f'test_dataloader.dataset.data_root={data}'


def export(config, out, *options):
    run_cli('tools/export_checkpoint.py', config, out, '--cfg-options',
            *options)
    return out


def metrics(work_dir: Path) -> dict:
    files = sorted(work_dir.glob('*/*.json'))
    assert len(files) == 1, files
    return json.loads(files[0].read_text())


def user_lines(text: str) -> list:
    """stderr without the environment's own warnings (pkg_resources) and
    mim's traceback of the failed script."""
    lines = []
    for line in text.splitlines():
        if line.startswith('Traceback'):
            break
        if line.strip() and 'Warning' not in line and \
                not line.startswith('  '):
            lines.append(line)
    return lines


def assert_one_error(proc, *expected):
    """Exit 2, nothing on stdout, one ``error:`` line naming
    ``expected``."""
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert proc.stdout == ''
    lines = user_lines(proc.stderr)
    assert len(lines) == 1 and lines[0].startswith('error: '), lines
    for text in expected:
        assert text in lines[0], lines[0]
    return lines[0]


@pytest.fixture(scope='module')
def tiny_ckpt(tmp_path_factory):
    """The tiny CLIP exported from the ViT-B/16 ADE config."""
    out = tmp_path_factory.mktemp('ckpt') / 'tiny.pth'
    return export(ADE, out, *TINY)


def test_export_records_the_backend(tiny_ckpt):
    meta = torch.load(tiny_ckpt, map_location='cpu', weights_only=True)['meta']
    clip = meta['clip']
    assert clip['type'] == 'DenseCLIPEncoder'
    assert clip['name'] == 'ov-eva-tiny' and clip['pretrained'] is None
    assert clip['variant'] == 'naclip' and clip['quick_gelu'] is False
    assert clip['autocast'] == 'fp32'


def test_tiny_checkpoint_under_the_vitb16_config(tmp_path, tiny_ckpt):
    """No tiny options: tools/test.py and mim test build the tiny model the
    checkpoint holds and score what the tiny options score."""
    root = ade_root()
    own = run_cli('tools/test.py', ADE, '--checkpoint', tiny_ckpt,
                  '--work-dir', tmp_path / 'own', '--cfg-options', root, *FAST)
    log = own.stdout + own.stderr
    assert log.count('holds another model than the config') == 1
    assert "name: 'ViT-B-16' -> 'ov-eva-tiny'" in log
    assert 'size mismatch' not in log
    assert re.search(r'checkpoint \S+ loaded: all 62 tensors fit', log)
    run_cli('mim', 'test', 'mmseg', ADE, '--checkpoint', tiny_ckpt,
            '--work-dir', tmp_path / 'mim', '--cfg-options', root, *FAST)
    run_cli('tools/test.py', ADE, '--work-dir', tmp_path / 'tiny',
            '--cfg-options', *TINY, root, *FAST)
    by_tool, by_mim = metrics(tmp_path / 'own'), metrics(tmp_path / 'mim')
    tiny = metrics(tmp_path / 'tiny')
    for key in ('aAcc', 'mIoU', 'mAcc'):
        assert by_tool[key] == by_mim[key] == tiny[key]


def test_a_checkpoint_that_does_not_fit_is_refused(tmp_path, tiny_ckpt):
    """The command line forces ViT-B/16 on a tiny checkpoint: one line
    naming tensors, shapes and the fix, before anything else, through
    tools/test.py and the mmseg script mim runs; mim says it failed."""
    forced = ['model.clip.name=ViT-B-16', ade_root(), *FAST]
    expected = ('clip.model.positional_embedding (77, 64) vs (77, 512)',
                '61 of 302 tensors differ in shape',
                '--cfg-options model.clip.name=ov-eva-tiny '
                'model.clip.pretrained=None')
    proc = run_cli(
        'tools/test.py',
        ADE,
        '--checkpoint',
        tiny_ckpt,
        '--work-dir',
        tmp_path / 'a',
        '--cfg-options',
        *forced,
        check=False)
    assert_one_error(proc, *expected)
    script = run_cli(
        mmseg_test_script(),
        ADE,
        tiny_ckpt,
        '--work-dir',
        tmp_path / 'b',
        '--cfg-options',
        *forced,
        check=False)
    assert_one_error(script, *expected)
    # mim runs that script: its line comes first on stderr, mim's own
    # "Testing command is ..." alone on stdout, and mim fails
    mim = run_cli(
        'mim',
        'test',
        'mmseg',
        ADE,
        '--checkpoint',
        tiny_ckpt,
        '--work-dir',
        tmp_path / 'c',
        '--cfg-options',
        *forced,
        check=False)
    assert mim.returncode != 0
    assert mim.stdout.startswith('Testing command is')
    assert len(mim.stdout.strip().splitlines()) == 1
    assert user_lines(mim.stderr)[0].startswith('error: checkpoint ')
    assert not list((tmp_path / 'c').glob('*/*.json'))


def test_a_hand_edited_checkpoint_is_refused(tmp_path, tiny_ckpt):
    ckpt = torch.load(tiny_ckpt, map_location='cpu', weights_only=True)
    state = ckpt['state_dict']
    state['clip.model.visual.proj'] = state['clip.model.visual.proj'][:, :8]
    del state['clip.model.ln_final.bias']
    edited = tmp_path / 'edited.pth'
    torch.save(ckpt, edited)
    proc = run_cli(
        mmseg_test_script(),
        ADE,
        edited,
        '--work-dir',
        tmp_path,
        '--cfg-options',
        ade_root(),
        *FAST,
        check=False)
    assert_one_error(proc, 'clip.model.visual.proj (64, 8) vs (64, 32)',
                     'clip.model.ln_final.bias', 'export it again')


def test_a_checkpoint_of_another_model_is_refused(tmp_path):
    """A plain mmseg checkpoint (no OV-EVA meta) is checked by its
    tensors."""
    plain = tmp_path / 'deeplab.pth'
    torch.save(
        dict(
            meta=dict(mmseg_version='1.2.2'),
            state_dict={'backbone.conv1.weight': torch.zeros(64, 3, 7, 7)}),
        plain)
    proc = run_cli(
        'tools/test.py',
        ADE,
        '--checkpoint',
        plain,
        '--work-dir',
        tmp_path,
        '--cfg-options',
        *TINY,
        ade_root(),
        *FAST,
        check=False)
    assert_one_error(proc, '62 tensors of the model are not in it',
                     'backbone.conv1.weight', 'records no OV-EVA model')


def test_proxyclip_checkpoint_under_its_config_and_another(tmp_path):
    """A tiny ProxyCLIP checkpoint: its config without tiny options scores
    what the tiny options score; under the CLIP-only config the ProxyCLIP
    backend it holds is built (said in the log); forcing the CLIP-only
    backend is refused, naming the VFM tensors."""
    ckpt = export(PROXY, tmp_path / 'proxy.pth', *TINY, *TINY_VFM)
    root = ade_root()
    proc = run_cli('tools/test.py', PROXY, '--checkpoint', ckpt, '--work-dir',
                   tmp_path / 'ckpt', '--cfg-options', root, *FAST)
    assert "vfm: {'name': 'facebook/dino-vitb8'" in proc.stdout
    run_cli('tools/test.py', PROXY, '--work-dir', tmp_path / 'tiny',
            '--cfg-options', *TINY, *TINY_VFM, root, *FAST)
    for key in ('aAcc', 'mIoU', 'mAcc'):
        assert metrics(tmp_path / 'ckpt')[key] == metrics(tmp_path /
                                                          'tiny')[key]
    other = run_cli('mim', 'test', 'mmseg', ADE, '--checkpoint', ckpt,
                    '--work-dir', tmp_path / 'other', '--cfg-options', root,
                    *FAST)
    assert 'type: DenseCLIPEncoder -> ProxyCLIPEncoder' in other.stdout
    assert 0 <= metrics(tmp_path / 'other')['mIoU'] <= 100
    forced = run_cli(
        'tools/test.py',
        ADE,
        '--checkpoint',
        ckpt,
        '--work-dir',
        tmp_path / 'forced',
        '--cfg-options',
        'model.clip.type=DenseCLIPEncoder',
        root,
        *FAST,
        check=False)
    assert_one_error(forced, 'of its tensors are not in the model',
                     'clip.vfm.', 'model.clip.type=ProxyCLIPEncoder')


def test_corrclip_checkpoint_brings_its_dino(tmp_path):
    from test_corrclip import TINY_CORR, write_masks
    data = shared_data('VOCdevkit/VOC2012')
    masks = tmp_path / 'masks'
    write_masks(masks, data, 'JPEGImages', 'SegmentationClass')
    where = [
        f'model.clip.masks.root={masks}',
        f'test_dataloader.dataset.data_root={data}', NO_PAMR,
        'model.templates=single', 'test_dataloader.dataset.indices=1'
    ]
    ckpt = export(CORR, tmp_path / 'corr.pth', *TINY_CORR, where[0])
    meta = torch.load(ckpt, map_location='cpu', weights_only=True)['meta']
    assert meta['clip']['dino']['name'] == 'ov-eva-tiny-dino'
    proc = run_cli('mim', 'test', 'mmseg', CORR, '--checkpoint', ckpt,
                   '--work-dir', tmp_path / 'ckpt', '--cfg-options', *where)
    assert "name: 'ViT-B-16-quickgelu' -> 'ov-eva-tiny12'" in proc.stdout
    run_cli('tools/test.py', CORR, '--work-dir', tmp_path / 'tiny',
            '--cfg-options', *TINY_CORR, *where)
    assert metrics(tmp_path / 'ckpt')['mIoU'] == metrics(tmp_path /
                                                         'tiny')['mIoU']
    # another tiny CLIP forced on the command line: refused
    forced = run_cli(
        'tools/test.py',
        CORR,
        '--checkpoint',
        ckpt,
        '--work-dir',
        tmp_path / 'forced',
        '--cfg-options',
        'model.clip.name=ov-eva-tiny',
        'model.clip.pretrained=None',
        *where,
        check=False)
    assert_one_error(forced, 'CorrCLIPEncoder',
                     '--cfg-options model.clip.name=ov-eva-tiny12')


@pytest.mark.parametrize('key,instead', [
    ('class_file', 'test_dataloader.dataset.class_file=...'),
    ('data_root', 'test_dataloader.dataset.data_root=...'),
    ('img_suffix', 'test_dataloader.dataset.img_suffix=...'),
    ('bg_idx', 'model.bg_idx=...'),
])
def test_top_level_variables_already_used_are_refused(key, instead):
    proc = run_cli(
        'tools/test.py',
        'configs/custom/oveva_vitb16_my_dataset.py',
        '--cfg-options',
        f'{key}=1',
        check=False)
    line = assert_one_error(proc, f'--cfg-options {key}:', instead)
    assert 'changes nothing' in line


def test_runtime_keys_stay_allowed(tmp_path, tiny_ckpt):
    """work_dir and randomness are read by mmengine at the top level."""
    run_cli('tools/test.py', ADE, '--checkpoint', tiny_ckpt,
            '--cfg-options', f'work_dir={tmp_path / "w"}', 'randomness.seed=0',
            ade_root(), *FAST)
    assert 0 <= metrics(tmp_path / 'w')['mIoU'] <= 100


@pytest.mark.parametrize('option,expected', [
    ('model.clip.nmae=x',
     "model.clip.nmae: DenseCLIPEncoder has no setting 'nmae' "
     '(did you mean name?)'),
    ('model.classes=no_such_classes.txt',
     "cannot read class file 'no_such_classes.txt'"),
])
def test_config_mistakes_come_before_any_log(tmp_path, tiny_ckpt, option,
                                             expected):
    """Found while building the model, yet the first and only thing
    printed: by tools/test.py and by the mmseg script mim runs."""
    options = [option, ade_root(), *FAST]
    proc = run_cli(
        'tools/test.py',
        ADE,
        '--work-dir',
        tmp_path / 'a',
        '--cfg-options',
        *options,
        check=False)
    assert_one_error(proc, expected)
    script = run_cli(
        mmseg_test_script(),
        ADE,
        tiny_ckpt,
        '--work-dir',
        tmp_path / 'b',
        '--cfg-options',
        *options,
        check=False)
    assert_one_error(script, expected)
