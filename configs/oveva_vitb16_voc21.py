_base_ = [
    './_base_/models/ov_eva_vitb16.py', './_base_/datasets/voc21.py',
    './_base_/default_runtime.py'
]
model = dict(classes='voc21', prob_thd=0.1)
