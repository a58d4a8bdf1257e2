"""Compare configs on the same dataset: one markdown table of mIoU, mAcc,
aAcc, seconds per image and MLLM tokens, and for the baseline configs on
their official protocol (``configs/baselines/*``) the published mIoU with
its source and the difference. Configs with no class list
(``model.classes='auto'``, ``configs/vocabulary_free/``) find their own
classes per image; their mIoU, measured by matching each found class to its
nearest dataset class by CLIP text similarity, is a different metric and
goes in its own column, ``vocabulary-free mIoU****``.

Each config runs through ``tools/test.py`` (the real Runner) in a fresh
process, one after another, with the same ``--cfg-options`` (e.g. a
``data_root``) and ``--work-dir <work_dir>/<config stem>``; the metrics come
from the JSON the Runner writes there, the tokens from the vocabulary
prefetch summary in the run's log. A config that fails gets a row with its
error and the others still run; the exit status is then 1. The table is
printed and saved to ``--out`` (markdown) and beside it as JSON. Examples::

    python tools/compare.py configs/baselines/naclip_vitb16_ade.py \\
        configs/oveva_vitb16_ade.py configs/ablations/*.py
    python tools/compare.py configs/baselines/*_ade.py \\
        configs/oveva_vitb16_ade.py --work-dir work_dirs/cmp_ade \\
        --out ade.md --cfg-options \\
        test_dataloader.dataset.data_root=/data/ADEChallengeData2016
    # several GPUs: every rank runs the same sequence of tools/test.py runs
    # (each with its own rendezvous port, MASTER_PORT + i); rank 0 reports
    python -m torch.distributed.run --nproc_per_node 4 tools/compare.py \\
        configs/baselines/naclip_vitb16_ade.py configs/oveva_vitb16_ade.py \\
        --launcher pytorch

Each run's full stdout and stderr are kept in ``<work_dir>/<stem>/``
(``compare.stdout.log``, ``compare.stderr.log``).

``--figures N`` also saves each run's predictions (``tools/test.py
--save-predictions <work_dir>/<stem>/predictions``) and writes beside the
table, in ``<out stem>_figures/``: N grids (image | ground truth | each
config's prediction, one palette and one legend) of the images where the
configs disagree most with the first config (share of pixels whose class
differs), and a chart of each config's per-class IoU against the first
(``per_class_iou.png`` and ``.svg``); the table links them (see
docs/figures.md)::

    python tools/compare.py configs/baselines/naclip_vitb16_ade.py \\
        configs/oveva_vitb16_ade.py --figures 4 --out cmp/ade.md
"""
import argparse
import inspect
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional

from _cli import UserError, add_debug_flag, check_config_file, run
from mmengine.config import Config, DictAction  # no torch yet

TEST_TOOL = Path(__file__).resolve().parent / 'test.py'
# PrefetchSummary.format(): 'vocabulary prefetch: 3 images, 0 cache hits, 3
# new, 0 failed (class names only); 9 requests, tokens in 1200, out 300; ...'
PREFETCH_LINE = re.compile(
    r'vocabulary prefetch: (?P<images>\d+) images, .*?'
    r'(?P<requests>\d+) requests, tokens in (?P<prompt>\d+), '
    r'out (?P<completion>\d+)')
EXCEPTION_LINE = re.compile(r'^[A-Za-z_][\w.]*(Error|Exception|Interrupt)\b')
RANK_PREFIX = re.compile(r'^\[rank\d+\]:\s*')  # torch's on distributed runs
COLUMNS = ('config', 'vocabulary source', 'mIoU', 'mAcc', 'aAcc', 's/image*',
           'MLLM tokens**', 'published mIoU***', 'mIoU - published',
           'vocabulary-free mIoU****')
METRICS = ('mIoU', 'mAcc', 'aAcc')


