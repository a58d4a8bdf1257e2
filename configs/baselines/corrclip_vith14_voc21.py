# CorrCLIP on PASCAL VOC 2012 (21 classes), CLIP ViT-H/14, on the official
# protocol (row protocol.corrclip.voc21 of ../_base_/protocols.py, which names
# its source): DINO ViT-B/8 correlation within pre-generated SAM2 masks
# (model.clip.masks.root: a folder of <image stem>.npz, as the official
# instance_mask_path) and the map correction. The tower is the official code's
# ViT-H/14 (ViT-H-14, laion2b_s32b_b79k); everything else is the ViT-B/16
# protocol.
_base_ = [
    '../_base_/models/ov_eva_vitb16.py', '../_base_/datasets/voc21.py',
    '../_base_/default_runtime.py', '../_base_/protocols.py'
]
protocol = dict(_delete_=True, **_base_.protocol.corrclip.voc21)
model = protocol['model']
model['clip'].update(name='ViT-H-14', pretrained='laion2b_s32b_b79k')
test_pipeline = [
    protocol['resize'] if step.type == 'Resize' else step
    for step in _base_.test_pipeline
]
test_dataloader = dict(dataset=dict(pipeline=test_pipeline))
