r"""Build or extend a CorrCLIPv2 memory bank from a folder of images.

The official four steps in the official files (``docs/corrclipv2.md``):
region masks, the manifest, a CLIP store per encoder, the VFM store and its
FAISS index, all from the CorrCLIPv2 config the bank is for (its CLIP,
auxiliary CLIP, VFM and mask source). Rerunning the same command resumes a
killed build; running it on a folder with more images extends the bank.
Examples::

    python tools/build_memory_bank.py \
        configs/baselines/corrclipv2_vitb16_ade.py \
        --images data/coco/images/train2017 --name coco
    python -m torch.distributed.run --nproc_per_node 4 \
        tools/build_memory_bank.py CONFIG --images DIR --name NAME \
        --launcher pytorch
"""
import argparse
import os
from pathlib import Path

from _cli import (UserError, add_cfg_options, add_debug_flag,
                  check_config_file, check_options, load_config, run)


def parse_args():
    parser = argparse.ArgumentParser(
        description='Build or extend a CorrCLIPv2 memory bank')
    parser.add_argument('config', help='a CorrCLIPv2 config')
    parser.add_argument(
        '--images', required=True, help='folder of images (recursive)')
    parser.add_argument(
        '--name',
        required=True,
        help='bank name: keys every file; the same name resumes or extends')
    parser.add_argument(
        '--out',
        help='bank root folder (default: the config\'s model.clip.bank.root'
        ', the official memory_bank)')
    parser.add_argument(
        '--mask-model',
        help='tag of the masks folder masks/NAME/TAG (default: the type '
        'of model.clip.masks, e.g. files or sam2)')
    parser.add_argument(
        '--short-side',
        type=int,
        default=448,
        help='CLIP stores: the short side images are rescaled to (the '
        'official --slide_short, default 448)')
    parser.add_argument(
        '--crop',
        type=int,
        default=336,
        help='CLIP stores: the sliding window (the official --slide_crop, '
        'default 336; stride 112)')
    parser.add_argument(
        '--exact-index',
        action='store_true',
        help='a new index is an exact IndexFlatIP instead of the official '
        'IVFPQ (which needs at least 256 regions); for small banks and tests')
    add_cfg_options(parser)
    parser.add_argument(
        '--launcher',
        choices=['none', 'pytorch'],
        default='none',
        help='job launcher: pytorch splits the images between the '
        'processes of torch.distributed.run')
    add_debug_flag(parser)
    return parser.parse_args()


def check_args(args) -> None:
    check_config_file(args.config)
    check_options(args.cfg_options, args.config)
    if not Path(args.images).expanduser().is_dir():
        raise UserError(f'--images {args.images!r} is not a folder')
    sizes = (('--short-side', args.short_side), ('--crop', args.crop))
    for flag, value in sizes:
        if value < 1:
            raise UserError(f'{flag} {value}: give a positive number of '
                            'pixels')
    if not args.name or any(c in args.name for c in '/\\_ '):
        raise UserError(f'--name {args.name!r}: give a plain name without '
                        "'/', '_' or spaces (it starts every file name)")


def start(launcher: str):
    """(rank, world size, device) of this process."""
    import torch
    import torch.distributed as dist
    if launcher == 'none':
        device = 'cuda' if torch.cuda.is_available() else 'cpu'
        return 0, 1, torch.device(device)
    local = int(os.environ.get('LOCAL_RANK', 0))
    if torch.cuda.is_available():
        from mmengine.dist import init_dist
        init_dist('pytorch')
        device = torch.device('cuda', local)
    else:
        dist.init_process_group('gloo')
        device = torch.device('cpu')
    return dist.get_rank(), dist.get_world_size(), device


def barrier(world: int) -> None:
    if world > 1:
        import torch.distributed as dist
        dist.barrier()


def build_model(cfg, device):
    """The config's CorrCLIPv2 backend, built as tools/test.py builds it
    (same seed: the same random weights of the tiny test models)."""
    from ov_eva.preflight import build_model as build
    clip_cfg = cfg.model.get('clip', {})
    if clip_cfg.get('type') != 'CorrCLIPv2Encoder':
        raise UserError(f'{cfg.filename}: model.clip.type is '
                        f'{clip_cfg.get("type")!r}; a memory bank is built '
                        'from a CorrCLIPv2 config (CorrCLIPv2Encoder)')
    backend = build(cfg).clip.to(device)
    if backend.mask_source is None:
        raise UserError('model.clip.masks is not set: give the mask source '
                        'of the bank (e.g. model.clip.masks.type=sam2)')
    return backend


