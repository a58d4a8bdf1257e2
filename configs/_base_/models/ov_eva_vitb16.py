# OV-EVA on CLIP ViT-B/16 (OpenAI weights), NACLIP last block, 224 windows.
# The benchmark configs set the rest from their protocol
# (_base_/protocols.py). The head acts once a vocabulary is set: configs add
# one from _base_/vocabulary/. Any open_clip ViT works: set clip.name /
# clip.pretrained (a tag or a local weights file); mean/std below are CLIP's
# (OpenAI) in 0-255 units.
data_preprocessor = dict(
    type='SegDataPreProcessor',
    mean=[122.771, 116.746, 104.094],
    std=[68.501, 66.632, 70.323],
    bgr_to_rgb=True,
    pad_val=0,
    seg_pad_val=255)
model = dict(
    type='OVEVASegmentor',
    data_preprocessor=data_preprocessor,
    clip=dict(
        name='ViT-B-16',
        pretrained='openai',
        variant='naclip',
        gaussian_std=5.0,
        # image tower precision: bf16/fp16 where the hardware runs it
        # natively ('auto'), or 'bf16', 'fp16', 'fp32'
        autocast='auto'),
    templates='imagenet80',
    term_templates='simple7',  # vocabulary terms: a smaller template set
    # method steps 4-6; every step has its switch (see configs/ablations)
    head=dict(
        type='OVEVAHead',
        use_similarity=True,
        map_thr=0.75,
        top_n=3,
        refine=True,
        temperature=1.0,
        fusion_lambda=0.5),
    # PAMR of the final logits (method step 6): off (0 steps) here, on
    # in NACLIP's protocol; --cfg-options model.pamr.num_iter=10 on any config
    pamr=dict(num_iter=0, dilations=(8, 16)),
    test_cfg=dict(mode='slide', crop_size=(224, 224), stride=(112, 112)))
