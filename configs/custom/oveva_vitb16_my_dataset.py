# OV-EVA on your own dataset. Copy this file, set the values marked 1-6,
# then: python tools/test.py configs/custom/<your copy>.py
# Walk-through: docs/own_dataset.md. The model follows NACLIP's protocol, as
# every OV-EVA config (short side 336, 224/112 windows, logit scale 40,
# PAMR), with ADE20K's row of ../_base_/protocols.py.
_base_ = [
    '../_base_/models/ov_eva_vitb16.py', '../_base_/default_runtime.py',
    '../_base_/protocols.py'
]
protocol = dict(_delete_=True, **_base_.protocol.naclip.ade)

# 1. The folder: <data_root>/images/*.jpg and <data_root>/labels/*.png, a
#    label PNG per image with the same stem, one class index a pixel.
data_root = 'data/my_dataset'
img_suffix = '.jpg'
# 2. The classes: a text file, one class a line, synonyms comma-separated
#    ("sofa, couch"). Label value v is the class on line v + 1; 255 is
#    ignored (not scored). The model reads every synonym from this file.
class_file = 'data/my_dataset/classes.txt'
# 3. Labels whose 0 means "unlabelled" and whose classes start at 1: True
#    (0 becomes 255, ignored, and v becomes v - 1).
reduce_zero_label = False
# 4. Label values that mean "unlabelled" in your files, besides 255 (e.g.
#    CamVid's 11 "void"): read as 255, not scored. Any other value that is
#    no class (>= the number of lines of class_file) stops the run, naming
#    the value and its files.
ignore_values = []
# 5. An image or label file that does not decode stops the run, naming it;
#    True checks every file first and leaves out those that do not decode
#    (listed after the table; same as tools/test.py --skip-corrupt).
skip_corrupt = False
# 6. A catch-all class (e.g. line 1 "background"): its index, and the class
#    probability below which a pixel goes to it (the VOC21 protocols use
#    0.1); 0.0 turns the rule off.
bg_idx = 0
prob_thd = 0.0

model = dict(
    protocol['model'],
    classes=None,  # the dataset's: every line of class_file
    bg_idx=bg_idx,
    prob_thd=prob_thd,
    vocabulary=dict(type='LexiconVocabulary'))
test_pipeline = [
    dict(type='LoadImageFromFile'), protocol['resize'],
    dict(type='LoadAnnotations'),
    dict(type='PackSegInputs')
]
test_dataloader = dict(
    batch_size=1,
    num_workers=2,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type='ClassFileSegDataset',
        class_file=class_file,
        data_root=data_root,
        data_prefix=dict(img_path='images', seg_map_path='labels'),
        img_suffix=img_suffix,
        seg_map_suffix='.png',
        reduce_zero_label=reduce_zero_label,
        ignore_values=ignore_values,
        skip_corrupt=skip_corrupt,
        pipeline=test_pipeline))
val_dataloader = test_dataloader
tta_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(
        type='TestTimeAug',
        transforms=[
            [
                dict(type='Resize', scale_factor=r, keep_ratio=True)
                for r in (0.75, 1.0, 1.25)
            ],
            [
                dict(type='RandomFlip', prob=0., direction='horizontal'),
                dict(type='RandomFlip', prob=1., direction='horizontal')
            ], [dict(type='LoadAnnotations')], [dict(type='PackSegInputs')]
        ])
]
test_evaluator = dict(type='IoUMetric', iou_metrics=['mIoU'])
val_evaluator = test_evaluator
