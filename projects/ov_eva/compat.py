"""Make the pinned CPU stack importable; a no-op where the real libraries are.

Two gaps, both in third-party packages, are bridged here and nowhere else:

* ``torchvision`` wheels from PyPI are CUDA builds. Beside a CPU-only torch
  their compiled ops fail to load, and torchvision then dies at import on two
  fake-kernel registrations it does not guard (``nms``, ``qnms``). We only use
  torchvision through open_clip's transforms, so declaring those two operator
  schemas (never implementing them) lets the import finish.
* ``mmcv-lite`` ships no compiled ``mmcv._ext``, yet mmseg imports ``mmcv.ops``
  at module level. A stand-in module whose every op raises a clear error keeps
  mmseg importable; OV-EVA calls no mmcv op.

Both run only when the real import fails, so a full mmcv or a matching
torchvision build is used untouched.
"""
import importlib.machinery
import importlib.util
import sys
import types

import torch

_TORCHVISION_SCHEMAS = {
    'nms': 'nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor',
    'qnms': 'qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor',
}
# torch.library.Library deregisters its definitions when garbage collected.
_libraries = []


def _import_torchvision() -> None:
    if importlib.util.find_spec('torchvision') is None:
        return
    try:
        import torchvision  # noqa: F401
        return
    except RuntimeError as error:
        if 'torchvision::' not in str(error):
            raise
    for name in [m for m in sys.modules if m.split('.')[0] == 'torchvision']:
        del sys.modules[name]
    library = torch.library.Library('torchvision', 'DEF')
    for schema in _TORCHVISION_SCHEMAS.values():
        library.define(schema)
    _libraries.append(library)
    import torchvision  # noqa: F401,F811


class _MissingMMCVOps(types.ModuleType):
    """Stand-in for ``mmcv._ext``: attribute lookups succeed, calls fail."""

    def __getattr__(self, name):
        if name.startswith('__'):
            raise AttributeError(name)

        def unavailable(*args, **kwargs):
            raise RuntimeError(
                f'mmcv op {name!r} is not available: mmcv-lite has no '
                'compiled ops. Install full mmcv (pip install "mmcv>=2.0.0rc4,'
                '<2.2.0") if you need mmcv.ops.')

        return unavailable


def _provide_mmcv_ext() -> None:
    if importlib.util.find_spec('mmcv') is None or 'mmcv._ext' in sys.modules:
        return
    if importlib.util.find_spec('mmcv._ext') is None:
        stand_in = _MissingMMCVOps('mmcv._ext')
        # A spec without a loader: mmengine's mmcv_full_available() then
        # (rightly) answers False instead of tripping over a missing spec.
        stand_in.__spec__ = importlib.machinery.ModuleSpec('mmcv._ext', None)
        sys.modules['mmcv._ext'] = stand_in


def _require_mmcv() -> None:
    """mmseg imports mmcv, which setup.cfg cannot require: its full build and
    mmcv-lite install the same package (see ``install_requires`` there)."""
    if importlib.util.find_spec('mmcv') is None:
        raise ImportError(
            'OV-EVA needs mmcv (mmsegmentation imports it): pip install '
            '"ov-eva[mmcv-lite]" (CPU, no compiled ops) or mim install '
            '"mmcv>=2.0.0rc4,<2.2.0" (full mmcv for your torch and CUDA)')


def install() -> None:
    """Apply both bridges; safe to call more than once."""
    _require_mmcv()
    _import_torchvision()
    _provide_mmcv_ext()


def is_mmcv_ext_stand_in() -> bool:
    return isinstance(sys.modules.get('mmcv._ext'), _MissingMMCVOps)
