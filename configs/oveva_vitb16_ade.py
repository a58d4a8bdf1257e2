_base_ = [
    './_base_/models/ov_eva_vitb16.py', './_base_/datasets/ade20k.py',
    './_base_/default_runtime.py'
]
model = dict(classes='ade20k')
