# MaskCLIP as ClearCLIP re-implements it (clip.variant='vanilla': values
# through the last attention's output projection, no residual, no FFN) on
# ClearCLIP's protocols. This base holds the OV-EVA segmentor without a
# vocabulary, the test-only runtime and `protocol`: the maskclip column of
# ../protocols.py, a row per dataset. A leaf adds a dataset base and takes
# its row (e.g. configs/baselines/maskclip_vitb16_ade.py).
_base_ = [
    '../models/ov_eva_vitb16.py', '../default_runtime.py', '../protocols.py'
]
protocol = dict(_delete_=True, **_base_.protocol.maskclip)
