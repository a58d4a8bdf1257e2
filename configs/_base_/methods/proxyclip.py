# ProxyCLIP (mc-lan/ProxyCLIP; ProxyCLIPEncoder: CLIP values mixed by the
# proxy attention of DINO ViT-B/8 through transformers; model.clip.vfm.name
# and .pretrained: a hub id or a local save_pretrained folder) on its
# official protocols. This base holds the OV-EVA segmentor without a
# vocabulary, the test-only runtime and `protocol`: the proxyclip column of
# ../protocols.py, a row per dataset. A leaf adds a dataset base and takes
# its row (e.g. configs/baselines/proxyclip_vitb16_ade.py).
_base_ = [
    '../models/ov_eva_vitb16.py', '../default_runtime.py', '../protocols.py'
]
protocol = dict(_delete_=True, **_base_.protocol.proxyclip)
