# CorrCLIP on ADE20K-150, CLIP ViT-B/16, on the official protocol, with the
# region masks of EoMT (COCO-panoptic EoMT-L at 640 pixels) generated in one
# pass per image and cached, in place of the pre-generated SAM2 masks:
# CorrCLIPv1's mask_generator='eomt'. Weights:
# tue-mps/coco_panoptic_eomt_large_640 from the Hugging Face cache (or
# model.clip.masks.pretrained=FOLDER). Any CorrCLIP config takes the same
# masks with --cfg-options model.clip.masks=eomt.
_base_ = ['../baselines/corrclip_vitb16_ade.py']
__masks = dict(_delete_=True, type='eomt')
model = dict(clip=dict(masks=__masks))
# the row with these masks, and the number published for them
# (tools/compare.py prints it beside the measured one)
protocol = dict(
    model=dict(clip=dict(masks=__masks)),
    published=26.7,
    published_source='https://github.com/zdk258/CorrCLIP/tree/103bc18/'
    'CorrCLIPv1 (README, table "Mask Generator", ViT-B, EoMT)')
