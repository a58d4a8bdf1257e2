"""Write a config's segmentor weights as an mmseg checkpoint.

``mim test mmseg CONFIG --checkpoint CKPT`` insists on a checkpoint; OV-EVA is
training-free, so its checkpoint is simply the CLIP weights the config
builds (tag, local file or the random tiny model, seeded by the config)::

    python tools/export_checkpoint.py configs/oveva_vitb16_ade.py ckpt.pth
    mim test mmseg configs/oveva_vitb16_ade.py --checkpoint ckpt.pth
"""
import argparse
from pathlib import Path

from _cli import (add_cfg_options, add_debug_flag, check_config_file,
                  check_options, load_config, run)


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('config', help='config file path')
    parser.add_argument('out', help='checkpoint file to write (.pth)')
    add_cfg_options(parser)
    add_debug_flag(parser)
    return parser.parse_args()


def main():
    args = parse_args()
    check_config_file(args.config)
    check_options(args.cfg_options, args.config)
    from mmengine.registry import init_default_scope
    from mmengine.runner import save_checkpoint, set_random_seed

    import ov_eva  # noqa: F401  (registers OV-EVA; compat before mmseg)
    cfg = load_config(args.config, args.cfg_options)
    init_default_scope(cfg.get('default_scope', 'mmseg'))
    set_random_seed(**cfg.get('randomness', dict(seed=0)))
    from mmseg.registry import MODELS
    model = MODELS.build(cfg.model)
    model.init_weights()  # the config's CLIP weights
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    clip = model.clip
    # Plain types only: mmengine loads checkpoints with weights_only=True.
    meta = dict(
        holds='the CLIP weights of model.clip; OV-EVA has no trained '
        'parameters. Loading this checkpoint needs neither the pretrained '
        'tag nor the network.',
        # the backend it was made with: tools/test.py and mim test build
        # the same one from it (ov_eva/preflight.py)
        clip=dict(
            cfg.model.clip.to_dict(),
            type=type(clip).__name__,
            quick_gelu=type(
                clip.model.visual.transformer.resblocks[0].mlp.gelu).__name__
            == 'QuickGELU',
            weights_fingerprint=clip.fingerprint()),
        config=cfg.pretty_text)
    save_checkpoint(dict(meta=meta, state_dict=model.state_dict()), str(out))
    print(f'wrote {out} ({out.stat().st_size / 2**20:.1f} MiB, '
          f'{len(model.state_dict())} tensors)')


if __name__ == '__main__':
    run(main)
