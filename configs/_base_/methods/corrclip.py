# CorrCLIP (zdk258/CorrCLIP, CorrCLIPv1; CorrCLIPEncoder: DINO ViT-B/8
# correlation within pre-generated SAM2 masks, then the map correction;
# model.clip.masks.root: a folder of <image stem>.npz, as the official
# instance_mask_path) on its official protocols. This base holds the OV-EVA
# segmentor without a vocabulary, the test-only runtime and `protocol`: the
# corrclip column of ../protocols.py, a row per dataset. A leaf adds a
# dataset base and takes its row (e.g.
# configs/baselines/corrclip_vitb16_ade.py).
_base_ = [
    '../models/ov_eva_vitb16.py', '../default_runtime.py', '../protocols.py'
]
protocol = dict(_delete_=True, **_base_.protocol.corrclip)
