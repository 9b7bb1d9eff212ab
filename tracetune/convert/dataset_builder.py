"""The dataset pipeline over groups of runs, in memory (no I/O): runs → sessions → records + a summary.

``DatasetBuilder(options, inspect).add_group(runs, corrections)`` takes the runs of ONE trace (a file's or the
store's stream, cut at trace boundaries by ``export.py``) and yields ``BuiltRecord``\\ s; ``builder.summary``
counts everything on the way. Per run, then per conversation:

1. ``session_from_run`` (a run that yields none is skipped, counted under its reason: ``malformed_message``,
   ``unknown_role``, ``invalid_arguments``, ``error``, ``no_output`` …);
2. with ``use_corrections``: a human correction of the run (LangSmith feedback ``correction``) replaces its
   answer (``apply_correction``); one that cannot be read is counted and the run kept as it was;
3. with ``merge`` (default): the trace's calls are folded into the conversations they build up
   (``merge_trajectories``; a corrected call no longer extends the next one, so it stays its own example);
4. with ``scrub_pii``: e-mail addresses, card numbers, IP addresses, phone numbers → placeholders;
5. with ``dedupe``: a conversation equal to an earlier one (exactly, or after normalisation) is dropped;
6. the OpenAI record is validated (``validate_record``) and checked against the target model (``inspect``:
   ``target_check.inspect_record``: renders, counts tokens, checks tool calls round-trip); a record with an
   error-level problem is skipped as ``invalid`` (its problems are counted by code, the first few kept);
7. the record is built in the requested format (a ShareGPT-unrepresentable one is skipped under that code);
8. its split is ``assign_split`` by thread/trace with the seed (never by row), or ``train`` without a ratio.

With ``format="dpo"`` (corrections are then always read) the records are OpenAI's preference (DPO) lines: a
corrected run gives one, its correction preferred to the answer it replaced (``chat.preference.preference_line``;
never merged; validated with ``validate_preference_record``, both outputs checked against the target model). With
a ``rating_key`` (a feedback key such as ``user_score``), runs without a correction are also paired by their
ratings (the run's newest score under that key, else its trace root's): a run rated ``>= good_score`` is liked,
one rated ``<= bad_score`` disliked, and each disliked run is paired with a liked run whose input (messages and
tools before the answer) is exactly the same — the liked answer preferred (``finish`` yields these pairs, after the
last group: they cross traces; the rated runs are held in memory until then). A pair from ratings keeps both runs'
ids and is split by its input, so one question never lands on both sides. Counted: ``no_correction`` (a run with
neither a correction nor a decisive rating), ``no_pair`` (liked runs left over), and the summary's
``preference``: pairs from corrections and from ratings, and ``unpaired_disliked`` — disliked runs whose input no
liked run answered (what an unpaired method such as KTO would use; tracetune has none yet).

The summary also holds, per tool, how often the training records give each value of each argument with a few
possible values (``arguments``), and ``advice`` before any training: values with too few examples to be learned,
validation values the training split never shows (:mod:`tracetune.chat.diagnose`).

Nothing here raises on bad data: every failure becomes a counted skip reason.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, NamedTuple, cast

from tracetune.chat.diagnose import ArgumentValues, value_balance
from tracetune.chat.preference import preference_line, preference_records, validate_preference_record
from tracetune.chat.types import ChatSession, Skip
from tracetune.chat.validate import Problem, validate_record
from tracetune.convert.hygiene import PII_KINDS, Deduper, apply_correction, exact_key, scrub_session
from tracetune.convert.records import FORMATS, record_from_session
from tracetune.convert.sessions import session_from_run
from tracetune.convert.split import Split, assign_split
from tracetune.convert.target_check import RecordInspection
from tracetune.convert.trajectories import merge_trajectories, run_position
from tracetune.errors import InvalidInput

log = logging.getLogger(__name__)

MAX_PROBLEMS_KEPT = 20
# the chat formats, and "dpo": OpenAI's preference lines, a corrected run's correction preferred to its answer
EXPORT_FORMATS = (*FORMATS, "dpo")
Inspect = Callable[[dict[str, Any], int], RecordInspection]


@dataclass
class Selection:
    """Which runs: a project's runs of a type, narrowed by filter expressions and feedback."""

    project: str | None = None
    run_type: str | None = "llm"
    filter: str | None = None
    trace_filter: str | None = None
    feedback_key: str | None = None  # only runs whose own or trace root's feedback has this key …
    min_score: float | None = None  # … with at least this score
    firing_id: str | None = None  # only the runs this automation firing took (tracetune.loop)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def as_query(self) -> dict[str, Any]:
        """The keyword arguments of ``query.selection.selection_statement``."""
        return asdict(self)


