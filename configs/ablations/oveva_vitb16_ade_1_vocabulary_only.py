# Ablation 1: GPT-4o vocabulary only. Each term goes to the class the MLLM
# named (none: dropped), all kept, equal weights. Baseline (no vocabulary):
# baselines/naclip_vitb16_ade.py.
_base_ = [
    '../_base_/models/ov_eva_vitb16.py', '../_base_/datasets/ade20k.py',
    '../_base_/default_runtime.py', '../_base_/vocabulary/openai_gpt4o.py'
]
model = dict(
    classes='ade20k',
    vocabulary={{_base_.vocabulary}},
    head=dict(use_similarity=False, top_n=None, refine=False))