def parse_args():
    parser = argparse.ArgumentParser(
        description=__doc__.split('\n')[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split('\n', 1)[1])
    parser.add_argument('configs', nargs='+', help='config files')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        default=[],
        help='key=value overrides given to every config (as tools/test.py)')
    parser.add_argument(
        '--work-dir',
        default='work_dirs/compare',
        help='each config runs in <work-dir>/<config stem>')
    parser.add_argument(
        '--out',
        help='markdown table (default <work-dir>/compare.md); the JSON goes '
        'beside it with the suffix .json')
    parser.add_argument(
        '--launcher',
        choices=['none', 'pytorch', 'slurm', 'mpi'],
        default='none',
        help='job launcher, passed on to tools/test.py')
    parser.add_argument(
        '--figures',
        type=int,
        default=0,
        metavar='N',
        help='also write N qualitative grids (the images where the configs '
        'differ most) and a per-class IoU chart against the first config, '
        'in <out stem>_figures/ beside the table (default: none)')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    add_debug_flag(parser)
    args = parser.parse_args()
    args.out = Path(args.out or Path(args.work_dir) / 'compare.md')
    if args.out.suffix == '.json':
        raise UserError('--out is the markdown table; its JSON twin is '
                        'written beside it')
    if args.figures < 0:
        raise UserError(f'--figures {args.figures}: give a number of grids, '
                        '0 or more')
    for config in args.configs:  # all of them, before the first long run
        check_config_file(config)
    return args


def parse_options(raw: List[str]) -> Dict:
    """``--cfg-options`` strings as mmengine's ``DictAction`` reads them."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument('--options', nargs='+', action=DictAction)
    return parser.parse_args(['--options', *raw]).options if raw else {}


def describe_source(cfg: Config) -> str:
    """Type of ``model.vocabulary`` ('none' without one), with the model
    name for MLLM sources (the class default when the config names none)."""
    import ov_eva  # noqa: F401  (registers sources; compat before mmseg)
    from ov_eva.registry import VOCABULARIES, vocabulary_config
    from ov_eva.vocabulary.base import MLLMVocabulary
    model = cfg.get('model', {})
    if model.get('type') == 'SegTTAModel':
        model = model.get('module', {})
    spec = vocabulary_config(model.get('vocabulary'))
    if spec is None:
        return 'none'
    kind = spec.get('type', '?')
    cls = VOCABULARIES.get(kind) if isinstance(kind, str) else kind
    if isinstance(cls, type):
        kind = cls.__name__
    if isinstance(cls, type) and issubclass(cls, MLLMVocabulary):
        name = spec.get('model')
        if name is None:
            param = inspect.signature(cls).parameters.get('model')
            if param is not None and param.default is not param.empty:
                name = param.default
        if name is not None:
            return f'{kind} ({name})'
    return str(kind)


def is_mllm(cfg: Config) -> bool:
    import ov_eva  # noqa: F401
    from ov_eva.registry import VOCABULARIES, vocabulary_config
    from ov_eva.vocabulary.base import MLLMVocabulary
    model = cfg.get('model', {})
    if model.get('type') == 'SegTTAModel':
        model = model.get('module', {})
    spec = vocabulary_config(model.get('vocabulary'))
    cls = VOCABULARIES.get(spec.get('type')) if spec else None
    return isinstance(cls, type) and issubclass(cls, MLLMVocabulary)


def flatten(tree, prefix='') -> Dict[str, object]:
    """Nested dicts as ``{'a.b.c': leaf}``."""
    if not isinstance(tree, dict):
        return {prefix: tree}
    out = {}
    for key, value in tree.items():
        out.update(flatten(value, f'{prefix}.{key}' if prefix else key))
    return out


def published_reference(cfg: Config) -> Dict:
    """The published mIoU of the official protocol a config runs
    (``cfg.protocol``, a row of configs/_base_/protocols.py) and its source;
    ``note`` says why there is none: no protocol, a vocabulary (the number
    is the plain baseline's), or a protocol setting changed (by the config
    or ``--cfg-options``)."""
    from ov_eva.registry import vocabulary_config
    protocol = cfg.get('protocol')
    if not protocol:
        return dict(published=None, published_source=None, note='')
    model = cfg.get('model', {})
    if model.get('type') == 'SegTTAModel':
        model = model.get('module', {})
    name = f"{protocol['method']} on {protocol['dataset']}"
    if vocabulary_config(model.get('vocabulary')) is not None:
        return dict(
            published=None,
            published_source=None,
            note=f'{name} + vocabulary: no published number')
    have = flatten(dict(model))
    changed = sorted(
        key for key, value in flatten(dict(protocol['model'])).items()
        if not key.endswith('_delete_') and (
            key not in have or have[key] != value))
    if changed:
        return dict(
            published=None,
            published_source=None,
            note=f'{name} with changed model.{", model.".join(changed)}')
    return dict(
        published=protocol.get('published'),
        published_source=protocol.get('published_source'),
        note='' if protocol.get('published') is not None else
        f'{name}: no published number')


def work_dirs(configs: List[str], root: Path) -> List[Path]:
    """``<root>/<stem>``, made unique when two configs share a stem."""
    out, seen = [], set()
    for config in configs:
        name, n = Path(config).stem, 1
        while name in seen:
            n += 1
            name = f'{Path(config).stem}_{n}'
        seen.add(name)
        out.append(root / name)
    return out


def last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ''


def error_line(stderr: str) -> str:
    """The exception line of a traceback (the last line of stderr unless
    something was printed after it), else stderr's last line."""
    lines = [
        RANK_PREFIX.sub('', line).strip() for line in stderr.splitlines()
        if line.strip()
    ]
    for line in reversed(lines[-20:]):
        if EXCEPTION_LINE.match(line):
            return line
    return lines[-1] if lines else ''


