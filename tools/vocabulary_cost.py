"""Estimated MLLM bill of each benchmark's val set, online and in batch mode.

    python tools/vocabulary_cost.py                 # GPT-4o, the defaults
    python tools/vocabulary_cost.py --model gpt-4o-mini --detail low

For every ``configs/oveva_vitb16_*.py`` it runs ``OpenAIVocabulary.estimate``
(the estimate ``build_vocabulary.py --dry-run`` prints; nothing is sent) on
one image of the benchmark's usual size with the config's class list, and
scales it to the val set. These are estimates, not bills: input tokens
follow the published image rule and the text tokenizer (or its stated
approximation); output is only bounded (calls x ``max_tokens``). Prices are
the shipped table's (its date is printed).
"""
import argparse
import os
from pathlib import Path

from _cli import UserError, add_debug_flag, run

CONFIGS = Path(__file__).resolve().parents[1] / 'configs'

# val-set size and usual image size (width, height) of each benchmark
BENCHMARKS = {
    'ade': ('ADE20K-150', 2000, (683, 512)),
    'voc21': ('PASCAL VOC 21', 1449, (500, 375)),
    'voc20': ('PASCAL VOC 20', 1449, (500, 375)),
    'context60': ('PASCAL Context 60', 5105, (500, 375)),
    'context59': ('PASCAL Context 59', 5105, (500, 375)),
    'coco_stuff171': ('COCO-Stuff 171', 5000, (640, 480)),
    'coco_object': ('COCO-Object', 5000, (640, 480)),
    'cityscapes': ('Cityscapes', 500, (2048, 1024)),
}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split('\n')[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split('\n', 1)[1])
    parser.add_argument('--model', default='gpt-4o')
    parser.add_argument(
        '--detail', default='auto', choices=('low', 'high', 'auto'))
    parser.add_argument('--max-image-side', type=int, default=768)
    parser.add_argument('--rounds', type=int, default=2)
    parser.add_argument('--max-tokens', type=int, default=1024)
    parser.add_argument('--price-file', help='a price table (prices.json)')
    add_debug_flag(parser)
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    import numpy as np
    from mmengine.config import Config

    import ov_eva  # noqa: F401
    from ov_eva.class_lists import load_classes
    from ov_eva.vocabulary import OpenAIVocabulary
    os.environ.setdefault('OPENAI_API_KEY', 'unused: nothing is sent')
    source = OpenAIVocabulary(
        model=args.model,
        detail=args.detail,
        max_image_side=args.max_image_side,
        rounds=args.rounds,
        max_tokens=args.max_tokens,
        price_file=args.price_file,
        cache_file=False)
    if source.prices is None:
        raise UserError(f'--model {args.model}: no price in '
                        f'{source.price_table.path}; give --price-file')
    half = source.price_table.batch_discount
    print(f'{args.model}, detail={args.detail}, long side <= '
          f'{args.max_image_side} px, {1 + args.rounds} calls/image, '
          f'max_tokens {args.max_tokens}; text tokens by '
          f'{source.counter.method}; prices of {source.price_table.date}')
    print('| Benchmark (val images) | usual size | image tokens/call | '
          'input tokens/image | input $ online / batch | '
          '$ bound (output at max_tokens) online / batch |')
    print('|---|---|---|---|---|---|')
    for name, (title, count, (width, height)) in BENCHMARKS.items():
        cfg = Config.fromfile(CONFIGS / f'oveva_vitb16_{name}.py')
        classes = load_classes(cfg.model.classes)
        one = source.estimate([np.zeros((height, width, 3), np.uint8)],
                              classes)
        tokens_in = one.input_tokens * count
        cost_in = source.price(tokens_in, 0)
        bound = one.cost_bound * count
        print(f'| {title} ({count:,}) | {width}x{height} | '
              f'{one.image_tokens_per_call:.0f} | {one.input_tokens:,} | '
              f'${cost_in:,.2f} / ${cost_in * half:,.2f} | '
              f'${bound:,.2f} / ${bound * half:,.2f} |')


if __name__ == '__main__':
    run(main)
