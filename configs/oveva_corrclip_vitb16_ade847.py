# OV-EVA on CorrCLIP ViT-B/16, ADE20K-847: its baseline + a vocabulary
_base_ = ['./baselines/corrclip_vitb16_ade847.py']
model = dict(vocabulary=dict(type='LexiconVocabulary'))