def new_metrics_file(work_dir: Path, before: set) -> Optional[Path]:
    """The metrics JSON the Runner dumped in its new timestamp folder."""
    found = [
        path for path in sorted(work_dir.glob('*/*.json'))
        if path.parent.name not in before and path.stem == path.parent.name
    ]
    return found[-1] if found else None


def child_env(launcher: str, index: int) -> Dict[str, str]:
    """The environment of the ``index``-th run (from 1). Under a launcher
    each run's process group gets its own rendezvous store, hosted by its
    rank 0 on port ``MASTER_PORT + index``: torchrun's agent store would
    still hold the keys of the previous run's group."""
    env = dict(os.environ)
    if launcher != 'none':
        env['MASTER_PORT'] = str(int(env.get('MASTER_PORT', 29500)) + index)
        if env.get('TORCHELASTIC_USE_AGENT_STORE') == 'True':
            env['TORCHELASTIC_USE_AGENT_STORE'] = 'False'
    return env


def test_command(config: str, work_dir: Path, launcher: str,
                 options: List[str], predictions: Optional[str]) -> List[str]:
    """The tools/test.py command line of one config."""
    cmd = [
        sys.executable,
        str(TEST_TOOL), config, '--work-dir',
        str(work_dir), '--launcher', launcher
    ]
    if predictions:
        cmd += ['--save-predictions', predictions]
    if options:
        cmd += ['--cfg-options', *options]
    return cmd


def empty_row(config: str, work_dir: Path) -> Dict:
    """A row of the table before its run."""
    return dict(
        config=Path(config).stem,
        config_file=config,
        source='?',
        mIoU=None,
        mAcc=None,
        aAcc=None,
        seconds_per_image=None,
        tokens=None,
        prompt_tokens=None,
        completion_tokens=None,
        requests=None,
        error=None,
        duration_s=None,
        work_dir=str(work_dir),
        metrics_file=None,
        published=None,
        published_source=None,
        auto_classes=False,
        predictions=None,
        note='')


