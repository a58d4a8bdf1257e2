"""Shared fixtures: the tiny CLIP, the real dataset samples, the CLI."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# The real dataset samples: $OV_EVA_SAMPLES, else ../shared/data beside the
# repo (CI's layout). Tests that need them skip without.
SAMPLES_ENV = 'OV_EVA_SAMPLES'
SAMPLES_LAYOUT = ('ADEChallengeData2016/ (images/validation, '
                  'annotations/validation), VOCdevkit/VOC2012/, cityscapes/ '
                  "(leftImg8bit/val, gtFine/val), in mmseg's layouts")


def samples_folder() -> Path:
    """Where the real samples are looked for."""
    given = os.environ.get(SAMPLES_ENV)
    return Path(given).expanduser() if given else \
        REPO.parent / 'shared' / 'data'


SHARED_DATA = samples_folder()
TINY = ['model.clip.name=ov-eva-tiny', 'model.clip.pretrained=None']
# the tiny random VFM of the ProxyCLIP configs (a transformers config dict)
TINY_VFM = [
    'model.clip.vfm.name=ov-eva-tiny-dino', 'model.clip.vfm.pretrained=None'
]
# NACLIP's protocol (every OV-EVA config) runs PAMR at the original image
# size, seconds per image on these CPUs: tests about something else skip it
NO_PAMR = 'model.pamr=None'


@pytest.fixture(autouse=True, scope='session')
def _isolated_cache(tmp_path_factory):
    """Text-embedding caches go to a temp folder, never to ~/.cache, and no
    hub is ever contacted."""
    os.environ['OV_EVA_CACHE'] = str(tmp_path_factory.mktemp('ov_eva_cache'))
    os.environ['HF_HUB_OFFLINE'] = '1'


def shared_data(name: str) -> Path:
    """A dataset folder of the real samples, or skip saying how to get
    them."""
    path = samples_folder() / name
    if not path.exists():
        pytest.skip(f'needs the real samples {path}: set {SAMPLES_ENV} to a '
                    f'folder holding {SAMPLES_LAYOUT}')
    return path


def run_cli(*args, timeout=600, check=True, env=None):
    """Run a command of the project (``tools/...`` or ``mim``) as a user
    would, from the repo root, with this interpreter's venv on PATH."""
    full_env = dict(os.environ, PYTHONUNBUFFERED='1', **(env or {}))
    bin_dir = str(Path(sys.executable).parent)
    full_env['PATH'] = bin_dir + os.pathsep + full_env.get('PATH', '')
    cmd = [sys.executable, *args] if str(
        args[0]).endswith('.py') else list(args)
    proc = subprocess.run([str(a) for a in cmd],
                          cwd=REPO,
                          env=full_env,
                          capture_output=True,
                          text=True,
                          timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f'{cmd} failed ({proc.returncode}):\n'
                             f'{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}')
    return proc


def free_port() -> int:
    """A TCP port free on the loopback interface now."""
    import socket
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def run_torchrun(tool, *args, nproc=2, env=None):
    """Run ``tool`` in ``nproc`` CPU processes under ``torchrun`` (mmengine's
    pytorch launcher), like ``run_cli``."""
    return run_cli(
        sys.executable,
        '-m',
        'torch.distributed.run',
        '--nproc_per_node',
        str(nproc),
        '--master_port',
        str(free_port()),
        tool,
        *args,
        '--launcher',
        'pytorch',
        env=env)


def run_demo(*args, options=(), check=True, timeout=600):
    """tools/demo.py on the tiny random CLIP, on the CPU."""
    return run_cli(
        'tools/demo.py',
        *args,
        '--device',
        'cpu',
        '--cfg-options',
        *TINY,
        *options,
        timeout=timeout,
        check=check)


def overlay_outlines(label):
    """The pixels tools/demo.py draws as region outlines: those whose right
    or lower neighbour has another label, thickened for large images."""
    import cv2
    import numpy as np
    edges = np.zeros(label.shape, dtype=bool)
    edges[:, :-1] |= label[:, 1:] != label[:, :-1]
    edges[:-1] |= label[1:] != label[:-1]
    thick = max(1, round(min(label.shape) / 300))
    return cv2.dilate(
        edges.astype(np.uint8), np.ones((thick, thick), np.uint8)).astype(bool)


def demo_outputs(prefix):
    """The three files the demo writes for one image, by output prefix."""
    return (prefix.with_name(f'{prefix.name}_overlay.png'),
            prefix.with_name(f'{prefix.name}_label.png'),
            prefix.with_name(f'{prefix.name}.json'))


@pytest.fixture(scope='session')
def tiny_segmentor_cfg():
    return dict(
        type='OVEVASegmentor',
        # float32: these tests compare results to the last digits
        clip=dict(name='ov-eva-tiny', pretrained=None, autocast='fp32'),
        classes=['sky', 'wall, brick wall', 'cat'],
        templates='single',
        text_cache_dir=False)
