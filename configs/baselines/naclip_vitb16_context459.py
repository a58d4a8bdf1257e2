# NACLIP on Context-459, CLIP ViT-B/16 (setting: ../_base_/protocols.py)
_base_ = ['../_base_/methods/naclip.py', '../_base_/datasets/context459.py']
protocol = dict(_delete_=True, **_base_.protocol.context459)
model = protocol['model']
test_pipeline = list(_base_.test_pipeline)
test_pipeline[1] = protocol['resize']  # the dataset's steps, the row's resize
test_dataloader = dict(dataset=dict(pipeline=test_pipeline))