def run_one(config: str,
            work_dir: Path,
            options: List[str],
            launcher: str,
            world_size: int,
            env: Dict[str, str],
            rank: int,
            save_predictions: bool = False) -> Dict:
    """One config through tools/test.py: its row of the table (``error``
    set when it failed; ``predictions``: the folder of its saved
    predictions). Ranks other than 0 only check the exit status."""
    row = empty_row(config, work_dir)
    start = time.monotonic()
    try:
        cfg = Config.fromfile(config, import_custom_modules=False)
        cfg.merge_from_dict(parse_options(options))
        row['source'] = describe_source(cfg)
        row['auto_classes'] = cfg.model.get('classes') == 'auto'
        row.update(published_reference(cfg))
        mllm = is_mllm(cfg)
        batch_size = int(cfg.test_dataloader.get('batch_size', 1) or 1)
    except Exception as error:  # unreadable config: no run at all
        row['error'] = f'{type(error).__name__}: {last_line(str(error))}'
        row['duration_s'] = time.monotonic() - start
        return row

    work_dir.mkdir(parents=True, exist_ok=True)
    before = {path.name for path in work_dir.iterdir() if path.is_dir()}
    if save_predictions:
        row['predictions'] = str(work_dir / 'predictions')
        if rank == 0:  # none of an earlier run's files
            shutil.rmtree(row['predictions'], ignore_errors=True)
    cmd = test_command(config, work_dir, launcher, options, row['predictions'])
    tag = 'compare' if rank == 0 else f'compare.rank{rank}'
    stdout_log, stderr_log = (work_dir / f'{tag}.stdout.log',
                              work_dir / f'{tag}.stderr.log')
    with open(stdout_log, 'w') as out, open(stderr_log, 'w') as err:
        returncode = subprocess.call(cmd, stdout=out, stderr=err, env=env)
    row['duration_s'] = time.monotonic() - start
    stdout = stdout_log.read_text(errors='replace')
    stderr = stderr_log.read_text(errors='replace')
    if returncode != 0:
        row['error'] = error_line(stderr) or f'exit status {returncode}'
        return row
    if rank != 0:  # rank 0 dumps the metrics
        return row
    metrics_file = new_metrics_file(work_dir, before)
    if metrics_file is None:
        row['error'] = f'no metrics JSON written under {work_dir}'
        return row
    metrics = json.loads(metrics_file.read_text())
    row['metrics_file'] = str(metrics_file)
    missing = [key for key in METRICS + ('time', ) if key not in metrics]
    if missing:
        row['error'] = f'{metrics_file} lacks {", ".join(missing)}'
        return row
    for key in METRICS:
        row[key] = float(metrics[key])
    row['seconds_per_image'] = float(metrics['time']) / batch_size / world_size
    matches = list(PREFETCH_LINE.finditer(stdout))
    if matches and mllm:
        found = matches[-1]
        row['prompt_tokens'] = int(found['prompt'])
        row['completion_tokens'] = int(found['completion'])
        row['requests'] = int(found['requests'])
        row['tokens'] = row['prompt_tokens'] + row['completion_tokens']
    return row


def cell(text) -> str:
    """Markdown-safe table cell."""
    return ' '.join(str(text).split()).replace('|', '\\|')


def format_seconds(value: float) -> str:
    return f'{value:.3f}' if value >= 0.001 else f'{value:.1e}'


def sources(rows: List[Dict]) -> List[str]:
    """The distinct sources of the published numbers, in order."""
    return list(
        dict.fromkeys(row['published_source'] for row in rows
                      if row['published_source']))


def table_rows(rows: List[Dict]) -> List[List[str]]:
    out = []
    numbers = sources(rows)
    for row in rows:
        published, delta = '-', '-'
        if row['published'] is not None:
            number = numbers.index(row['published_source']) + 1
            published = f"{row['published']:.2f} [{number}]"
            if row['mIoU'] is not None:
                delta = f"{row['mIoU'] - row['published']:+.2f}"
        if row['error'] is not None:
            error = row['error']
            if len(error) > 300:
                error = error[:297] + '...'
            out.append([
                row['config'], row['source'], f'failed: {error}', '', '', '',
                '', published, delta, ''
            ])
            continue
        metrics = [f'{row[key]:.2f}' for key in METRICS]
        free = '-'
        if row['auto_classes']:  # not the same metric: its own column
            free, metrics[0], delta = metrics[0], '-', '-'
        out.append([
            row['config'], row['source'], *metrics,
            format_seconds(row['seconds_per_image']),
            '-' if row['tokens'] is None else str(row['tokens']), published,
            delta, free
        ])
    return out


