"""Dense-feature backends: the registry, ProxyCLIP's formulas against the
ones written out here, the frozen VFMs (tiny random transformers models
from config dicts, local folders, offline errors), and ProxyCLIP configs
through export_checkpoint + mim test and tools/test.py on real samples."""
import math
import time

import pytest
import torch
import torch.nn.functional as F
from conftest import REPO, TINY, TINY_VFM, run_cli, shared_data

import ov_eva  # noqa: F401  (registers modules, installs compat)
from ov_eva.backends import (BACKENDS, DenseCLIPEncoder, ProxyCLIPEncoder,
                             build_backend)
from ov_eva.backends.vfm import (TINY_VFMS, build_vfm, hub_pos_embedding,
                                 vfm_config, vfm_features)

OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def proxy(vfm='ov-eva-tiny-dino', **kwargs):
    torch.manual_seed(0)
    return ProxyCLIPEncoder(
        'ov-eva-tiny',
        vfm=dict(name=vfm, pretrained=None),
        autocast='fp32',
        **kwargs)


def test_registry_builds_each_backend_and_names_the_known_ones():
    assert {'DenseCLIPEncoder',
            'ProxyCLIPEncoder'} <= set(BACKENDS.module_dict)
    plain = build_backend(dict(name='ov-eva-tiny', variant='sclip'))
    assert type(plain) is DenseCLIPEncoder and plain.variant == 'sclip'
    built = build_backend(
        dict(
            type='ProxyCLIPEncoder',
            name='ov-eva-tiny',
            vfm=dict(name='ov-eva-tiny-dinov2', pretrained=None)))
    assert type(built) is ProxyCLIPEncoder
    with pytest.raises(ValueError, match="did you mean 'ProxyCLIPEncoder'"):
        build_backend(dict(type='ProxyClipEncoder', name='ov-eva-tiny'))
    with pytest.raises(ValueError, match='model.clip.vfm'):
        build_backend(
            dict(type='ProxyCLIPEncoder', name='ov-eva-tiny', vfm='dino'))


def reference_proxy(encoder, image, beta=1.2, gamma=3.0):
    """ProxyCLIP's last block written out head by head: the input of the
    last CLIP block from open_clip's own forward, values bilinearly resized
    to the VFM grid, A = gamma (S - beta mean S) with negatives masked,
    softmax rows, output projection, ln_post, proj, L2 norm."""
    visual = encoder.model.visual
    block = visual.transformer.resblocks[-1]
    captured = {}
    handle = block.register_forward_pre_hook(
        lambda mod, args: captured.setdefault('x', args[0]))
    visual(image)
    handle.remove()
    x = captured['x'][0]
    attn = block.attn
    heads, c = attn.num_heads, x.shape[1]
    d = c // heads
    gh, gw = visual.grid_size
    v = block.ln_1(x) @ attn.in_proj_weight[2 * c:].T + \
        attn.in_proj_bias[2 * c:]
    # the VFM sees the image in ImageNet's normalisation
    mean, std = torch.tensor(OPENAI_MEAN), torch.tensor(OPENAI_STD)
    pixels = image * std.view(1, 3, 1, 1) + mean.view(1, 3, 1, 1)
    pixels = (pixels - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)) / \
        torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    feats = vfm_features(encoder.vfm, pixels)[0]  # (C', H, W)
    H, W = feats.shape[-2:]
    f = feats.flatten(1)
    f = f / f.norm(dim=0, keepdim=True)
    S = f.T @ f
    A = gamma * (S - beta * S.mean())
    A[A < 0] = -math.inf
    P = torch.softmax(A, dim=-1)
    outs = []
    for h in range(heads):
        vh = v[1:, h * d:(h + 1) * d].T.reshape(1, d, gh, gw)
        vh = F.interpolate(
            vh, size=(H, W), mode='bilinear',
            align_corners=False)[0].flatten(1).T
        outs.append(P @ vh)
    out = attn.out_proj(torch.cat(outs, dim=1))
    tokens = F.normalize(visual.ln_post(out) @ visual.proj, dim=-1)
    return tokens.T.reshape(-1, H, W)


@pytest.mark.parametrize('vfm', sorted(TINY_VFMS))
def test_proxyclip_matches_the_formula(vfm):
    encoder = proxy(vfm)
    image = torch.randn(1, 3, 224, 224)  # whole multiples of 56: no pad
    with torch.no_grad():
        got = encoder(image)[0]
        want = reference_proxy(encoder, image)
    patch = encoder.vfm.config.patch_size
    assert got.shape == (32, 224 // patch, 224 // patch)  # the VFM's grid
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)
    # beta and gamma matter
    other = proxy(vfm, beta=0.5, gamma=1.0)
    with torch.no_grad():
        assert not torch.allclose(other(image)[0], got, atol=1e-3)


