# OV-EVA on CorrCLIPv2 ViT-B/16, Context-459: its baseline + a vocabulary
_base_ = ['./baselines/corrclipv2_vitb16_context459.py']
model = dict(vocabulary=dict(type='LexiconVocabulary'))
