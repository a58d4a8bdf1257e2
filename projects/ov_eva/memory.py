"""How the tools' processes keep memory: large blocks reused, not remapped.

Every image makes a few buffers of 100-500 MB (the merged logits, their
resize to the photo). glibc's malloc maps each block above 32 MB afresh and
unmaps it when it is freed, so every image pays page faults on all of them,
which here costs more than the arithmetic on them (the per-pixel stages run
2-3x slower). ``reuse_freed_memory`` has malloc serve large blocks from its
heap and keep freed memory for the next image, as
``GLIBC_TUNABLES=glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=...``
would at start-up; the process then holds its peak memory until it exits
(about 10% more peak RSS here).

Only OV-EVA's own tools call it, for their own processes: importing
``ov_eva`` changes nothing. ``OV_EVA_REUSE_MEMORY=0`` turns it off.
"""
import ctypes
import os
import sys

from mmengine.logging import print_log

M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4  # glibc's mallopt parameters
ENV = 'OV_EVA_REUSE_MEMORY'


def reuse_freed_memory() -> bool:
    """Apply the policy above to this process; False where it is turned
    off or malloc is not glibc's (nothing changes then)."""
    if os.environ.get(ENV, '1') == '0' or not sys.platform.startswith('linux'):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int,
                                         ctypes.c_int], ctypes.c_int
    applied = mallopt(M_MMAP_MAX, 0) == 1 and mallopt(M_TRIM_THRESHOLD,
                                                      2**31 - 1) == 1
    if applied:
        print_log(
            'memory: large buffers are reused from image to image '
            f'(the process keeps its peak memory; {ENV}=0 turns this off)',
            logger='current')
    return applied
