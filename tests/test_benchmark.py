"""The speed benchmark runs end to end and reports what it promises (speed
targets themselves are read from its output, not asserted here)."""
import re

from conftest import NO_PAMR, run_cli, shared_data


def test_benchmark_prints_stages_and_ratio():
    samples = shared_data('ADEChallengeData2016') / 'images' / 'validation'
    out = run_cli('tools/benchmark.py', 'configs/oveva_vitb16_ade.py',
                  '--images', '1', '--rounds', '1', '--image-dir', samples,
                  '--cfg-options', 'model.clip.name=ov-eva-tiny', NO_PAMR)
    lines = out.stdout.strip().splitlines()
    assert lines[-1].startswith('ratio ov-eva/baseline: ')
    assert float(lines[-1].split(': ')[1]) > 0
    text = out.stdout
    for stage in ('image encoding', 'refinement', 'vocabulary lookup',
                  'post-processing', 'scoring, merging, resizing', 'repeats',
                  'matmul rate: '):
        assert stage in text
    models = re.findall(
        r'^(baseline|ov-eva \(warm caches\)): ([\d.]+) images/s, \d+ '
        r'ms/image, peak memory ([\d.]+) GiB$', text, re.M)
    assert [m[0] for m in models] == ['baseline', 'ov-eva (warm caches)']
    assert all(float(m[1]) > 0 and 0.1 < float(m[2]) < 20 for m in models)
    floors = re.findall(
        r'^  (image encoding|whole image) .* ([\d.]+) GFLOP, floor .*: +'
        r'([\d.]+)% of the matmul rate$', text, re.M)
    assert len(floors) == 4, text
    assert all(
        float(gflop) > 0 and float(share) > 0 for _, gflop, share in floors)


def test_benchmark_puts_bases_side_by_side():
    """--bases: NACLIP and ProxyCLIP (tiny CLIP, tiny DINO) in one run, per
    stage, with each base's ratio to the first."""
    out = run_cli('tools/benchmark.py', '--bases',
                  'configs/baselines/naclip_vitb16_voc20.py',
                  'configs/baselines/proxyclip_vitb16_voc20.py', '--vfm',
                  'ov-eva-tiny-dino', '--images', '1', '--rounds', '1',
                  '--cfg-options', 'model.clip.name=ov-eva-tiny', NO_PAMR)
    text = out.stdout
    models = re.findall(
        r'^(\w+): ([\d.]+) images/s, \d+ ms/image, peak memory ([\d.]+) GiB$',
        text, re.M)
    assert [m[0] for m in models
            ] == ['naclip_vitb16_voc20', 'proxyclip_vitb16_voc20']
    assert all(float(m[1]) > 0 and 0.1 < float(m[2]) < 20 for m in models)
    naclip, proxy = text.split('proxyclip_vitb16_voc20: ')
    for stage in ('CLIP tower (to the last block)', 'last block'):
        assert stage in naclip
    for stage in ('CLIP tower (to the last block)', 'VFM tower',
                  'proxy attention (last block)'):
        assert re.search(rf'^  {re.escape(stage)} +[\d.]+ ms/image', proxy,
                         re.M), stage
    ratios = re.findall(r'^ratio (\w+)/naclip_vitb16_voc20: ([\d.]+)$', text,
                        re.M)
    assert [r[0] for r in ratios] == [m[0] for m in models]
    assert float(ratios[0][1]) == 1.0 and float(ratios[1][1]) > 0


def test_benchmark_times_corrclip_stages():
    """--bases with CorrCLIP and CorrCLIPv2 (tiny CLIP, DINO and SAM2): the
    VFM tower, correlation, CLIP branches and mask generation (SAM2 run on
    the image) with their shares, CorrCLIPv2's retrieval from a synthetic
    bank, and the ratios to NACLIP."""
    out = run_cli('tools/benchmark.py', '--bases',
                  'configs/baselines/naclip_vitb16_voc20.py',
                  'configs/baselines/corrclip_vitb16_voc20.py',
                  'configs/baselines/corrclipv2_vitb16_voc20.py', '--vfm',
                  'ov-eva-tiny-dino', '--masks', 'ov-eva-tiny-sam2',
                  '--bank-regions', '2000', '--images', '1', '--rounds', '1',
                  '--cfg-options', 'model.clip.name=ov-eva-tiny12', NO_PAMR)
    corr, v2 = out.stdout.split('corrclip_vitb16_voc20: ')[1].split(
        'corrclipv2_vitb16_voc20: ')
    for stage in ('VFM tower', 'retrieval (pool, search, read stores)',
                  'CLIP tower (three branches)', 'support fusion',
                  'mask generation'):
        assert re.search(rf'^  {re.escape(stage)} +[\d.]+ ms/image', v2,
                         re.M), stage
    assert re.search(
        r'^ratio corrclipv2_vitb16_voc20/naclip_vitb16_voc20: [\d.]+$',
        out.stdout, re.M)
    shares = {}
    for stage in ('mask generation', 'VFM tower', 'correlation',
                  'CLIP tower (three branches)'):
        found = re.search(
            rf'^  {re.escape(stage)} +([\d.]+) ms/image \( *([\d.]+)%\)', corr,
            re.M)
        assert found, stage
        assert float(found.group(1)) > 0
        shares[stage] = float(found.group(2))
    assert 0 < sum(shares.values()) <= 100.1
    ratio = re.search(
        r'^ratio corrclip_vitb16_voc20/naclip_vitb16_voc20: ([\d.]+)$',
        out.stdout, re.M)
    assert ratio and float(ratio.group(1)) > 0