def test_windows_are_padded_centred_to_multiples_of_56():
    encoder = proxy()
    rows, cols = encoder.fit(224, 300)
    assert (rows.pad_before, rows.pad_after) == (0, 0)
    assert (cols.pad_before, cols.pad_after, cols.upsampled,
            cols.offset) == (18, 18, 336, 18)
    image = torch.randn(1, 3, 224, 300)
    padded = F.pad(image, (18, 18, 0, 0))
    with torch.no_grad():
        got = encoder(image)
        want = encoder(padded)
    assert got.shape == (1, 32, 28, 42)
    torch.testing.assert_close(got, want)


def test_dino_positional_embedding_follows_the_hub_rule():
    """DINO's hub code: bicubic by the scale factor (g + 0.1) / g0, the
    native embedding for the native square grid; transformers' own rule
    (resize to the size) differs."""
    torch.manual_seed(0)
    pos = torch.randn(1, 1 + 16, 8)
    assert hub_pos_embedding(pos, (4, 4), 'vit') is pos
    got = hub_pos_embedding(pos, (6, 9), 'vit')
    grid = pos[:, 1:].reshape(1, 4, 4, 8).permute(0, 3, 1, 2)
    want = F.interpolate(grid, scale_factor=(6.1 / 4, 9.1 / 4), mode='bicubic')
    want = torch.cat([pos[:, :1], want.flatten(2).transpose(1, 2)], dim=1)
    torch.testing.assert_close(got, want)
    by_size = F.interpolate(grid, size=(6, 9), mode='bicubic')
    assert not torch.allclose(got[:, 1:], by_size.flatten(2).transpose(1, 2))
    reg = hub_pos_embedding(pos, (6, 9), 'dinov2_with_registers')
    want = F.interpolate(grid, size=(6, 9), mode='bicubic', antialias=True)
    torch.testing.assert_close(reg[:, 1:], want.flatten(2).transpose(1, 2))


def test_vfm_features_are_the_last_normalised_patch_tokens():
    torch.manual_seed(0)
    model = build_vfm(vfm_config('ov-eva-tiny-dinov2'))
    pixels = torch.randn(2, 3, 56, 84)
    with torch.no_grad():
        got = vfm_features(model, pixels)
        out = model(pixel_values=pixels).last_hidden_state
    assert got.shape == (2, 32, 4, 6)
    # class token and the 4 registers dropped
    torch.testing.assert_close(got.flatten(2).transpose(1, 2), out[:, 5:])


def test_vfm_from_a_local_folder_and_offline_errors(tmp_path, monkeypatch):
    torch.manual_seed(3)
    source = build_vfm(vfm_config('ov-eva-tiny-dino'))
    folder = tmp_path / 'dino'
    source.save_pretrained(folder)
    encoder = ProxyCLIPEncoder(
        'ov-eva-tiny', vfm=dict(name=str(folder), pretrained=str(folder)))
    assert not encoder.vfm_loaded
    encoder.load_pretrained()
    for key, value in source.state_dict().items():
        torch.testing.assert_close(encoder.vfm.state_dict()[key], value)
    monkeypatch.setenv('HF_HUB_OFFLINE', '1')
    start = time.monotonic()
    with pytest.raises(FileNotFoundError) as error:
        ProxyCLIPEncoder(
            'ov-eva-tiny',
            vfm=dict(
                name='facebook/dino-vitb8', pretrained='facebook/dino-vitb8'))
    assert time.monotonic() - start < 10
    message = str(error.value)
    assert 'facebook/dino-vitb8' in message
    assert 'model.clip.vfm.pretrained' in message and 'folder' in message
    with pytest.raises(FileNotFoundError, match='save_pretrained'):
        ProxyCLIPEncoder(
            'ov-eva-tiny',
            vfm=dict(name=str(tmp_path), pretrained=str(tmp_path)))


def test_checkpoints_keep_the_clip_keys_and_bring_the_vfm():
    encoder = proxy()
    state = encoder.state_dict()
    assert any(k.startswith('model.visual.') for k in state)
    assert any(k.startswith('vfm.embeddings.') for k in state)
    later = ProxyCLIPEncoder(
        'ov-eva-tiny',
        pretrained=None,
        autocast='fp32',
        vfm=dict(name='ov-eva-tiny-dino', pretrained='/nonexistent'))
    assert not later.vfm_loaded
    later.load_state_dict(state)
    assert later.vfm_loaded  # never reads /nonexistent
    image = torch.randn(1, 3, 112, 112)
    with torch.no_grad():
        torch.testing.assert_close(later(image), encoder(image))


