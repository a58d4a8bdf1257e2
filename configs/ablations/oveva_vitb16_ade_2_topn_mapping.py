# Ablation 2: + top-N target class mapping by CLIP text similarity, equal
# weights (no mask-guided refinement).
_base_ = ['./oveva_vitb16_ade_1_vocabulary_only.py']
model = dict(head=dict(use_similarity=True, top_n=3, refine=False))
