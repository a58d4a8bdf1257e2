# A local transformers image-text-to-text model (LLaVA, Janus-Pro,
# Qwen2.5-VL), weights from the Hugging Face cache or a local folder.
vocabulary = dict(
    type='HFVocabulary',
    model='Qwen/Qwen2.5-VL-7B-Instruct',
    k=5,
    rounds=2,
    max_terms=64)
