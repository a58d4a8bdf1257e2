# Vocabulary-free OV-EVA on ADE20K-150: no class list at all. Each image's
# classes come from its vocabulary (here the offline lexicon's top concepts;
# model.vocabulary.type=OpenAIVocabulary for an MLLM's perceived terms),
# merged into synonym groups by CLIP text similarity (auto_merge_thr), at
# most max_auto_classes of them, after a background class. mIoU is then
# measured by matching each found class to its nearest ADE20K class by text
# similarity, as vocabulary-free segmentation papers report it;
# tools/compare.py puts it in its own column.
_base_ = ['../oveva_vitb16_ade.py']
model = dict(
    classes='auto',
    max_auto_classes=10,
    auto_merge_thr=0.9,
    auto_background='background')
