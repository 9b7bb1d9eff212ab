"""The task metric on the validation set during training: greedy replies to held-out prompts, scored as
``tracetune eval`` scores them.

Each validation record is cut before its last assistant turn (:func:`tracetune.chat.scoring.split_record`); its
prompt is rendered by :func:`tracetune.chat.format.render_prompt` with the record's ``tools`` / ``functions``
(the model free to answer or call, as ``tracetune eval`` asks it), decoded greedily in left-padded batches up to a
stop token or ``max_new_tokens`` (the longest expected answer plus a margin), parsed back into an OpenAI message
(:func:`tracetune.chat.format.parse_assistant`) and scored (:func:`tracetune.chat.scoring.score_reply`).

At most :data:`MAX_RECORDS` records (the first ones) are replayed, so an epoch's evaluation stays bounded in time
(32 short tool calls take ~10 s for SmolLM2 on 2 CPU cores). The metrics are ``valid_`` + the names
:func:`tracetune.chat.scoring.summarize` gives them (:data:`METRICS`); :data:`PRIMARY` is what "best" means.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tracetune.chat.format import (
    CHATML,
    ChatTemplate,
    count_tokens,
    get_template,
    parse_assistant,
    render,
    render_prompt,
)
from tracetune.chat.scoring import Score, score_reply, split_record, summarize
from tracetune.models.tokenizer import ModelTokenizer, stop_token_ids

MAX_RECORDS = 32
ANSWER_MARGIN_TOKENS = 16
BATCH_SIZE = 8
# summarize()'s name → the metric's name in job events and checkpoint metrics
METRICS = {
    "accuracy": "valid_accuracy",
    "tool_name_accuracy": "valid_tool_name_accuracy",
    "tool_args_exact": "valid_tool_args_exact",
    "valid_json_rate": "valid_json_rate",
    "text_exact": "valid_text_exact",
}
PRIMARY = "valid_accuracy"  # exact call (name + arguments) where a call is expected, exact text elsewhere


@dataclass(frozen=True)
class Reply:
    """One validation record's outcome: what was expected, what the model said, and the score."""

    line: int
    expected: dict[str, Any]
    reply: dict[str, Any]
    score: Score


@dataclass(frozen=True)
class TaskResult:
    metrics: dict[str, float | None]  # METRICS' names; None where no record applies (no call expected anywhere)
    replies: list[Reply]


class TaskEvaluator:
    """The validation prompts, tokenized once; :meth:`run` replays them against the model as it is now."""

    def __init__(
        self,
        records: Sequence[tuple[int, Mapping[str, Any]]],
        tokenizer: ModelTokenizer,
        *,
        template: ChatTemplate | str = CHATML,
        max_records: int = MAX_RECORDS,
    ) -> None:
        self.tokenizer = tokenizer
        self.template = get_template(template) if isinstance(template, str) else template
        self.items: list[tuple[int, list[int], dict[str, Any]]] = []
        longest_answer = 0
        for line, record in list(records)[:max_records]:
            prompt, expected = split_record(record, line)
            text = render_prompt(
                prompt, tools=record.get("tools"), functions=record.get("functions"), template=self.template
            )
            self.items.append((line, tokenizer.encode(text), expected))
            _, answer_tokens = count_tokens(render([expected], template=self.template), tokenizer)
            longest_answer = max(longest_answer, answer_tokens)
        self.max_new_tokens = longest_answer + ANSWER_MARGIN_TOKENS
        self.stop_ids = sorted(stop_token_ids(tokenizer, self.template.name))
        self.constant_score = constant_answer_score([expected for _, _, expected in self.items])

    def __len__(self) -> int:
        return len(self.items)

    def run(self, model: Any, pad_id: int, *, batch_size: int = BATCH_SIZE) -> TaskResult:
        """Greedy replies of ``model`` (put in eval mode for the call) to every prompt, scored."""
        import torch

        was_training = model.training
        model.eval()
        replies: list[Reply] = []
        try:
            with torch.no_grad():
                order = sorted(range(len(self.items)), key=lambda i: len(self.items[i][1]))
                done: dict[int, Reply] = {}
                for start in range(0, len(order), batch_size):
                    chunk = order[start : start + batch_size]
                    texts = self._generate(model, [self.items[i][1] for i in chunk], pad_id)
                    for i, text in zip(chunk, texts, strict=True):
                        line, _, expected = self.items[i]
                        parsed = parse_assistant(text, id_seed=f"valid:{line}", template=self.template)
                        reply: dict[str, Any] = {"role": "assistant", "content": parsed["content"]}
                        if parsed["tool_calls"]:
                            reply["tool_calls"] = parsed["tool_calls"]
                        done[i] = Reply(line, expected, reply, score_reply(expected, reply))
                replies = [done[i] for i in range(len(self.items))]
        finally:
            model.train(was_training)
        summary = summarize([r.score for r in replies])
        return TaskResult({name: summary[key] for key, name in METRICS.items()}, replies)

    def _generate(self, model: Any, prompts: list[list[int]], pad_id: int) -> list[str]:
        """Greedy continuations of ``prompts`` (left-padded into one batch), cut at the first stop token."""
        import torch
        from transformers import GenerationConfig

        device = next(model.parameters()).device
        width = max(len(p) for p in prompts)
        ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(prompts), width), dtype=torch.long)
        for row, prompt in enumerate(prompts):
            ids[row, width - len(prompt) :] = torch.tensor(prompt, dtype=torch.long)
            mask[row, width - len(prompt) :] = 1
        config = GenerationConfig(
            do_sample=False, max_new_tokens=self.max_new_tokens, eos_token_id=self.stop_ids, pad_token_id=pad_id
        )
        out = model.generate(input_ids=ids.to(device), attention_mask=mask.to(device), generation_config=config)
        texts = []
        for row in out[:, width:].tolist():
            cut = next((k for k, token in enumerate(row) if token in self.stop_ids), len(row))
            texts.append(self.tokenizer.decode(row[:cut]))
        return texts


def constant_answer_score(expected: Sequence[Mapping[str, Any]]) -> float:
    """The best :data:`PRIMARY` score a model that gives one answer to every prompt could get on these expected
    replies (the most common answer's share): a model scoring no better has not learned the decision yet."""
    best = 0.0
    for answer in expected:
        accuracy = summarize([score_reply(want, answer) for want in expected])["accuracy"]
        best = max(best, float(accuracy or 0.0))
    return best