def test_oveva_on_proxyclip_through_mim(tmp_path):
    """export_checkpoint + mim test of OV-EVA on ProxyCLIP (lexicon
    vocabulary) on a real ADE20K sample with the tiny CLIP and tiny DINO."""
    import json
    config = 'configs/oveva_proxyclip_vitb16_ade.py'
    data = shared_data('ADEChallengeData2016')
    ckpt = tmp_path / 'proxy.pth'
    out = run_cli('tools/export_checkpoint.py', config, ckpt, '--cfg-options',
                  *TINY, *TINY_VFM)
    assert 'wrote' in out.stdout
    state = torch.load(ckpt, map_location='cpu', weights_only=True)
    assert any(k.startswith('clip.vfm.') for k in state['state_dict'])
    run_cli('mim', 'test', 'mmseg', config, '--checkpoint', ckpt, '--work-dir',
            tmp_path / 'mim', '--cfg-options', *TINY, *TINY_VFM,
            f'test_dataloader.dataset.data_root={data}',
            'test_dataloader.dataset.indices=1')
    result = json.loads(next((tmp_path / 'mim').glob('*/*.json')).read_text())
    # random tiny weights: the numbers only have to be well-formed
    assert 0 <= result['mIoU'] <= 100 and 0 <= result['aAcc'] <= 100


def test_vocabulary_sources_key_on_the_clip_tower_alone():
    """A ProxyCLIP segmentor's lexicon keys its vocabulary cache by the CLIP
    tower alone, as tools/build_vocabulary.py (which binds the CLIP tower
    of any backend) does: precomputed vocabularies serve every base."""
    import inspect

    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    from mmseg.registry import MODELS

    from ov_eva.clip_encoder import CLIPTower
    cfg = Config.fromfile('configs/oveva_proxyclip_vitb16_ade.py')
    cfg.merge_from_dict({
        'model.clip.name': 'ov-eva-tiny',
        'model.clip.pretrained': None,
        'model.clip.vfm.name': 'ov-eva-tiny-dino',
        'model.clip.vfm.pretrained': None
    })
    init_default_scope('mmseg')
    torch.manual_seed(0)
    segmentor = MODELS.build(cfg.model)
    keys = inspect.signature(CLIPTower.__init__).parameters
    torch.manual_seed(0)
    tower = DenseCLIPEncoder(**{
        k: v
        for k, v in cfg.model.clip.items() if k in keys
    })
    assert segmentor.vocabulary.model_id == \
        f'ov-eva-tiny:{tower.fingerprint()}'
    assert segmentor.clip.fingerprint() == tower.fingerprint()


def _protocol_datasets():
    from mmengine.config import Config
    table = Config.fromfile(str(REPO / 'configs/_base_/protocols.py'))
    return set(table.protocol.proxyclip)


PROXYCLIP_CONFIGS = sorted(
    str(p.relative_to(REPO)) for p in [
        *(REPO / 'configs/baselines').glob('proxyclip_*.py'), *(
            REPO / 'configs').glob('oveva_proxyclip_*.py')
    ])


def test_every_proxyclip_config_builds_with_tiny_models():
    """Each shipped ProxyCLIP config names DINO ViT-B/8; those of two
    datasets (each kind: ViT-B/16, L/14, H/14 baselines, OV-EVA) build their
    segmentor with the tiny CLIP and DINO in place of the real ones. One
    runs through tools/test.py in test_protocols.py, one through mim
    above."""
    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    from mmseg.registry import MODELS
    # ViT-B/16, L/14, H/14 baselines and OV-EVA, one per protocol dataset
    assert len(PROXYCLIP_CONFIGS) == 4 * len(_protocol_datasets())
    init_default_scope('mmseg')
    for path in PROXYCLIP_CONFIGS:
        cfg = Config.fromfile(str(REPO / path))
        assert cfg.model.clip.type == 'ProxyCLIPEncoder'
        assert cfg.model.clip.vfm.name == 'facebook/dino-vitb8', path
        if not any(d in path for d in ('_ade.py', '_cityscapes.py')):
            continue  # the others differ from these in protocol keys only
        cfg.merge_from_dict({
            'model.clip.name': 'ov-eva-tiny',
            'model.clip.pretrained': None,
            'model.clip.vfm.name': 'ov-eva-tiny-dino',
            'model.clip.vfm.pretrained': None
        })
        model = MODELS.build(cfg.model)
        assert isinstance(model.clip, ProxyCLIPEncoder), path
        assert model.clip.pad_multiple == 56
        assert (model.clip.beta, model.clip.gamma) == (1.2, 3.0)
        assert (model.vocabulary is not None) == ('oveva_' in path)


def test_a_mistyped_proxyclip_setting_answers_in_one_line(tmp_path):
    proc = run_cli(
        'tools/test.py',
        'configs/baselines/proxyclip_vitb16_ade.py',
        '--work-dir',
        tmp_path,
        '--cfg-options',
        *TINY,
        *TINY_VFM,
        'model.clip.betta=1.0',
        check=False)
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = [
        line for line in proc.stderr.splitlines() if line.startswith('error:')
    ]
    assert len(lines) == 1, proc.stderr[-2000:]
    assert ("model.clip.betta: ProxyCLIPEncoder has no setting 'betta' "
            '(did you mean beta?)') in lines[0]
