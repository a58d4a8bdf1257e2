# ProxyCLIP on COCO-Stuff 171, CLIP ViT-B/16 + DINO ViT-B/8, on the
# official protocol: row protocol.proxyclip.coco_stuff171 of
# ../_base_/protocols.py, which names its source. The proxy is DINO
# ViT-B/8 through transformers (model.clip.vfm: name and pretrained, a hub
# id or a local folder written by save_pretrained).
_base_ = [
    '../_base_/models/ov_eva_vitb16.py', '../_base_/datasets/coco_stuff171.py',
    '../_base_/default_runtime.py', '../_base_/protocols.py'
]
protocol = dict(_delete_=True, **_base_.protocol.proxyclip.coco_stuff171)
model = protocol['model']
test_pipeline = [
    protocol['resize'] if step.type == 'Resize' else step
    for step in _base_.test_pipeline
]
test_dataloader = dict(dataset=dict(pipeline=test_pipeline))
