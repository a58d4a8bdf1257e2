# CorrCLIPv2 on PASCAL Context-459, MetaCLIP ViT-B/16, official protocol
_base_ = [
    '../_base_/methods/corrclipv2.py', '../_base_/datasets/context459.py'
]
protocol = dict(_delete_=True, **_base_.protocol.context459)
model = protocol['model']
test_pipeline = list(_base_.test_pipeline)
test_pipeline[1] = protocol['resize']  # the dataset's steps, the row's resize
test_dataloader = dict(dataset=dict(pipeline=test_pipeline))
