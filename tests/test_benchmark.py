"""The speed benchmark runs end to end and reports what it promises (speed
targets themselves are read from its output, not asserted here)."""
from conftest import run_cli


def test_benchmark_prints_stages_and_ratio():
    out = run_cli('tools/benchmark.py', 'configs/oveva_vitb16_ade.py',
                  '--images', '1', '--rounds', '1', '--cfg-options',
                  'model.clip.name=ov-eva-tiny')
    lines = out.stdout.strip().splitlines()
    assert lines[-1].startswith('ratio ov-eva/baseline: ')
    assert float(lines[-1].split(': ')[1]) > 0
    text = out.stdout
    for stage in ('image encoding', 'refinement', 'vocabulary lookup',
                  'scoring, merging, resizing', 'repeats'):
        assert stage in text
