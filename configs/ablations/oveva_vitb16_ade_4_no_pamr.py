# Ablation 4: full OV-EVA with GPT-4o without PAMR, the image-guided
# refinement of the final logits that NACLIP's protocol (and so every other
# OV-EVA config) runs: what OV-EVA gives on NACLIP's plain score maps.
_base_ = ['./oveva_vitb16_ade_3_refinement.py']
model = dict(pamr=dict(num_iter=0))
