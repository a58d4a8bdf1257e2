"""The bridges for the pinned CPU stack, and that they stand aside for the
real libraries."""
import subprocess
import sys
import textwrap

import pytest

from ov_eva import compat


def test_torchvision_imports_and_transforms_work():
    import torch
    import torchvision.transforms as T
    out = T.Resize(8)(torch.rand(3, 16, 32))
    assert out.shape == (3, 8, 16)


def test_mmcv_ops_stand_in_fails_clearly_when_called():
    if not compat.is_mmcv_ext_stand_in():
        pytest.skip('full mmcv with compiled ops is installed: no stand-in')
    import torch
    from mmcv.ops import nms
    from mmengine.utils.dl_utils import mmcv_full_available
    assert mmcv_full_available() is False
    with pytest.raises(RuntimeError, match='mmcv-lite has no compiled ops'):
        nms(torch.rand(2, 4), torch.rand(2), 0.5)


def test_no_op_where_real_libraries_are_present(tmp_path):
    """A torchvision that imports cleanly and an mmcv._ext that exists are
    left exactly as they are."""
    fake = tmp_path / 'torchvision'
    fake.mkdir()
    (fake / '__init__.py').write_text("REAL = True\n")
    script = textwrap.dedent(f"""
        import sys, types
        sys.path.insert(0, {str(tmp_path)!r})
        real_ext = types.ModuleType('mmcv._ext')
        sys.modules['mmcv._ext'] = real_ext
        import importlib.util
        spec = importlib.util.spec_from_file_location(
            'compat', {compat.__file__!r})  # without the package's imports
        compat = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(compat)
        compat.install()
        import torchvision
        assert torchvision.REAL, 'fake torchvision replaced'
        assert compat._libraries == [], 'schemas defined needlessly'
        assert sys.modules['mmcv._ext'] is real_ext
        assert not compat.is_mmcv_ext_stand_in()
        print('untouched')
    """)
    out = subprocess.run([sys.executable, '-c', script],
                         capture_output=True,
                         text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert 'untouched' in out.stdout