def main():
    args = parse_args()
    check_args(args)
    from ov_eva.memory import reuse_freed_memory  # noqa: F401 (ov_eva first)
    cfg = load_config(args.config, args.cfg_options)
    rank, world, device = start(args.launcher)
    backend = build_model(cfg, device)
    build(args, cfg, backend, rank, world, device)


def region_features(args, backend, tower, device):
    """``regions(image, labels, values)`` of a store: the CLIP store of
    ``tower`` (CorrCLIP features with the bank's DINO), or the VFM's
    (``tower`` None)."""
    from functools import partial

    from ov_eva import bank_builder as bb
    if tower is None:
        return partial(bb.vfm_regions, backend.vfm.to(device), device)
    encoder = bb.store_encoder(tower, backend.bank['store_dino'])
    return partial(
        bb.clip_regions, encoder, short_side=args.short_side, crop=args.crop)


def build(args, cfg, backend, rank, world, device) -> None:
    from tqdm import tqdm

    from ov_eva import bank_builder as bb
    from ov_eva import memory_bank as mb
    bank = backend.bank
    layout = mb.BankLayout(args.out or bank['root'], args.name)
    images = bb.list_images(Path(args.images).expanduser())
    if not images:
        raise UserError(f'--images {args.images!r} holds no image '
                        f'({", ".join(mb.IMAGE_EXTENSIONS)})')
    mine = images[rank::world]

    def progress(items, what):
        return tqdm(
            items, desc=f'{args.name} {what}', unit='img', position=rank)

    tag = args.mask_model or backend.mask_source.__class__.__name__.lower(
    ).replace('masks', '') or 'masks'
    mask_dir = layout.masks(tag)
    bb.make_masks(backend.mask_source, mine, mask_dir, progress)  # step 1
    barrier(world)
    if rank == 0:  # step 2
        mb.repair_manifest(layout)
        mb.extend_manifest(layout, [p.stem for p in images], mask_dir)
    barrier(world)
    rows = mb.read_images(layout)
    total = rows[-1][1] + rows[-1][2] if rows else 0
    if not layout.index(backend.vfm.type).exists():  # before the stores
        mb.check_index_size(total, args.exact_index)
    paths = {p.stem: p for p in images}
    mine_rows = [r for r in rows if r[0] in paths][rank::world]
    encoders = [(bank['main'], backend)]
    if bank['aux'] and backend.aux is not None:
        encoders.append((bank['aux'], backend.aux))
    steps = [(f'clip {name}', layout.clip_store(name), tower)
             for name, tower in encoders]
    steps.append(
        (f'vfm {backend.vfm.type}', layout.vfm_store(backend.vfm.type), None))
    for what, path, tower in steps:  # steps 3 and 4
        if tower is None:  # the VFM's dimension: its features of one image
            dim = backend.vfm(bb.read_rgb(str(images[0])), device).shape[1]
        else:
            dim = tower.embed_dim
        store = mb.SlotStore(path, total, dim)
        if store.complete():
            continue
        regions = region_features(args, backend, tower, device)
        if rank == 0:
            store.create()
        barrier(world)
        bb.fill_store(store, mine_rows, paths, mask_dir, regions, progress,
                      what)
        barrier(world)
        if rank == 0 and not store.finalize():
            missing = int((~store.done()).sum())
            raise UserError(
                f'{path.name}: {missing} of {total} regions have no '
                'features: their images are not under --images; give the '
                'folder the bank was started from')
        barrier(world)
    if rank == 0:
        vfm = backend.vfm.type
        added = mb.update_index(
            layout.index(vfm), mb.open_store(layout.vfm_store(vfm)),
            args.exact_index)
        bb.write_vfm_record(layout, backend.vfm_identity())
        print(f'bank {args.name!r} in {layout.root}: {len(rows)} images, '
              f'{total} regions ({added} added to {layout.index(vfm).name})')


if __name__ == '__main__':
    run(main)
