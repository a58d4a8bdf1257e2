# Any OpenAI-compatible server (vLLM, Ollama, LM Studio, llama.cpp) serving
# an MLLM, e.g. `vllm serve llava-hf/llava-1.5-7b-hf`. A key is optional
# ($OPENAI_API_KEY). Use as openai_gpt4o.py.
vocabulary = dict(
    type='OpenAIVocabulary',
    model='llava-hf/llava-1.5-7b-hf',
    base_url='http://localhost:8000/v1',
    k=5,
    rounds=2,
    max_terms=64,
    concurrency=16)
