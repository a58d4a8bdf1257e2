# ClearCLIP (mc-lan/ClearCLIP; clip.variant='clearclip': q-q attention, no
# residual, no FFN in the last block) on its official protocols. This base
# holds the OV-EVA segmentor without a vocabulary, the test-only runtime and
# `protocol`: the clearclip column of ../protocols.py, a row per dataset. A
# leaf adds a dataset base and takes its row (e.g.
# configs/baselines/clearclip_vitb16_ade.py).
_base_ = [
    '../models/ov_eva_vitb16.py', '../default_runtime.py', '../protocols.py'
]
protocol = dict(_delete_=True, **_base_.protocol.clearclip)
