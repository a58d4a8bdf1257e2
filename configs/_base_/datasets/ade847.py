# dataset settings (ADE20K-full, 847 classes, test only; docs/datasets.md)
# Labels are uint16 .tif (65535 ignored) as CAT-Seg's converter writes them.
# Resize: CorrCLIPv2's cfg_ade847.py (short side 448, as for ADE-150).
dataset_type = 'ADE20K847Dataset'
data_root = 'data/ADE20K_2021_17_01'
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(2048, 448), keep_ratio=True),
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
            img_path='images_detectron2/validation',
            seg_map_path='annotations_detectron2/validation'),
        pipeline=test_pipeline))
val_dataloader = test_dataloader

test_evaluator = dict(
    type='IoUMetric', iou_metrics=['mIoU'], ignore_index=65535)
val_evaluator = test_evaluator
