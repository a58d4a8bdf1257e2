# OV-EVA on CorrCLIPv2 ViT-B/16, ADE20K-150: its baseline + a vocabulary
_base_ = ['./baselines/corrclipv2_vitb16_ade.py']
model = dict(vocabulary=dict(type='LexiconVocabulary'))
