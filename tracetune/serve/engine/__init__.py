"""The engines behind ``/v1/chat/completions``: ``protocol`` (the ``Engine`` interface every engine implements,
``GenerationRequest``, ``SamplingParams``, ``SequenceEvent``), ``manager`` (``EngineManager``: one engine per base
model, made on first use), ``llamacpp`` (``LlamaCppEngine``, the CPU default: llama.cpp on the GGUF, LoRA adapters
per request) and ``llamacpp_process`` (``LlamaProcess``: llama.cpp's server in a child process, restarted when it
dies), ``vllm`` (``VLLMEngine``, for GPUs: vLLM with LoRA, the ``vllm`` extra), ``hf`` (``HFEngine``, the
transformers batching engine, the reference) and its parts (``kv``, ``prefix_cache``, ``sampling``, ``sequence``,
``adapters``, ``grammar`` — the tokenizer-bound constraint matcher). The OpenAI-side request handling
(``serve.chat``, ``serve.protocol``, ``serve.constrain`` …) sits one level up and imports no torch."""
