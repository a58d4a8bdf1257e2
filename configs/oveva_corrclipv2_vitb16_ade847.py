# OV-EVA on CorrCLIPv2 ViT-B/16, ADE20K-847: its baseline + a vocabulary
_base_ = ['./baselines/corrclipv2_vitb16_ade847.py']
model = dict(vocabulary=dict(type='LexiconVocabulary'))
