# dataset settings (PASCAL Context, 459 classes, test only; docs/datasets.md)
# Labels are uint16 .tif as CAT-Seg's prepare_pascal_context_459.py writes
# them from PASCAL Context's trainval/*.mat (class v = LabelMap v + 1).
# Folders and Resize: CorrCLIPv2's cfg_context459.py (short side 336).
dataset_type = 'PascalContext459Dataset'
data_root = 'data/VOCdevkit/VOC2010/'
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(2048, 336), keep_ratio=True),
    dict(type='LoadWideAnnotations'),
    dict(type='PackSegInputs')
]
# --tta: the other dataset bases' scales and flips, labels as above
img_ratios = [0.75, 1.0, 1.25]
tta_pipeline = [
    dict(type='LoadImageFromFile', backend_args=None),
    dict(
        type='TestTimeAug',
        transforms=[
            [
                dict(type='Resize', scale_factor=r, keep_ratio=True)
                for r in img_ratios
            ],
            [
                dict(type='RandomFlip', prob=0., direction='horizontal'),
                dict(type='RandomFlip', prob=1., direction='horizontal')
            ], [dict(type='LoadWideAnnotations')], [dict(type='PackSegInputs')]
        ])
]
test_dataloader = dict(
    batch_size=1,
    num_workers=2,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        data_prefix=dict(
            img_path='JPEGImages',
            seg_map_path='annotations_detectron2/pc459_val'),
        ann_file='ImageSets/SegmentationContext/val.txt',
        pipeline=test_pipeline))
val_dataloader = test_dataloader

test_evaluator = dict(
    type='IoUMetric', iou_metrics=['mIoU'], ignore_index=65535)
val_evaluator = test_evaluator
