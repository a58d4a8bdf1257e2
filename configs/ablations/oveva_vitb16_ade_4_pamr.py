# Ablation 4: full OV-EVA + PAMR refinement of the final logits (DESIGN.md
# step 6; off in every other config). NACLIP's setting: 10 steps at
# dilations 8 and 16. About 3 s more per image on 2 CPU cores.
_base_ = ['./oveva_vitb16_ade_3_refinement.py']
model = dict(pamr=dict(num_iter=10, dilations=(8, 16)))
