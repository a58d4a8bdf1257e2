# CorrCLIP on PASCAL Context-60, CLIP ViT-B/16, on the official protocol (row
# protocol.corrclip.context60 of ../_base_/protocols.py, which names its
# source): DINO ViT-B/8 correlation within pre-generated SAM2 masks
# (model.clip.masks.root: a folder of <image stem>.npz, as the official
# instance_mask_path) and the map correction.
_base_ = [
    '../_base_/models/ov_eva_vitb16.py', '../_base_/datasets/context60.py',
    '../_base_/default_runtime.py', '../_base_/protocols.py'
]
protocol = dict(_delete_=True, **_base_.protocol.corrclip.context60)
model = protocol['model']
test_pipeline = [
    protocol['resize'] if step.type == 'Resize' else step
    for step in _base_.test_pipeline
]
test_dataloader = dict(dataset=dict(pipeline=test_pipeline))
