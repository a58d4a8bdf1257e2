"""The tools' memory policy: large blocks come from malloc's heap and are
reused from image to image, instead of being mapped and faulted in anew."""
import ctypes
import os
import subprocess
import sys

import pytest
from conftest import REPO, TINY, run_cli, run_demo, shared_data

REUSED = 'large buffers are reused from image to image'
# bytes malloc has in separately mapped blocks, after a 200 MB tensor
PROBE = '''
import ctypes, torch
import ov_eva
from ov_eva.memory import reuse_freed_memory
class Info(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        'arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks '
        'fordblks keepcost').split()]
libc = ctypes.CDLL(None)
libc.mallinfo2.restype = Info
applied = reuse_freed_memory()
block = torch.ones(50_000_000)
print(applied, libc.mallinfo2().hblkhd)
'''


def glibc() -> bool:
    try:
        return hasattr(ctypes.CDLL(None), 'mallinfo2')
    except OSError:
        return False


@pytest.mark.skipif(
    not sys.platform.startswith('linux') or not glibc(),
    reason='the policy is for glibc malloc (mallinfo2, glibc >= 2.33)')
@pytest.mark.parametrize('switch,applied', [('1', True), ('0', False)])
def test_large_blocks_come_from_the_heap(switch, applied):
    out = subprocess.run([sys.executable, '-c', PROBE],
                         cwd=REPO,
                         capture_output=True,
                         text=True,
                         check=True,
                         env=dict(os.environ, OV_EVA_REUSE_MEMORY=switch))
    said, mapped = out.stdout.split()[-2:]
    assert said == str(applied)
    if applied:  # 200 MB served from the heap: nothing mapped for it
        assert int(mapped) < 50 * 2**20, out.stdout
        assert REUSED in out.stdout + out.stderr
    else:  # glibc's default: the block is mapped on its own
        assert int(mapped) >= 190 * 10**6, out.stdout
        assert REUSED not in out.stdout + out.stderr


def test_the_tools_apply_it_and_say_how_to_turn_it_off(tmp_path):
    image = next((shared_data('ADEChallengeData2016') / 'images' /
                  'validation').glob('*.jpg'))
    on = run_demo(
        str(image), '--classes', 'sky', 'wall', '--out', tmp_path / 'on')
    assert REUSED in on.stdout + on.stderr
    assert 'OV_EVA_REUSE_MEMORY=0' in on.stdout + on.stderr
    off = run_cli(
        'tools/demo.py',
        str(image),
        '--classes',
        'sky',
        'wall',
        '--out',
        tmp_path / 'off',
        '--device',
        'cpu',
        '--cfg-options',
        *TINY,
        env={'OV_EVA_REUSE_MEMORY': '0'})
    assert REUSED not in off.stdout + off.stderr
