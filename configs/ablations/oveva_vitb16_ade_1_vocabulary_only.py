# Ablation 1: GPT-4o vocabulary only. Each term goes to the class the MLLM
# named (none: dropped), all kept, equal weights. On NACLIP's protocol, as
# every OV-EVA config; baseline (no vocabulary):
# baselines/naclip_vitb16_ade.py.
_base_ = [
    '../baselines/naclip_vitb16_ade.py', '../_base_/vocabulary/openai_gpt4o.py'
]
model = dict(
    vocabulary={{_base_.vocabulary}},
    head=dict(use_similarity=False, top_n=None, refine=False))