def footnote(world_size: int, rows: List[Dict] = ()) -> str:
    per = 'batch size' if world_size == 1 else (
        f'(batch size x {world_size} processes)')
    published = (
        '\n\n\\*\\*\\* Published mIoU of the official code on the '
        'same protocol (configs/_base_/protocols.py), for baseline configs '
        'run as shipped; `-` otherwise.' +
        ''.join(f'\n[{i}] {source}'
                for i, source in enumerate(sources(rows), 1)) +
        ''.join(f"\n{row['config']}: {row['note']}"
                for row in rows if row['note']))
    return (
        '\\* Seconds per image: mmengine\'s mean test iteration time (`time` '
        'in the run\'s metrics JSON, timed by `IterTimerHook`: data loading, '
        f'inference and metric update of one batch) / {per}. It excludes '
        'model building and the vocabulary prefetch before the test loop; it '
        'includes the one-off encoding of the class names in the first batch '
        'unless the text-embedding cache already held them (which weighs on '
        'runs of few images).\n\n'
        '\\*\\* MLLM tokens: prompt + completion tokens this run spent, from '
        'the vocabulary prefetch summary in its log (cache hits cost none); '
        '`-` when the config has no MLLM vocabulary source.' + published +
        '\n\n\\*\\*\\*\\* Vocabulary-free mIoU: configs with no class list '
        "(`model.classes='auto'`) find each image's classes themselves; "
        'each found class is scored as its nearest dataset class by CLIP '
        'text similarity (mAcc and aAcc of such rows too). Not comparable '
        'with the mIoU column, where the model is given the classes.')


def figures_section(figures: Dict, table: Path) -> List[str]:
    """Markdown lines linking the figures, relative to the table's folder."""

    def link(path) -> str:
        return Path(os.path.relpath(path, table.parent)).as_posix()

    first = figures['configs'][0]
    against = (f'share of pixels whose class differs from {first}\'s'
               if len(figures['configs']) > 1 else
               'share of labelled pixels predicted wrong')
    lines = [
        '', '## Figures', '',
        f'Qualitative grids: the {len(figures["grids"])} of '
        f'{figures["images"]} images where the configs differ most '
        f'({against}); image, ground truth, then each config.', ''
    ]
    lines += [
        f'{rank}. [{grid["name"]}]({link(grid["file"])}): '
        f'{100 * grid["disagreement"]:.1f}%'
        for rank, grid in enumerate(figures['grids'], 1)
    ]
    png, svg = figures['chart']
    lines += [
        '', f'Per-class IoU of each config against {first}: '
        f'[PNG]({link(png)}), [SVG]({link(svg)})', ''
    ]
    lines += [
        f'![{grid["name"]}]({link(grid["file"])})' for grid in figures['grids']
    ]
    lines += [f'![per-class IoU]({link(png)})']
    return lines


def markdown(rows: List[Dict],
             world_size: int,
             options: List[str],
             figures: Optional[Dict] = None,
             table: Optional[Path] = None) -> str:
    lines = [
        '| ' + ' | '.join(COLUMNS) + ' |',
        '|' + '|'.join(['---', '---'] + ['---:'] * 8) + '|'
    ]
    lines += [
        '| ' + ' | '.join(cell(c) for c in cells) + ' |'
        for cells in table_rows(rows)
    ]
    lines += ['', footnote(world_size, rows)]
    if options:
        lines += [
            '',
            'Options given to every config: ' + ' '.join(f'`{option}`'
                                                         for option in options)
        ]
    if figures:
        lines += figures_section(figures, table)
    return '\n'.join(lines) + '\n'


