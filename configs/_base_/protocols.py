# The official test protocols of the training-free baselines: one row per
# method and dataset, the single table that configs/baselines/*, the OV-EVA
# configs (through their baseline), tests/test_protocols.py and the README's
# protocol table read. A method base (methods/<method>.py) keeps its method's
# column; a leaf adds a dataset base (datasets/<dataset>.py), takes its row
#     protocol = dict(_delete_=True, **_base_.protocol.<dataset>)
# and applies protocol['model'] and protocol['resize'] (in place of the
# dataset base's Resize, step 1 of its test_pipeline). Given the official
# weights (e.g. --cfg-options model.clip.pretrained=/path/ViT-B-16.pt) a
# baseline config predicts the official code's labels.
#
# Only `protocol` leaves this file: names starting with two underscores stay
# out of every config that reads it.
#
# Every setting was read in the official repository at the commit linked in
# `__repos`: its configs/cfg_<dataset>.py (short side, logit_scale, prob_thd,
# area_thd, slide_crop/slide_stride) and its segmentor's defaults (window,
# logit scale, PAMR, how windows that are not whole patches are handled).
# All three compute, at the original image size: a softmax at the logit
# scale over every class name (each synonym its own query), a class's
# probability as the max over its names, argmax, and pixels whose top
# probability is below prob_thd become class 0. They run float32 on a CPU
# (fp16 on a GPU), so these configs run the image tower in float32.
__repos = dict(
    sclip='https://github.com/wangf3014/SCLIP/blob/b56bd3014b9e',
    naclip='https://github.com/sinahmr/NACLIP/blob/0cac3a651f75',
    clearclip='https://github.com/mc-lan/ClearCLIP/blob/ad68a404d55d',
    proxyclip='https://github.com/mc-lan/ProxyCLIP/blob/e7b767fbc58e',
    corrclip='https://github.com/zdk258/CorrCLIP/blob/103bc18/CorrCLIPv1',
    corrclipv2='https://github.com/zdk258/CorrCLIP/blob/103bc18/CorrCLIPv2')

# Per method: the segmentor defaults of its official code. MaskCLIP is
# ClearCLIP's re-implementation (its model_type='MaskCLIP' with
# ignore_residual=True: values through the last attention's output
# projection, no residual, no FFN) on ClearCLIP's protocol.
__methods = dict(
    sclip=dict(
        repo='sclip',
        clip=dict(variant='sclip', patch_fit='truncate'),
        window=(224, 112),
        logit_scale=40,
        pamr=dict(num_iter=0, dilations=(8, 16)),
        classes='sclip'),
    naclip=dict(
        repo='naclip',
        clip=dict(variant='naclip', gaussian_std=5.0, patch_fit='truncate'),
        window=(224, 112),
        logit_scale=40,
        pamr=dict(num_iter=10, dilations=(8, 16)),
        classes='sclip'),  # NACLIP's class files are SCLIP's, byte for byte
    clearclip=dict(
        repo='clearclip',
        clip=dict(variant='clearclip', patch_fit='pad_centre'),
        window=(448, 224),
        logit_scale=50,
        pamr=dict(num_iter=0, dilations=(8, 16)),
        classes='clearclip'),
    maskclip=dict(
        repo='clearclip',
        clip=dict(variant='vanilla', patch_fit='pad_centre'),
        window=(448, 224),
        logit_scale=50,
        pamr=dict(num_iter=0, dilations=(8, 16)),
        classes='clearclip'),
    # ProxyCLIP (proxyclip_segmentor.py, open_clip/transformer.py and
    # configs/base_config.py): CLIP ViT-B/16 (openai) with DINO ViT-B/8 as
    # the proxy (torch.hub dino_vitb8 = facebook/dino-vitb8, layer-norm eps
    # 1e-6 as DINO's code), beta 1.2, gamma 3.0, 336/112 windows padded
    # (centred) to multiples of 56, logit scale 40, no PAMR. Its class files
    # are SCLIP's, but for VOC21 / COCO-Object (own background line) and
    # VOC20 (ClearCLIP's).
    proxyclip=dict(
        repo='proxyclip',
        clip=dict(
            _delete_=True,
            type='ProxyCLIPEncoder',
            name='ViT-B-16',
            pretrained='openai',
            vfm=dict(
                name='facebook/dino-vitb8',
                pretrained='facebook/dino-vitb8',
                layer_norm_eps=1e-6),
            beta=1.2,
            gamma=3.0,
            patch_fit='pad_centre',
            pad_multiple=56),
        window=(336, 112),
        logit_scale=40,
        pamr=dict(num_iter=0, dilations=(8, 16)),
        classes='proxyclip'),
    # CorrCLIP (corrclip_segmentor.py, configs/base_config.py): MetaCLIP
    # ViT-B/16 (QuickGELU), DINO ViT-B/8 correlation, pre-generated SAM2
    # masks (mask_generator=None: <instance_mask_path>/<stem>.npz), 336
    # windows at stride 112 padded centred to multiples of 56, logit scale
    # 40, the map correction after the decision (ov_eva/corrclip.py).
    corrclip=dict(
        repo='corrclip',
        # _delete_: none of the CLIP-only keys of the model base (variant)
        clip=dict(
            _delete_=True,
            type='CorrCLIPEncoder',
            name='ViT-B-16-quickgelu',
            pretrained='metaclip_fullcc',
            patch_fit='pad_centre',
            pad_multiple=56,
            # DINO's layer-norm eps (its hub config says 1e-12)
            dino=dict(
                name='facebook/dino-vitb8',
                pretrained='facebook/dino-vitb8',
                layer_norm_eps=1e-6)),
        window=(336, 112),
        logit_scale=40,
        pamr=dict(num_iter=0, dilations=(8, 16)),
        classes='corrclip',
        separator='; '),
    # CorrCLIPv2 (corrclip_segmentor.py, configs/base_config.py with
    # _clip_scale='base'): MetaCLIP ViT-B/16, C-RADIOv3-L correlation and
    # retrieval keys, pre-generated EntitySeg masks (instance_mask.zip),
    # the 'coco' bank (stores metaclip_b and dfnclip_b, index
    # coco_radiov3.faiss) with 20 neighbours per region and alpha 0.5, 336
    # windows at stride 112 padded centred to multiples of 56, logit scale
    # 40, the map correction. One window at a time: its guides carry the
    # VFM's 1024 channels. The official evaluator is BoundaryIoUMetric,
    # whose mIoU is IoUMetric's.
    corrclipv2=dict(
        repo='corrclipv2',
        clip=dict(
            _delete_=True,
            type='CorrCLIPv2Encoder',
            name='ViT-B-16-quickgelu',
            pretrained='metaclip_fullcc',
            patch_fit='pad_centre',
            pad_multiple=56,
            vfm=dict(type='radiov3'),
            aux_clip=dict(name='hf-hub:apple/DFN2B-CLIP-ViT-B-16'),
            bank=dict(
                root='memory_bank',
                name='coco',
                main='metaclip_b',
                aux='dfnclip_b',
                num_support=20,
                alpha=0.5)),
        window=(336, 112),
        batch_windows=1,
        masks_root='data/region_masks_entityseg',
        logit_scale=40,
        pamr=dict(num_iter=0, dilations=(8, 16)),
        classes='corrclipv2',
        separator='; '))

