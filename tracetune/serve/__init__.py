"""Serving ``POST /v1/chat/completions``, the OpenAI side (no torch here):

``protocol`` (``ChatCompletionRequest``: the request, validated once; the answer's TypedDicts), ``chat``
(``ChatService``: request → prompt + constraint → engine → answer), ``chat_stream`` (``DeltaBuilder``: text → stream
deltas), ``constrain`` (``constraint_for_request``, ``grammar_for_schema``: what a request forces), ``schema_check``,
``lookup`` (``lookup_model``: a model id or alias → base model + adapter) and ``text`` (``Decoder``: token ids → text
with stop strings). The engines are in the ``engine`` subpackage."""
