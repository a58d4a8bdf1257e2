_base_ = [
    './_base_/models/ov_eva_vitb16.py', './_base_/datasets/context60.py',
    './_base_/default_runtime.py'
]
model = dict(classes='context60', prob_thd=0.1)
