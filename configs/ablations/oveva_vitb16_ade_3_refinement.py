# Ablation 3: + mask-guided score refinement: full OV-EVA with GPT-4o.
_base_ = ['./oveva_vitb16_ade_1_vocabulary_only.py']
model = dict(head=dict(use_similarity=True, top_n=3, refine=True))
