# CorrCLIPv2 (zdk258/CorrCLIP, CorrCLIPv2; CorrCLIPv2Encoder: C-RADIOv3-L
# correlation within pre-generated EntitySeg masks, support retrieved from
# the 'coco' memory bank and fused with the image's logits, then the map
# correction; model.clip.masks.root: a folder of <image stem>.npz, as the
# official instance_mask_path; model.clip.bank.root: the folder of the
# official memory_bank, see docs/corrclipv2.md) on its official protocols.
# This base holds the OV-EVA segmentor without a vocabulary, the test-only
# runtime and `protocol`: the corrclipv2 column of ../protocols.py, a row
# per dataset. A leaf adds a dataset base and takes its row (e.g.
# configs/baselines/corrclipv2_vitb16_ade.py).
_base_ = [
    '../models/ov_eva_vitb16.py', '../default_runtime.py', '../protocols.py'
]
protocol = dict(_delete_=True, **_base_.protocol.corrclipv2)
