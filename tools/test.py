r"""Evaluate an OV-EVA (or baseline) config, with or without a checkpoint.

Same flags as mmseg's ``tools/test.py``; ``--checkpoint`` is optional because
the CLIP weights come from ``model.clip.pretrained``. Examples::

    python tools/test.py configs/oveva_vitb16_ade.py
    python tools/test.py configs/oveva_vitb16_voc21.py --tta --show-dir vis
    python tools/test.py configs/oveva_vitb16_ade.py --save-predictions preds
    python -m torch.distributed.run --nproc_per_node 2 tools/test.py \
        configs/oveva_vitb16_ade.py --launcher pytorch
"""
import argparse
import os
import os.path as osp

from _cli import (add_cfg_options, add_debug_flag, check_config_file,
                  check_options, load_config, run)
from mmengine.config import Config  # no torch yet


def parse_args():
    parser = argparse.ArgumentParser(description='Test (and eval) OV-EVA')
    parser.add_argument('config', help='config file path')
    parser.add_argument(
        '--checkpoint',
        help='checkpoint to load over the CLIP weights of the config '
        '(e.g. one written by tools/export_checkpoint.py)')
    parser.add_argument('--work-dir', help='where metrics and logs go')
    parser.add_argument(
        '--out',
        help="directory to save predictions in the dataset's label format "
        "(mmseg's IoUMetric output_dir: +1 with reduce_zero_label, uint8)")
    parser.add_argument(
        '--save-predictions',
        metavar='DIR',
        help='save each image\'s predicted class indices and its ground '
        'truth as label PNGs, and DIR/index.json (SavePredictionsHook; what '
        'tools/compare.py --figures reads)')
    parser.add_argument(
        '--show', action='store_true', help='show prediction results')
    parser.add_argument(
        '--show-dir', help='directory where painted images are saved')
    parser.add_argument(
        '--wait-time', type=float, default=2, help='interval of --show (s)')
    add_cfg_options(parser)
    parser.add_argument(
        '--launcher',
        choices=['none', 'pytorch', 'slurm', 'mpi'],
        default='none',
        help='job launcher')
    parser.add_argument(
        '--tta', action='store_true', help='test-time augmentation')
    parser.add_argument(
        '--skip-corrupt',
        action='store_true',
        help='check every image and label of the test dataset first and '
        'leave out those that do not decode (listed after the table); '
        'without it such a file stops the run, naming it')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    add_debug_flag(parser)
    args = parser.parse_args()
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


def build_config(args) -> Config:
    cfg = load_config(args.config, args.cfg_options)
    cfg.launcher = args.launcher
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = osp.join('./work_dirs',
                                osp.splitext(osp.basename(args.config))[0])
    cfg.load_from = args.checkpoint
    if args.show or args.show_dir:
        hook = cfg.default_hooks.visualization
        hook.draw = True
        if args.show:
            hook.update(show=True, wait_time=args.wait_time)
        if args.show_dir:
            cfg.visualizer.save_dir = args.show_dir
    if args.tta:
        cfg.test_dataloader.dataset.pipeline = cfg.tta_pipeline
        cfg.tta_model.module = cfg.model
        cfg.model = cfg.tta_model
    if args.skip_corrupt:  # ClassFileSegDataset and OV-EVA's datasets
        cfg.test_dataloader.dataset.skip_corrupt = True
    if args.out is not None:
        cfg.test_evaluator.update(output_dir=args.out, keep_results=True)
    if args.save_predictions is not None:
        cfg.custom_hooks = list(cfg.get('custom_hooks', [])) + [
            dict(type='SavePredictionsHook', out_dir=args.save_predictions)
        ]
    return cfg


def flatten_pictures(show_dir: str) -> None:
    """mmseg's visualizer writes <show_dir>/vis_data/vis_image/
    test_NAME.jpg_0.png (and the config beside): move each picture to
    <show_dir>/NAME.png."""
    import re
    import shutil
    from pathlib import Path
    root = Path(show_dir)
    nested = root / 'vis_data' / 'vis_image'
    for picture in sorted(nested.glob('*.png')):
        name = re.sub(r'^test_|(\.\w+)?_\d+\.png$', '', picture.name) + '.png'
        shutil.move(str(picture), str(root / name))
    # left: the run's config, which --work-dir holds too
    shutil.rmtree(root / 'vis_data', ignore_errors=True)


def prepare_cpu_distributed(cfg: Config) -> None:
    """Distributed runs on machines without CUDA. mmengine's pytorch
    launcher calls ``torch.cuda.set_device`` and gives DDP a GPU id even
    there: start a gloo process group here (mmengine then keeps it) and wrap
    the model for CPU."""
    import torch
    import torch.distributed as dist
    if cfg.launcher != 'pytorch' or torch.cuda.is_available():
        return
    if not dist.is_initialized():
        dist.init_process_group('gloo')
    cfg.setdefault('model_wrapper_cfg',
                   dict(type='MMDistributedDataParallel', device_ids=None))


def main():
    args = parse_args()
    # what needs no torch first: a mistake answers in a fraction of a second
    check_config_file(args.config)
    check_options(args.cfg_options, args.config)
    if args.checkpoint is not None and not osp.isfile(args.checkpoint):
        raise FileNotFoundError(f'--checkpoint {args.checkpoint!r} does not '
                                'exist')
    from ov_eva.memory import reuse_freed_memory  # ov_eva before mmseg
    from ov_eva.preflight import build_runner
    cfg = build_config(args)
    prepare_cpu_distributed(cfg)
    # the model built with its weights (the checkpoint's, or the config's
    # fetched now), the dataset and the checkpoint checked before the
    # Runner logs anything; the model the checkpoint holds unless the
    # command line says otherwise
    runner = build_runner(cfg, explicit=list(args.cfg_options or {}))
    reuse_freed_memory()
    runner.test()
    if args.show_dir:
        flatten_pictures(args.show_dir)


if __name__ == '__main__':
    run(main)
