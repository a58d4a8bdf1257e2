"""On a CUDA GPU (skipped elsewhere, saying so): a config through the
Runner gives the CPU's metrics, and the benchmark times and measures every
stage there. tools/gpu_check.sh runs these and the GPU figures."""
import json
import re

import pytest
import torch
from conftest import NO_PAMR, TINY, run_cli, shared_data

pytestmark = pytest.mark.skipif(
    not torch.cuda.is_available(),
    reason='no CUDA GPU visible to PyTorch (these run on a GPU machine: '
    'tools/gpu_check.sh)')


def test_runner_on_cuda_matches_cpu(tmp_path):
    """tools/test.py (config + Runner) on the GPU and, with the GPU hidden,
    on the CPU: the same metrics within float tolerance (fp32 on both)."""
    root = shared_data('VOCdevkit/VOC2012')
    options = [
        *TINY, NO_PAMR, 'model.clip.autocast=fp32',
        f'test_dataloader.dataset.data_root={root}'
    ]
    config = 'configs/baselines/naclip_vitb16_voc20.py'
    for name, env in (('gpu', {}), ('cpu', dict(CUDA_VISIBLE_DEVICES=''))):
        run_cli('tools/test.py', config, '--work-dir', tmp_path / name,
                '--cfg-options', *options, env=env)

    def metric(name):
        return json.loads(next((tmp_path / name).glob('*/*.json')).read_text())

    gpu, cpu = metric('gpu'), metric('cpu')
    for key in ('aAcc', 'mIoU', 'mAcc'):
        assert abs(gpu[key] - cpu[key]) <= 0.5, (key, gpu[key], cpu[key])


@pytest.mark.parametrize('amp', ['fp16', 'bf16'])
def test_benchmark_on_cuda_reports_stage_memory(amp):
    out = run_cli('tools/benchmark.py', '--device', 'cuda', '--amp', amp,
                  '--bases', 'configs/baselines/naclip_vitb16_voc20.py',
                  '--images', '2', '--rounds', '1', '--cfg-options',
                  'model.clip.name=ov-eva-tiny', NO_PAMR)
    assert f'autocast {amp}' in out.stdout
    assert torch.cuda.get_device_name(0) in out.stdout
    # each timed stage (not the remainder or the whole) has its own peak
    for stage in ('CLIP tower (to the last block)', 'last block',
                  'post-processing'):
        line = next(x for x in out.stdout.splitlines()
                    if x.startswith(f'  {stage} '))
        assert re.search(r'peak [\d.]+ GiB$', line), line
