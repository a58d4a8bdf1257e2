"""docs/extending.md: a backend added outside the package, as one module
and one config, runs through tools/test.py.

This file is that module: tools/test.py imports it through the config's
``custom_imports`` (``tests/`` on PYTHONPATH), which registers the backend.
"""
import json
import os
from pathlib import Path

import torch
import torch.nn.functional as F

from ov_eva.clip_encoder import CLIPTower
from ov_eva.registry import BACKENDS

try:  # imported by the test process, and again by tools/test.py
    from conftest import TINY, run_cli, shared_data
except ImportError:  # imported as a config's custom module
    pass

HERE = Path(__file__).resolve().parent


@BACKENDS.register_module(force=True)
class VanillaCLIPEncoder(CLIPTower):
    """CLIP's own last block, unchanged: its patch tokens as they are (the
    weakest training-free base, and the shortest)."""

    def _dense(self, images: torch.Tensor, visual) -> torch.Tensor:
        x, grid = self._tokens(images, visual)
        block = visual.transformer.resblocks[-1]
        if getattr(visual.transformer, 'batch_first', True):
            x = block(x)
        else:
            x = block(x.transpose(0, 1)).transpose(0, 1)
        return self._embed(visual, x[:, 1:], grid)


def test_toy_backend_runs_through_tools_test(tmp_path):
    data = shared_data('ADEChallengeData2016')
    config = tmp_path / 'vanilla_ade.py'
    config.write_text(
        f"_base_ = ['{HERE.parent}/configs/baselines/naclip_vitb16_ade.py']\n"
        "custom_imports = dict(imports=['ov_eva', 'test_extending'])\n"
        "model = dict(clip=dict(_delete_=True, type='VanillaCLIPEncoder', "
        "name='ViT-B-16', pretrained='openai'), pamr=None)\n")
    work = tmp_path / 'work'
    env = dict(PYTHONPATH=os.pathsep.join(
        [str(HERE), os.environ.get('PYTHONPATH', '')]))
    run_cli(
        'tools/test.py',
        config,
        '--work-dir',
        work,
        '--cfg-options',
        *TINY,
        f'test_dataloader.dataset.data_root={data}',
        env=env)
    metrics = json.loads(next(work.rglob('*.json')).read_text())
    assert 0 <= metrics['mIoU'] <= 100


def test_toy_backend_differs_from_naclip():
    """The registered backend is what the segmentor runs."""
    from mmseg.registry import MODELS
    cfg = dict(
        type='OVEVASegmentor',
        clip=dict(name='ov-eva-tiny', pretrained=None, autocast='fp32'),
        classes=['sky', 'wall', 'cat'],
        text_cache_dir=False)
    torch.manual_seed(0)
    naclip = MODELS.build(cfg).eval()
    torch.manual_seed(0)
    vanilla = MODELS.build(
        dict(cfg, clip=dict(cfg['clip'], type='VanillaCLIPEncoder'))).eval()
    assert isinstance(vanilla.clip, VanillaCLIPEncoder)
    vanilla.clip.load_state_dict(naclip.clip.state_dict())
    image = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        a, b = naclip.extract_feat(image), vanilla.extract_feat(image)
    assert a.shape == b.shape
    torch.testing.assert_close(F.normalize(b, dim=1), b)
    assert not torch.allclose(a, b)