def make_figures(rows: List[Dict], count: int, out: Path) -> Dict:
    """The grids and the chart from the runs that succeeded, in
    ``<out stem>_figures/``; {} when no run did."""
    import ov_eva  # noqa: F401  (compat before mmseg)
    from ov_eva.figures import write_figures
    done = [row for row in rows if row['error'] is None]
    if not done:
        return {}
    print(
        f'figures: reading the predictions of {len(done)} config(s)',
        flush=True)
    figures = write_figures([row['predictions'] for row in done],
                            [row['config'] for row in done],
                            count,
                            out.parent / f'{out.stem}_figures',
                            progress=True)
    figures['configs'] = [row['config'] for row in done]
    return figures


def write_outputs(args, rows: List[Dict], world_size: int) -> bool:
    """The figures (``--figures``), then the table and its JSON, which are
    written whatever happens to the figures; whether the figures failed."""
    args.out.parent.mkdir(parents=True, exist_ok=True)
    figures, failed = {}, False
    if args.figures:
        try:
            figures = make_figures(rows, args.figures, args.out)
        except Exception as error:  # noqa: B902
            failed = True
            print(
                f'error: --figures: {type(error).__name__}: {error}',
                file=sys.stderr)
    text = markdown(rows, world_size, args.cfg_options, figures, args.out)
    args.out.write_text(text)
    args.out.with_suffix('.json').write_text(
        json.dumps(
            dict(
                columns=list(COLUMNS),
                table=table_rows(rows),
                rows=rows,
                footnote=footnote(world_size, rows),
                figures=figures or None,
                cfg_options=args.cfg_options,
                launcher=args.launcher,
                world_size=world_size),
            indent=2) + '\n')
    print()
    print(text)
    return failed


def launcher_rank(launcher: str):
    """(rank, world size) of this process as its launcher set them."""
    names = dict(
        pytorch=('RANK', 'WORLD_SIZE'),
        slurm=('SLURM_PROCID', 'SLURM_NTASKS'),
        mpi=('OMPI_COMM_WORLD_RANK', 'OMPI_COMM_WORLD_SIZE')).get(launcher)
    if names is None:
        return 0, 1
    return (int(os.environ.get(names[0], 0)), int(os.environ.get(names[1], 1)))


def main():
    args = parse_args()
    rank, world_size = launcher_rank(args.launcher)

    def say(text):
        if rank == 0:
            print(text, flush=True)

    root = Path(args.work_dir)
    rows = []
    total = len(args.configs)
    for index, (config, work_dir) in enumerate(
            zip(args.configs, work_dirs(args.configs, root)), 1):
        say(f'[{index}/{total}] {config}: running (log in {work_dir})')
        row = run_one(config, work_dir,
                      args.cfg_options, args.launcher, world_size,
                      child_env(args.launcher, index), rank, args.figures > 0)
        rows.append(row)
        if row['error'] is not None:
            say(f'[{index}/{total}] {config}: FAILED after '
                f'{row["duration_s"]:.1f} s: {row["error"]}')
        elif rank == 0:
            say(f'[{index}/{total}] {config}: done in '
                f'{row["duration_s"]:.1f} s, mIoU {row["mIoU"]:.2f}')
    failed = sum(row['error'] is not None for row in rows)
    if rank == 0:
        figures_failed = write_outputs(args, rows, world_size)
        print(f'wrote {args.out} and {args.out.with_suffix(".json")}'
              f'{f"; {failed} of {total} failed" if failed else ""}'
              f'{"; the figures failed" if figures_failed else ""}')
        failed += figures_failed
    # under a launcher rank 0 alone reports: another rank's early exit
    # status 1 would make torchrun stop rank 0 before it writes the table
    sys.exit(1 if failed and rank == 0 else 0)


if __name__ == '__main__':
    run(main)