def test_page_latency_benchmark():
    """tools/benchmark_app.py: the page (a real tools/app.py process, asked
    through gradio_client) beside the same segmentation in-process."""
    out = run_cli('tools/benchmark_app.py', '--rounds', '1', '--cfg-options',
                  'model.clip.name=ov-eva-tiny', 'model.clip.pretrained=None',
                  NO_PAMR)
    rows = re.findall(
        r'^(5 classes typed|no classes \(lexicon\)): page ([\d.]+) s, '
        r'in-process ([\d.]+) s, ratio ([\d.]+)$', out.stdout, re.M)
    assert [r[0] for r in rows] == ['5 classes typed', 'no classes (lexicon)']
    assert all(float(v) > 0 for r in rows for v in r[1:]), out.stdout
    assert 'PAMR off' in out.stdout


def test_benchmark_device_and_amp_mistakes_answer_in_one_line(tmp_path):
    """--device cuda without a GPU, --amp fp16 on the CPU and an image
    folder without images stop before any model is built, with one error
    line naming the flag and the fix."""
    import torch
    cases = [(('--amp', 'fp16', '--device', 'cpu'), '--amp fp16 on the CPU'),
             (('--device', 'cpu', '--image-dir', str(tmp_path)),
              f'--image-dir {str(tmp_path)!r} holds no')]
    if not torch.cuda.is_available():
        cases.append((('--device', 'cuda'), '--device cuda: no CUDA GPU'))
    for flags, message in cases:
        out = run_cli('tools/benchmark.py', *flags, check=False)
        assert out.returncode == 2, out.stderr
        lines = out.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith('error: ' + message)
        assert 'use' in lines[0] and out.stdout == ''


def test_benchmark_bf16_autocast_on_cpu():
    """--amp bf16 on the CPU: the image tower runs in bfloat16 (the config
    says fp32 here, the flag wins)."""
    out = run_cli('tools/benchmark.py', '--device', 'cpu', '--amp', 'bf16',
                  '--bases', 'configs/baselines/naclip_vitb16_voc20.py',
                  '--images', '1', '--rounds', '1', '--cfg-options',
                  'model.clip.name=ov-eva-tiny', 'model.clip.autocast=fp32',
                  NO_PAMR)
    assert 'device cpu, autocast bf16' in out.stdout
    assert 'image towers run in: naclip_vitb16_voc20 bfloat16' in out.stdout
    assert out.stdout.strip().splitlines()[-1].startswith(
        'ratio naclip_vitb16_voc20/naclip_vitb16_voc20: ')


def test_stream_benchmark_counts_requests_and_compares_with_the_base():
    """tools/benchmark_stream.py: requests counted at the loopback server
    per run, OV-EVA's ms/frame beside the base's, in turn."""
    out = run_cli('tools/benchmark_stream.py', '--frames', '6', '--latency',
                  '0.2', '--rounds', '1', '--cfg-options',
                  'model.clip.name=ov-eva-tiny', 'model.clip.pretrained=None',
                  NO_PAMR)
    round_ = re.search(
        r'^round 1: 6 frames, 2 scenes, (\d+) MLLM requests; OV-EVA '
        r'(\d+) ms/frame, base (\d+) ms/frame', out.stdout, re.M)
    assert round_, out.stdout
    # two scenes, one short dialogue each: asked, and never per frame
    assert 2 <= int(round_[1]) <= 8
    assert int(round_[2]) > 0 and int(round_[3]) > 0
    assert re.search(r'ratio [\d.]+ \(target <= 1.3\)', out.stdout)
    assert 'frames by vocabulary (last round): lexicon' in out.stdout
    # every frame of every round, split by the vocabulary it was segmented
    # with: the lexicon until the answer arrives, then the MLLM's
    split = re.search(
        r'^OV-EVA frames by vocabulary \(all rounds\): lexicon (\d+) '
        r'frames, median (\d+ ms|n/a); mllm (\d+) frames, median '
        r'(\d+ ms|n/a)$', out.stdout, re.M)
    assert split, out.stdout
    lexicon, mllm = int(split[1]), int(split[3])
    assert lexicon >= 1 and lexicon + mllm == 6
    assert (split[2] == 'n/a') == (lexicon == 0)
    assert (split[4] == 'n/a') == (mllm == 0)
