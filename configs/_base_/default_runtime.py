# Test-only runtime: OV-EVA is training-free.
default_scope = 'mmseg'
custom_imports = dict(imports=['ov_eva'], allow_failed_imports=False)
env_cfg = dict(
    cudnn_benchmark=False,
    mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
    dist_cfg=dict(backend='nccl'),
)
vis_backends = [dict(type='LocalVisBackend')]
visualizer = dict(
    type='SegLocalVisualizer', vis_backends=vis_backends, name='visualizer')
log_processor = dict(by_epoch=False)
log_level = 'INFO'
load_from = None
resume = False
randomness = dict(seed=0)  # fixes random weights of the tiny test model
default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=50, log_metric_by_epoch=False),
    # draw every image when --show-dir asks for pictures (mmseg: every 50th)
    visualization=dict(type='SegVisualizationHook', interval=1))
test_cfg = dict(type='TestLoop')
val_cfg = dict(type='ValLoop')
tta_model = dict(type='SegTTAModel')
# Checks the model's classes against the test dataset's (and takes the
# dataset's when model.classes is None); fills the vocabulary cache before
# testing (does nothing without a source).
custom_hooks = [
    dict(type='DatasetClassesHook'),
    dict(type='VocabularyPrefetchHook')
]