@dataclass
class ExportOptions:
    """How runs become records (see the module docstring for each step)."""

    format: str = "openai"
    split: float | None = None  # share of conversation groups in train; None: everything is train
    seed: int = 0
    dedupe: bool = False
    scrub_pii: bool = False
    use_corrections: bool = False
    merge: bool = True
    model: str | None = None  # the target model (None: the default base model)
    name: str | None = None  # store the export as a dataset of this name (next version)
    rating_key: str | None = None  # dpo: also pair liked and disliked runs by this feedback key's scores …
    good_score: float = 1.0  # … a run rated at least this is liked …
    bad_score: float = 0.0  # … one rated at most this disliked

    def __post_init__(self) -> None:
        if self.format not in EXPORT_FORMATS:
            raise InvalidInput(
                f"unknown format {self.format!r}; expected one of {', '.join(EXPORT_FORMATS)}", field="format"
            )
        if self.format == "dpo":  # the pairs are the corrections (and the ratings, with a rating key)
            self.use_corrections = True
        if self.rating_key is not None and self.format != "dpo":
            raise InvalidInput("rating_key pairs liked and disliked runs: it needs format 'dpo'", field="rating_key")
        if not self.bad_score < self.good_score:
            raise InvalidInput(
                f"bad_score ({self.bad_score}) must be below good_score ({self.good_score})", field="bad_score"
            )
        if self.split is not None and not 0.0 < self.split < 1.0:
            raise InvalidInput(f"split must be between 0 and 1 (exclusive), got {self.split!r}", field="split")
        if self.name is not None and not (0 < len(self.name) <= 200 and "\x00" not in self.name):
            raise InvalidInput("a dataset name must be 1 to 200 characters", field="name")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class BuiltRecord(NamedTuple):
    split: Split
    run_ids: list[str]
    trace_id: str | None
    record: dict[str, Any]


@dataclass
class Summary:
    runs_read: int = 0
    examples: int = 0
    train: int = 0
    validation: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    runs_merged: int = 0  # runs folded into a longer conversation of the same trace
    pii: Counter[str] = field(default_factory=Counter)
    corrections_applied: int = 0
    corrections_invalid: int = 0
    over_context: int = 0
    problems_by_code: Counter[str] = field(default_factory=Counter)
    errors: int = 0
    warnings: int = 0
    problems: list[dict[str, Any]] = field(default_factory=list)  # the first MAX_PROBLEMS_KEPT, with run ids
    token_counts: Counter[int] = field(default_factory=Counter)  # tokens per example → examples (exact median)
    duplicates: dict[str, int] = field(default_factory=lambda: {"exact": 0, "normalized": 0})
    arguments: dict[str, ArgumentValues] = field(
        default_factory=lambda: {"train": ArgumentValues(), "validation": ArgumentValues()}
    )
    preference: dict[str, int] | None = None  # dpo: pairs from corrections / ratings, unpaired disliked runs

    def as_dict(self) -> dict[str, Any]:
        return {
            "runs_read": self.runs_read,
            "examples": self.examples,
            "train": self.train,
            "validation": self.validation,
            "skipped": dict(sorted(self.skipped.items())),
            "runs_merged": self.runs_merged,
            "duplicates": dict(self.duplicates),
            "pii": dict(sorted(self.pii.items())),
            "corrections": {"applied": self.corrections_applied, "invalid": self.corrections_invalid},
            "tokens": token_stats(self.token_counts),
            "over_context": self.over_context,
            "validation_problems": {
                "errors": self.errors,
                "warnings": self.warnings,
                "by_code": dict(sorted(self.problems_by_code.items())),
                "first": self.problems,
            },
            "arguments": self.arguments["train"].table(),
            "advice": [f.as_dict() for f in value_balance(self.arguments["train"], self.arguments["validation"])],
            **({"preference": dict(self.preference)} if self.preference is not None else {}),
        }


