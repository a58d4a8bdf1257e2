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
    detail='auto',  # or 'low' (85 image tokens a call) / 'high'
    max_cost=None,  # hard budget in dollars, e.g. 0.5 (see the README)
    batch=False)  # True: OpenAI's Batch API at half price (resumable)
# prices: the dated table ov_eva/vocabulary/prices.json; override with
# price_file=... or prices=dict(input=..., output=...) (USD / 1M tokens)
