# OV-EVA on CorrCLIP, COCO-Stuff-171, CLIP ViT-B/16: CorrCLIP's official
# protocol (./baselines/corrclip_vitb16_coco_stuff171.py) plus a vocabulary,
# which turns the OV-EVA head on; model.vocabulary=none predicts what the
# baseline predicts. The vocabulary source switches in one line (see
# oveva_vitb16_ade.py).
_base_ = ['./baselines/corrclip_vitb16_coco_stuff171.py']
model = dict(vocabulary=dict(type='LexiconVocabulary'))