# Per dataset and method, what its cfg_<dataset>.py sets: the test short side
# (Resize scale=(2048, s)), and the model keys it overrides (window=None:
# whole-image inference).
__datasets = dict(
    ade=dict(
        file='cfg_ade20k.py',
        classes='ade20k',
        sclip=dict(short_side=336),
        naclip=dict(short_side=336),
        clearclip=dict(short_side=448),
        proxyclip=dict(short_side=448),
        corrclip=dict(short_side=448, masks='ade'),
        corrclipv2=dict(short_side=448, masks='ade')),
    voc21=dict(
        file='cfg_voc21.py',
        classes='voc21',
        sclip=dict(short_side=336, logit_scale=65, prob_thd=0.1, area_thd=0.1),
        naclip=dict(short_side=336, window=None, prob_thd=0.1),
        clearclip=dict(short_side=448, prob_thd=0.5),
        proxyclip=dict(short_side=336, prob_thd=0.2),
        corrclip=dict(short_side=336, prob_thd=0.2, masks='voc'),
        corrclipv2=dict(short_side=336, prob_thd=0.2, masks='voc')),
    voc20=dict(
        file='cfg_voc20.py',
        classes='voc20',
        sclip=dict(short_side=336),
        naclip=dict(short_side=336, window=None),
        clearclip=dict(short_side=448),
        proxyclip=dict(short_side=336),
        corrclip=dict(short_side=336, masks='voc'),
        corrclipv2=dict(short_side=336, masks='voc')),
    context60=dict(
        file='cfg_context60.py',
        classes='context60',
        sclip=dict(short_side=336, logit_scale=50, prob_thd=0.1),
        naclip=dict(short_side=336, prob_thd=0.1),
        clearclip=dict(short_side=448, prob_thd=0.15),
        proxyclip=dict(short_side=336, prob_thd=0.15),
        corrclip=dict(short_side=336, prob_thd=0.15, masks='context'),
        corrclipv2=dict(short_side=336, prob_thd=0.15, masks='context')),
    context59=dict(
        file='cfg_context59.py',
        classes='context59',
        sclip=dict(short_side=336),
        naclip=dict(short_side=336),
        clearclip=dict(short_side=448),
        proxyclip=dict(short_side=336),
        corrclip=dict(short_side=336, masks='context'),
        corrclipv2=dict(short_side=336, masks='context')),
    coco_stuff171=dict(
        file='cfg_coco_stuff164k.py',
        classes='coco_stuff171',
        sclip=dict(short_side=448),
        naclip=dict(short_side=336),
        clearclip=dict(short_side=448),
        proxyclip=dict(short_side=336),
        corrclip=dict(short_side=336, masks='coco'),
        corrclipv2=dict(short_side=336, masks='coco')),
    cityscapes=dict(
        file='cfg_city_scapes.py',
        classes='cityscapes',
        sclip=dict(short_side=560),
        naclip=dict(short_side=560),
        clearclip=dict(short_side=448, window=(224, 224)),
        proxyclip=dict(short_side=448, window=(224, 112)),
        corrclip=dict(short_side=448, window=(224, 112), masks='city'),
        corrclipv2=dict(short_side=784, window=(224, 112), masks='city')),
    coco_object=dict(
        file='cfg_coco_object.py',
        classes='coco_object',
        sclip=dict(short_side=336, logit_scale=50, prob_thd=0.1),
        naclip=dict(short_side=336, prob_thd=0.1),
        clearclip=dict(short_side=448, prob_thd=0.4),
        proxyclip=dict(short_side=336, prob_thd=0.25),
        corrclip=dict(short_side=336, prob_thd=0.25, masks='coco'),
        corrclipv2=dict(short_side=336, prob_thd=0.25, masks='coco')),
    # ADE20K-847 and Context-459: no official config of these methods covers
    # them. Each keeps its own setting for the same images at 150 / 59
    # classes (ADE-150 / Context-59 rows above: short side, window, no
    # threshold), as CorrCLIPv2's cfg_ade847.py / cfg_context459.py do
    # (448 / 336, no prob_thd); the class files are CorrCLIPv2's, the only
    # official ones (`shared`: one file for every method). CorrCLIP's masks
    # for Context-459 are Context-59's (the same images; CorrCLIPv2's
    # cfg_context459.py reads instance_mask/context).
    ade847=dict(
        file='cfg_ade847.py',
        classes='ade847',
        shared=True,
        sclip=dict(short_side=336),
        naclip=dict(short_side=336),
        clearclip=dict(short_side=448),
        proxyclip=dict(short_side=448),
        corrclip=dict(short_side=448, masks='ade847'),
        corrclipv2=dict(short_side=448, masks='ade847')),
    context459=dict(
        file='cfg_context459.py',
        classes='context459',
        shared=True,
        sclip=dict(short_side=336),
        naclip=dict(short_side=336),
        clearclip=dict(short_side=448),
        proxyclip=dict(short_side=336),
        corrclip=dict(short_side=336, masks='context'),
        # its cfg_context459.py reads the Context masks (same images)
        corrclipv2=dict(short_side=336, masks='context')))
