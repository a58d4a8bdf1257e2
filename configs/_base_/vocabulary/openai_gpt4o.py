# GPT-4o through the OpenAI API; the key comes from $OPENAI_API_KEY only.
# Use: add this file to _base_ and set model.vocabulary={{_base_.vocabulary}}
vocabulary = dict(
    type='OpenAIVocabulary',
    model='gpt-4o',
    k=5,
    rounds=2,
    max_terms=64,
    max_image_side=768,
    concurrency=16,
    prices=dict(input=2.5, output=10.0))  # USD / 1M tokens, for the logs