def token_stats(counts: Mapping[int, int]) -> dict[str, int | None]:
    """min / median (lower) / max tokens per example and the total, from a histogram ``tokens → examples``."""
    n = sum(counts.values())
    if not n:
        return {"min": None, "median": None, "max": None, "total": 0}
    keys = sorted(counts)
    middle, seen, median = (n - 1) // 2, 0, keys[-1]
    for k in keys:
        seen += counts[k]
        if seen > middle:
            median = k
            break
    return {"min": keys[0], "median": median, "max": keys[-1], "total": sum(k * v for k, v in counts.items())}


class DatasetBuilder:
    """Runs a trace at a time → records, counting into ``summary`` (see the module docstring)."""

    def __init__(self, options: ExportOptions, inspect: Inspect) -> None:
        self.options = options
        self.inspect = inspect
        self.summary = Summary()
        self._deduper = Deduper() if options.dedupe else None
        self._candidates = 0  # records validated so far: the "line" of a problem before anything is written
        if options.format == "dpo":
            self.summary.preference = {"from_corrections": 0, "from_ratings": 0, "unpaired_disliked": 0}
        self._rated: dict[bytes, tuple[list[ChatSession], list[ChatSession]]] = {}  # input → (liked, disliked)

    def skip(self, reason: str, n: int = 1) -> None:
        """Count ``n`` runs read that never reached the converter (a line of a file that is not JSON …)."""
        self.summary.runs_read += n
        self.summary.skipped[reason] += n

    def add_group(
        self,
        runs: Iterable[Any],
        corrections: Mapping[str, Any] | None = None,
        ratings: Mapping[str, float] | None = None,
    ) -> Iterator[BuiltRecord]:
        """The records of one trace's runs (dicts as ``run_view`` returns them, or run objects), with their
        corrections and ratings (run id → the value)."""
        summary = self.summary
        sessions: list[ChatSession] = []
        positions: dict[str, str | None] = {}
        preference = self.options.format == "dpo"
        pairs: list[tuple[ChatSession, ChatSession | None]] = []  # (session, its original: a DPO pair's)
        for run in runs:
            summary.runs_read += 1
            result = session_from_run(run)
            if "reason" in result:
                summary.skipped[cast(Skip, result)["reason"]] += 1
                continue
            session = cast(ChatSession, result)
            run_ids = session["source"]["run_ids"]
            original = session
            if corrections and run_ids and run_ids[0] in corrections:
                session = self._corrected(session, corrections[run_ids[0]])
            if preference:  # a pair is a run and its correction: each its own call, never merged
                if session is not original:
                    pairs.append((session, original))
                elif not self._rate(session, (ratings or {}).get(run_ids[0]) if run_ids else None):
                    summary.skipped["no_correction"] += 1
                continue
            for run_id in run_ids:
                positions[run_id] = run_position(run)
            sessions.append(session)
        if self.options.merge and len(sessions) > 1:
            merged = merge_trajectories(sessions, positions=positions)
            summary.runs_merged += len(sessions) - len(merged)
            sessions = merged
        for session, rejected in pairs:
            yield from self._built(session, rejected, "from_corrections")
        for session in sessions:
            yield from self._built(session, None, None)

    def _rate(self, session: ChatSession, score: float | None) -> bool:
        """Hold a rated run for ``finish`` (True), or not (False: no rating key, no rating, or a middling one)."""
        options = self.options
        if options.rating_key is None or score is None or options.bad_score < score < options.good_score:
            return False
        key = exact_key({**session, "messages": session["messages"][:-1]})  # the input: all but the answer
        liked, disliked = self._rated.setdefault(key, ([], []))
        (liked if score >= options.good_score else disliked).append(session)
        return True

    def finish(self) -> Iterator[BuiltRecord]:
        """The pairs of rated runs (see the module docstring), once every group has been added."""
        rated, self._rated = self._rated, {}
        summary = self.summary
        for key, (liked, disliked) in rated.items():
            if not liked:
                cast(dict[str, int], summary.preference)["unpaired_disliked"] += len(disliked)
                continue
            if len(liked) > len(disliked):
                summary.skipped["no_pair"] += len(liked) - len(disliked)
            for i, rejected in enumerate(disliked):
                chosen = liked[i % len(liked)]
                source = chosen["source"]
                pair: ChatSession = {
                    **chosen,
                    "source": {
                        **source,
                        "run_ids": [*source["run_ids"], *rejected["source"]["run_ids"]],
                        "group": f"input:{key.hex()}",
                    },
                }
                yield from self._built(pair, rejected, "from_ratings")

    def _built(self, session: ChatSession, rejected: ChatSession | None, kind: str | None) -> Iterator[BuiltRecord]:
        """``_build`` with its failures counted as skips (nothing raises out of an export)."""
        try:
            built = self._build(session, rejected)
        except InvalidInput as exc:
            self.summary.skipped[exc.code or "invalid"] += 1
            return
        except (ValueError, TypeError, KeyError, AttributeError, IndexError) as exc:
            log.debug("skipped a session of runs %s", session.get("source"), exc_info=True)
            self.summary.skipped["malformed_run"] += 1
            self._keep_problem(session, Problem(0, "", f"{type(exc).__name__}: {exc}", "malformed_run"))
            return
        if built is not None:
            if kind is not None:
                cast(dict[str, int], self.summary.preference)[kind] += 1
            yield built

    def _corrected(self, session: ChatSession, correction: Any) -> ChatSession:
        try:
            corrected = apply_correction(session, correction)
        except InvalidInput:
            self.summary.corrections_invalid += 1
            return session
        self.summary.corrections_applied += 1
        return corrected

    def _build(self, session: ChatSession, rejected: ChatSession | None = None) -> BuiltRecord | None:
        """The record of ``session`` — or, with ``rejected`` (the run a correction replaced), the DPO line that
        prefers ``session``'s answer to ``rejected``'s."""
        options, summary = self.options, self.summary
        if options.scrub_pii:
            session, counts = scrub_session(session, PII_KINDS)
            summary.pii.update({k: v for k, v in counts.items() if v})
            if rejected is not None:
                rejected, counts = scrub_session(rejected, PII_KINDS)
                summary.pii.update({k: v for k, v in counts.items() if v})
        if self._deduper is not None:  # a pair is a duplicate when both its answers are
            both = (
                session
                if rejected is None
                else {**session, "messages": [*session["messages"], rejected["messages"][-1]]}
            )
            kind = self._deduper.seen(both)
            if kind is not None:
                summary.duplicates[kind] += 1
                return None
        record = record_from_session(session, "openai")
        checked = [record]  # the chat records checked against the target model
        self._candidates += 1
        line = self._candidates
        if rejected is None:
            problems = validate_record(record, line)
        else:
            record = preference_line(record, record_from_session(rejected, "openai"))
            problems = validate_preference_record(record, line)
            checked = list(preference_records(record)) if not any(p.level == "error" for p in problems) else []
        tokens = None
        if not any(p.level == "error" for p in problems):
            for chat in checked:
                inspection = self.inspect(chat, line)
                problems.extend(p for p in inspection.problems if p not in problems)
                tokens = inspection.tokens if tokens is None else max(tokens, inspection.tokens or 0)
        if problems:
            errors = self._count_problems(session, problems)
            if errors:
                summary.skipped["invalid"] += 1
                return None
        openai_record = checked[0]
        if options.format not in ("openai", "dpo"):
            record = record_from_session(session, options.format)
        if tokens is not None:
            summary.token_counts[tokens] += 1
        split: Split = "train" if options.split is None else assign_split(session, options.split, options.seed)
        summary.examples += 1
        summary.arguments["train" if split == "train" else "validation"].add(openai_record)
        if split == "train":
            summary.train += 1
        else:
            summary.validation += 1
        source = session["source"]
        return BuiltRecord(split, list(source["run_ids"]), source.get("trace_id"), record)

    def _count_problems(self, session: ChatSession, problems: list[Problem]) -> int:
        summary = self.summary
        errors = 0
        for problem in problems:
            summary.problems_by_code[problem.code] += 1
            if problem.level == "error":
                errors += 1
            if problem.code == "over_context":
                summary.over_context += 1
            self._keep_problem(session, problem)
        summary.errors += errors
        summary.warnings += len(problems) - errors
        return errors

    def _keep_problem(self, session: ChatSession, problem: Problem) -> None:
        if len(self.summary.problems) < MAX_PROBLEMS_KEPT:
            source = session.get("source") or {}
            self.summary.problems.append(
                {
                    "run_ids": list(source.get("run_ids") or ()),
                    "field": problem.field,
                    "message": problem.message,
                    "code": problem.code,
                    "level": problem.level,
                }
            )