__corrclipv2_configs = ('https://github.com/zdk258/CorrCLIP/blob/103bc18/'
                        'CorrCLIPv2/configs')

# Published mIoU (%) of each method with its official code and protocol, as
# printed by each source; None where the source gives none.
__published = dict(
    sclip=dict(
        source='https://github.com/wangf3014/SCLIP#results',
        ade=16.45,
        cityscapes=32.34,
        coco_object=33.52,
        coco_stuff171=22.77,
        context59=34.46,
        context60=31.74,
        voc20=81.54,
        voc21=59.63),
    naclip=dict(
        source='https://github.com/sinahmr/NACLIP#results',
        voc21=64.07,
        context60=34.99,
        coco_object=36.19,
        voc20=83.03,
        cityscapes=38.27,
        context59=38.35,
        ade=19.05,
        coco_stuff171=25.69),
    clearclip=dict(
        source='https://github.com/mc-lan/ClearCLIP (README, '
        'assets/results.png, Table 2, ViT-B "+ClearCLIP")',
        voc20=80.9,
        context59=35.9,
        coco_stuff171=23.9,
        cityscapes=30.0,
        ade=16.7,
        voc21=None,
        context60=None,
        coco_object=None),
    maskclip=dict(
        source='https://github.com/mc-lan/ClearCLIP (README, '
        'assets/results.png, Table 2, ViT-B "MaskCLIP")',
        voc20=74.9,
        context59=26.4,
        coco_stuff171=16.4,
        cityscapes=12.6,
        ade=9.8,
        voc21=None,
        context60=None,
        coco_object=None),
    # per dataset: not read into this table; the repository's abstract gives
    # only the eight-benchmark average of its best setting (44.4)
    proxyclip=dict(
        source='https://github.com/mc-lan/ProxyCLIP (README abstract: '
        'eight-benchmark average 44.4, best setting)',
        voc21=None,
        context60=None,
        coco_object=None,
        voc20=None,
        context59=None,
        coco_stuff171=None,
        cityscapes=None,
        ade=None),
    corrclip=dict(
        source='https://github.com/zdk258/CorrCLIP/tree/103bc18/CorrCLIPv1'
        ' (README, ViT-B, mask generator SAM2_32)',
        voc21=74.8,
        voc20=88.8,
        context59=48.8,
        context60=44.2,
        cityscapes=49.4,
        ade=26.9,
        coco_stuff171=31.6,
        coco_object=43.7),
    corrclipv2=dict(
        source='https://github.com/zdk258/CorrCLIP/tree/103bc18/CorrCLIPv2'
        ' (README, Results, MetaCLIP ViT-B/16, CorrCLIPv2-B, Bank COCO)',
        voc21=82.2,
        voc20=93.6,
        context60=50.8,
        context59=56.3,
        coco_object=54.6,
        coco_stuff171=38.5,
        ade=33.2,
        cityscapes=58.7,
        ade847=11.7,
        context459=16.8))
