"""Reinforcement fine-tuning's step: sample several answers per prompt, grade them, move the policy towards the
better ones — GRPO's group-relative advantages (Shao et al., 2024), the recipe that made RFT practical.

For a batch of prompts (each an RFT line: :mod:`tracetune.chat.reinforcement`):

1. :meth:`Rollout.sample` — ``samples`` answers per prompt from the policy as it is (temperature 1, no dropout, no
   gradients; HF ``generate``), each cut after the chat format's end of turn (kept: the model learns to stop) or
   at ``max_answer_tokens``, parsed with the one chat format parser (text, tool calls);
2. each answer is graded by the job's grader (:func:`tracetune.train.graders.run_grader`; the sample the grader
   sees is ``output_text``, ``output_json`` and ``output_tools``) → a reward in [0, 1];
3. :func:`advantages` — an answer's reward minus its group's mean, over the group's standard deviation; a group
   whose answers all scored the same teaches nothing and gets 0;
4. :func:`policy_loss_backward` — ``-Σ advantage · log π(answer | prompt) / Σ answer tokens`` (one update per batch
   of fresh samples: on-policy, so PPO's ratio is 1 and its clipping has nothing to clip; no KL term, as Dr. GRPO
   and DAPO drop it), backward.

The validation reward is the greedy answer's (one per prompt), graded the same way.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tracetune.chat.format import CHATML, ChatTemplate, get_template, parse_assistant, render_prompt
from tracetune.chat.reinforcement import reinforcement_prompt
from tracetune.models.tokenizer import ModelTokenizer, stop_token_ids
from tracetune.train.data import IGNORE_INDEX, Example, collate
from tracetune.train.graders import GradeResult, run_grader
from tracetune.train.model_graders import ModelEndpoint

if TYPE_CHECKING:
    from tracetune.train.loss import CausalLM

ADVANTAGE_EPS = 1e-4


@dataclass
class Answer:
    """One sampled answer: its prompt's index, its tokens (the end of turn included when it stopped there), its
    parsed reply and its grade."""

    prompt: int
    tokens: list[int]
    reply: dict[str, Any]
    grade: GradeResult


class Rollout:
    """The prompts of an RFT file, tokenized once, and the grader their answers are scored with."""

    def __init__(
        self,
        records: Sequence[tuple[int, Mapping[str, Any]]],
        tokenizer: ModelTokenizer,
        grader: Mapping[str, Any],
        *,
        template: ChatTemplate | str = CHATML,
        max_answer_tokens: int = 64,
        endpoint: ModelEndpoint | None = None,
    ) -> None:
        self.tokenizer = tokenizer
        self.grader = grader
        self.endpoint = endpoint  # what model graders call
        self.template = get_template(template) if isinstance(template, str) else template
        self.max_answer_tokens = max_answer_tokens
        self.records = [dict(record) for _, record in records]
        self.lines = [line for line, _ in records]
        self.prompts: list[list[int]] = []
        for record in self.records:
            prompt = reinforcement_prompt(record)
            text = render_prompt(
                prompt["messages"], tools=prompt.get("tools"), functions=prompt.get("functions"), template=self.template
            )
            self.prompts.append(tokenizer.encode(text))
        self.stop_ids = sorted(stop_token_ids(tokenizer, self.template.name))
        self.turn_end = tokenizer.token_id(self.template.turn_end)

    def __len__(self) -> int:
        return len(self.prompts)

    def sample(self, model: Any, indexes: Sequence[int], pad_id: int, samples: int) -> list[Answer]:
        """``samples`` answers to each prompt of ``indexes`` (``samples=1`` with ``greedy`` decoding is the
        validation answer: see :meth:`greedy`), graded."""
        return self._answers(model, indexes, pad_id, samples, do_sample=True)

    def greedy(self, model: Any, indexes: Sequence[int], pad_id: int) -> list[Answer]:
        return self._answers(model, indexes, pad_id, 1, do_sample=False)

    def _answers(self, model: Any, indexes: Sequence[int], pad_id: int, samples: int, do_sample: bool) -> list[Answer]:
        import torch
        from transformers import GenerationConfig

        device = next(model.parameters()).device
        prompts = [self.prompts[i] for i in indexes]
        width = max(len(p) for p in prompts)
        ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(prompts), width), dtype=torch.long)
        for row, prompt in enumerate(prompts):  # left-padded: every answer starts at column ``width``
            ids[row, width - len(prompt) :] = torch.tensor(prompt, dtype=torch.long)
            mask[row, width - len(prompt) :] = 1
        config = GenerationConfig(
            do_sample=do_sample, temperature=1.0 if do_sample else None, top_k=0 if do_sample else None,
            top_p=1.0 if do_sample else None, num_return_sequences=samples, max_new_tokens=self.max_answer_tokens,
            eos_token_id=self.stop_ids, pad_token_id=pad_id,
        )  # fmt: skip
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                out = model.generate(input_ids=ids.to(device), attention_mask=mask.to(device), generation_config=config)
        finally:
            model.train(was_training)
        answers = []
        for row, generated in enumerate(out[:, width:].tolist()):
            index = indexes[row // samples]
            cut = next((k for k, token in enumerate(generated) if token in self.stop_ids), None)
            tokens = generated if cut is None else generated[: cut + 1]
            if cut is not None and tokens[-1] != self.turn_end and self.turn_end is not None:
                tokens[-1] = self.turn_end  # another stop token (eos) ends the turn as the format does
            text = self.tokenizer.decode([t for t in tokens if t not in self.stop_ids])
            parsed = parse_assistant(text, template=self.template)
            reply: dict[str, Any] = {"role": "assistant", "content": parsed["content"]}
            if parsed["tool_calls"]:
                reply["tool_calls"] = parsed["tool_calls"]
            calls = [dict(c) for c in parsed["tool_calls"]]
            grade = run_grader(
                self.grader, parsed["content"] or "", self.records[index], tools=calls, endpoint=self.endpoint
            )
            answers.append(Answer(index, tokens, reply, grade))
        return answers

    def examples(self, answers: Sequence[Answer]) -> list[Example]:
        """Each answer as a training example: its prompt (no loss) followed by its tokens (the loss)."""
        return [
            Example(
                self.lines[a.prompt], self.prompts[a.prompt] + a.tokens,
                [IGNORE_INDEX] * len(self.prompts[a.prompt]) + a.tokens,
            )
            for a in answers
        ]  # fmt: skip


def advantages(answers: Sequence[Answer]) -> list[float]:
    """GRPO's advantage of each answer: (reward - its group's mean) / (its group's std + eps); 0 for a group whose
    answers all scored the same."""
    groups: dict[int, list[float]] = {}
    for a in answers:
        groups.setdefault(a.prompt, []).append(a.grade.reward)
    stats = {}
    for prompt, rewards in groups.items():
        mean = sum(rewards) / len(rewards)
        std = (sum((r - mean) ** 2 for r in rewards) / len(rewards)) ** 0.5
        stats[prompt] = (mean, std)
    return [
        0.0 if stats[a.prompt][1] == 0 else (a.grade.reward - stats[a.prompt][0]) / (stats[a.prompt][1] + ADVANTAGE_EPS)
        for a in answers
    ]


def policy_loss_backward(
    lm: CausalLM, examples: Sequence[Example], weights: Sequence[float], pad_id: int, device: Any, share_prefix: bool
) -> float:
    """``-Σ weight · log π(answer) / Σ answer tokens`` over ``examples`` (answers with a zero weight are left out),
    backward; the loss. 0.0 (and no backward) when every weight is 0."""
    from tracetune.train.loss import sequence_logps

    kept = [(e, w) for e, w in zip(examples, weights, strict=True) if w != 0.0]
    if not kept:
        return 0.0
    import torch

    batch = collate([e for e, _ in kept], pad_id, device)
    logps = sequence_logps(lm, batch, share_prefix)
    tokens = sum(e.n_trainable for e, _ in kept)
    loss = -(torch.tensor([w for _, w in kept], dtype=logps.dtype, device=logps.device) * logps).sum() / tokens
    loss.backward()
    return float(loss.detach())
