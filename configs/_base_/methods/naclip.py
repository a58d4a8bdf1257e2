# NACLIP (sinahmr/NACLIP; clip.variant='naclip': neighbourhood attention, a
# Gaussian window) on its official protocols, PAMR included. Every
# configs/oveva_vitb16_<dataset>.py is its NACLIP leaf plus a vocabulary
# (_base_/vocabulary/*.py; model.vocabulary=none predicts exactly what the
# baseline predicts). This base holds the OV-EVA segmentor without a
# vocabulary, the test-only runtime and `protocol`: the naclip column of
# ../protocols.py, a row per dataset. A leaf adds a dataset base and takes
# its row (e.g. configs/baselines/naclip_vitb16_ade.py).
_base_ = [
    '../models/ov_eva_vitb16.py', '../default_runtime.py', '../protocols.py'
]
protocol = dict(_delete_=True, **_base_.protocol.naclip)