# CorrCLIPv2-L (configs/baselines/corrclipv2_vitl14_*: the row's
# published_vitl14 and published_source_vitl14)
__published_vitl14 = dict(
    corrclipv2=dict(
        source='https://github.com/zdk258/CorrCLIP/tree/103bc18/CorrCLIPv2'
        ' (README, Results, MetaCLIP ViT-L/14, CorrCLIPv2-L, Bank COCO)',
        voc21=82.3,
        voc20=93.2,
        context60=51.1,
        context59=56.8,
        coco_object=58.0,
        coco_stuff171=39.1,
        ade=36.5,
        cityscapes=59.2,
        ade847=14.9,
        context459=18.6))
for __scores in __published.values():  # only CorrCLIPv2 reports these two
    __scores.setdefault('ade847', None)
    __scores.setdefault('context459', None)


def _row(method, dataset):
    spec, data = __methods[method], __datasets[dataset]
    own = dict(data[spec['repo']])
    short_side = own.pop('short_side')
    window = own.pop('window', spec['window'])
    clip = dict(spec['clip'], pos_resize='scale_factor', autocast='fp32')
    masks = own.pop('masks', None)
    if masks is not None:  # the official instance_mask_path
        root = spec.get('masks_root', 'data/region_masks')
        clip['masks'] = dict(type='files', root=f'{root}/{masks}')
    classes_cfg = dict(verbatim=True)
    if 'separator' in spec:
        classes_cfg['separator'] = spec['separator']
    classes = f"{spec['classes']}/{data['classes']}"
    if data.get('shared'):
        classes = data['classes']
    elif spec['classes'] == 'clearclip' and data['classes'] not in (
            'voc21', 'voc20', 'coco_object'):
        classes = f"sclip/{data['classes']}"  # ClearCLIP ships SCLIP's file
    if spec['classes'] == 'proxyclip' and not data.get('shared') and data[
            'classes'] not in (
            'voc21', 'coco_object'):
        # ProxyCLIP ships ClearCLIP's VOC20 file and SCLIP's others
        classes = ('clearclip/voc20' if data['classes'] == 'voc20' else
                   f"sclip/{data['classes']}")
    if window is None:
        test_cfg = dict(_delete_=True, mode='whole')
    else:
        test_cfg = dict(
            _delete_=True,
            mode='slide',
            crop_size=(window[0], window[0]),
            stride=(window[1], window[1]))
        if 'batch_windows' in spec:
            test_cfg['batch_windows'] = spec['batch_windows']
    large = __published_vitl14.get(method)
    if large is not None:  # the ViT-L/14 leaves' published numbers
        extra = dict(
            published_vitl14=large[dataset],
            published_source_vitl14=large['source'])
    else:
        extra = {}
    return dict(
        **extra,
        method=method,
        dataset=dataset,
        short_side=short_side,
        resize=dict(type='Resize', scale=(2048, short_side), keep_ratio=True),
        model=dict(
            clip=clip,
            classes=dict(file=classes, **classes_cfg),
            templates='imagenet80',
            logit_scale=own.pop('logit_scale', spec['logit_scale']),
            prob_thd=own.pop('prob_thd', 0.0),
            area_thd=own.pop('area_thd', None),
            bg_idx=0,
            pamr=spec['pamr'],
            test_cfg=test_cfg),
        source=(f"{__corrclipv2_configs}/{data['file']}" if data.get('shared')
                else f"{__repos[spec['repo']]}/configs/{data['file']}"),
        published=__published[method][dataset],
        published_source=__published[method]['source'])


protocol = {
    method: {
        dataset: _row(method, dataset)
        for dataset in __datasets
    }
    for method in __methods
}
