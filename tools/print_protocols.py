"""Print the official test protocols of the baselines as a markdown table.

The table is ``configs/_base_/protocols.py``, which the baseline configs
read; the protocol tables of docs/benchmarks.md and docs/protocols.md are
this script's output (a test checks that they agree). Example::

    python tools/print_protocols.py > protocols.md
"""
import argparse
from pathlib import Path

from mmengine.config import Config

TABLE = Path(__file__).resolve().parents[1] / 'configs/_base_/protocols.py'
NAMES = dict(
    maskclip='MaskCLIP',
    sclip='SCLIP',
    clearclip='ClearCLIP',
    naclip='NACLIP',
    proxyclip='ProxyCLIP',
    corrclip='CorrCLIP',
    corrclipv2='CorrCLIPv2')
COLUMNS = ('method', 'dataset', 'short side', 'windows', 'logit scale',
           'prob_thd', 'area_thd', 'PAMR', 'class file', 'patch fit',
           'published mIoU', 'settings from')


def windows(test_cfg) -> str:
    if test_cfg['mode'] == 'whole':
        return 'whole image'
    return f"{test_cfg['crop_size'][0]}/{test_cfg['stride'][0]}"


def rows(protocol) -> list:
    out = []
    for method, by_dataset in protocol.items():
        for dataset, row in by_dataset.items():
            model = row['model']
            pamr = model['pamr']
            out.append([
                NAMES[method],
                dataset,
                str(row['short_side']),
                windows(model['test_cfg']),
                f"{model['logit_scale']:g}",
                f"{model['prob_thd']:g}",
                '-' if model['area_thd'] is None else f"{model['area_thd']:g}",
                '-' if not pamr or not pamr['num_iter'] else
                f"{pamr['num_iter']} x {tuple(pamr['dilations'])}",
                f"`{model['classes']['file']}`",
                model['clip']['patch_fit'] +
                (f" to {model['clip']['pad_multiple']} px"
                 if 'pad_multiple' in model['clip'] else ''),
                '-' if row['published'] is None else f"{row['published']:g}",
                f"[cfg]({row['source']})",
            ])
    return out


def markdown(protocol) -> str:
    lines = [
        '| ' + ' | '.join(COLUMNS) + ' |',
        '|' + '|'.join('---' for _ in COLUMNS) + '|',
    ]
    lines += ['| ' + ' | '.join(cells) + ' |' for cells in rows(protocol)]
    return '\n'.join(lines) + '\n'


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument(
        '--table', default=str(TABLE), help='the protocol table (a config)')
    args = parser.parse_args()
    print(markdown(Config.fromfile(args.table).protocol), end='')


if __name__ == '__main__':
    main()
