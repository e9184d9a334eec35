"""SSB data curation: rollouts -> verified pairs -> hinted robust solutions, resumable.

For every problem the stage samples K rollouts from the student prompt, verifies them, keeps
problems with at least one correct and one wrong rollout, shows the model one correct and one
wrong rollout in the domain's hinted teacher prompt, and keeps the robust solution it writes if
that solution verifies against the gold answer.

The rule that picks the two examples and the outcome names live in :mod:`ssb.stages.selection`
(pure functions); this module drives generation, verification and the journal.

Keeping the robust solution
---------------------------
The teacher's solution is kept only when it verifies against the gold with *strict* extraction
(a boxed final answer; no "last number" fallback) and it finished on its own
(``finish_reason == "stop"``): a truncated text can look right to a lenient checker.  Otherwise
the problem is skipped as ``teacher_wrong``.

Crash consistency
-----------------
``DIR/journal.jsonl`` is the source of truth: one fsync'd line per finished problem, whatever its
outcome (kept, all_correct, all_wrong, teacher_wrong, error).  ``DIR/curated.jsonl`` is rebuilt
atomically from the journal at start and then appended (and fsync'd) right after each journal
line, so after a SIGKILL it is at most one record behind the journal, and the next start repairs
it.  Problems already in the journal are not redone, except those whose outcome was ``error``
(a backend failure), which a rerun retries.  The last journal line for a problem wins.
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, ClassVar, Iterable, Sequence

from ssb.errors import SsbError
from ssb.events import EventCallback, Reporter
from ssb.option_groups import (ACCEPT_CHANGED_CONFIG, ADAPTER, BACKEND, BACKEND_OPTIONS, DATASET,
                               DOMAIN, FILTERS, FORCE, LIMIT, MODEL, OUT, RESTART, SEED, SOURCE,
                               SPLIT, TEMPLATE, WORKERS)
from ssb.options import StageConfig, option
from ssb.records import (Completion, CuratedRecord, Problem, Rollout, SamplingParams, Verdict,
                         derive_seed)
from ssb.stage import StageOutput, make_readable, select_problems

COMMAND = "curate"
JOURNAL = "journal.jsonl"
CURATED = "curated.jsonl"
STATS = "stats.json"
REJECTED = "rejected.jsonl"  # hinted solutions that did not verify, to read why

# The selection rule and the tally, re-exported: ``from ssb.stages.curate import select_pair``
# keeps working.
from ssb.stages.selection import (ALL_CORRECT, ALL_WRONG, ERROR, FEW_CORRECT,  # noqa: F401
                                  KEPT, SKIP_REASONS, TEACHER_WRONG, Selection, answer_key,
                                  latest_outcomes, make_rollout, problem_rng, select_pair,
                                  ratio, summarize)


# -- the driver -----------------------------------------------------------------------------------

@dataclass
class CurateConfig(StageConfig):
    """Everything ``ssb curate`` takes: the flags, the TOML keys and the Python API in one place."""

    COMMAND: ClassVar[str] = "curate"
    # The paper's sampling settings (K=4 rollouts at T=0.8, top-k 50; teacher at T=0.4).
    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "paper": {"rollouts": 4, "temperature": 0.8, "top_k": 50, "top_p": 1.0,
                  "teacher_temperature": 0.4},
    }

    # Options shared with other commands are declared once, in ssb.option_groups.
    domain: str = DOMAIN()
    backend: str = BACKEND()
    model: str = MODEL()
    out: Path = OUT(note="curated.jsonl, rejected.jsonl, stats.json, manifest.json, journal.jsonl")
    dataset: str | None = DATASET(None, note="default: the domain's name")
    source: str | None = SOURCE()
    split: str = SPLIT("train")
    limit: int | None = LIMIT()
    until_kept: int | None = option(
        None, ge=1, help="Stop once N records are kept: problems are taken in order, a batch at "
        "a time (the batch in progress finishes, so a few more may be kept); --limit caps them.")
    rollouts: int = option(4, ge=2, help="Rollouts per problem (K); one right and one wrong "
                           "are needed, so at least 2.")
    min_correct: int | None = option(
        None, ge=1, help="Keep a problem only when at least N of its K rollouts are correct "
        "(default: the domain's; 1, or 2 for multiple choice, where one right rollout may be a "
        "lucky guess).")
    seed: int = SEED(0, note="sampling and the selection tie-breaks")
    temperature: float = option(0.8, ge=0, help="Rollout temperature.")
    top_k: int = option(50, ge=0, help="Top-k for sampling, 0 = off.")
    top_p: float = option(1.0, gt=0, le=1, help="Top-p for sampling.")
    teacher_temperature: float = option(0.4, ge=0, help="Temperature of the robust solution.")
    max_tokens: int = option(1024, ge=1, help="Max new tokens per rollout / solution.")
    teacher_max_tokens: int | None = option(
        None, ge=1, help="Max new tokens of the robust solution (default: --max-tokens); a "
        "truncated solution is never kept.")
    template: str | None = TEMPLATE()
    batch_size: int = option(32, ge=1, resume=False,
                             help="Problems per backend call (the batch's hinted-teacher prompts "
                             "are decoded together, so larger batches keep more slots busy).")
    max_errors: int = option(10, ge=0, resume=False,
                             help="Stop after more than this many failed problems in one run.")
    workers: int | None = WORKERS()
    skip_bad: bool = option(False, help="Skip (and count) malformed dataset rows instead of "
                            "failing.")
    filters: dict[str, Any] = FILTERS()
    adapter: str | None = ADAPTER()
    backend_options: dict[str, Any] = BACKEND_OPTIONS()
    restart: bool = RESTART()
    accept_changed_config: bool = ACCEPT_CHANGED_CONFIG(
        note="the problems already curated are kept, the rest are curated under the new one")
    force: bool = FORCE("accept_changed_config", "resume even though the config changed")

    def check(self) -> None:
        from ssb.plugins import get_registry

        registry = get_registry()
        factory = registry.backend(self.backend)
        self.backend_options = factory.parse_options(self.backend_options)
        registry.verifier(self.domain)
        registry.dataset(self.dataset or self.domain)
        registry.template(self.domain, self.template)
        if self.resolved_min_correct() >= self.rollouts:
            raise SsbError(f"--min-correct {self.resolved_min_correct()} leaves no room for a "
                           f"wrong rollout among --rollouts {self.rollouts}")

    def resolved_min_correct(self) -> int:
        """``--min-correct``, else the domain verifier's ``min_correct`` (1 when it has none)."""
        if self.min_correct is not None:
            return self.min_correct
        from ssb.plugins import get_registry

        value = getattr(get_registry().verifier(self.domain), "min_correct", 1)
        return value if isinstance(value, int) and value >= 1 else 1

    def _public_value(self, s, identity: bool = False):
        if s.name == "backend_options":
            factory = _factory_or_none(self.backend)
            if factory is None:
                return dict(self.backend_options)
            return (factory.identity_options(self.backend_options) if identity
                    else factory.public_options(self.backend_options))
        if s.name == "dataset":
            return self.dataset or self.domain
        if s.name == "min_correct":  # the rule in force; None is 1, what runs before it had
            return self.resolved_min_correct() if self.resolved_min_correct() > 1 else None
        return getattr(self, s.name)


def _factory_or_none(name: str):
    from ssb.plugins import get_registry

    return get_registry().backends.get(name)


def _verify(domain: str, items: list[tuple[str, str]], workers: int,
            strict: bool = False) -> list[Verdict]:
    if not items:
        return []
    from ssb.verification import verify_batch

    verdicts = verify_batch(domain, items, workers=workers, strict=strict)
    if len(verdicts) != len(items):
        raise SsbError(f"verify_batch returned {len(verdicts)} verdicts for {len(items)} items")
    return verdicts


def _generate_isolating(backend: Any, conversations: list[list[dict]], params: SamplingParams,
                        progress: Callable[[int], None] | None
                        ) -> list[list[Completion] | str]:
    """Completions per conversation, or an error message for those whose request failed.

    The whole batch goes to the backend in one call; when that call fails it is split in halves
    (recursively) so one bad problem does not take its batch-mates down with it.
    """
    if not conversations:
        return []
    try:
        result = backend.generate(conversations, params, progress)
        if len(result) != len(conversations):
            raise RuntimeError(f"backend returned {len(result)} results for "
                               f"{len(conversations)} conversations")
        for r in result:
            if len(r) != params.n:
                raise RuntimeError(f"backend returned {len(r)} completions, expected {params.n}")
        return [list(r) for r in result]
    except Exception as exc:  # noqa: BLE001 - a backend failure is data about this batch
        if len(conversations) == 1:
            from ssb.secrets import redact_text

            return [redact_text(f"{type(exc).__name__}: {exc}")[:2000]]
        mid = len(conversations) // 2
        return (_generate_isolating(backend, conversations[:mid], params, progress)
                + _generate_isolating(backend, conversations[mid:], params, progress))


def process_chunk(problems: Sequence[Problem], *, backend: Any, template: Any, config: CurateConfig,
                  dataset: str, progress: Callable[[int], None] | None = None) -> list[dict]:
    """Run the whole SSB recipe on a chunk of problems; one journal entry per problem, in order.

    The sampling seed is the same for every chunk: backends that seed each conversation from
    (seed, its content) then give a problem the same samples whatever batch it lands in.
    """
    student_params = SamplingParams(
        n=config.rollouts, temperature=config.temperature, top_p=config.top_p,
        top_k=config.top_k, max_new_tokens=config.max_tokens,
        seed=derive_seed(config.seed, "rollouts"))
    conversations = [template.student_messages(p.question) for p in problems]
    generated = _generate_isolating(backend, conversations, student_params, progress)

    entries: list[dict | None] = [None] * len(problems)
    items: list[tuple[str, str]] = []
    for i, (p, result) in enumerate(zip(problems, generated)):
        if isinstance(result, str):
            entries[i] = {"id": p.id, "status": ERROR, "stage": "rollouts", "error": result}
        else:
            items.extend((c.text, p.gold) for c in result)
    verdicts = iter(_verify(config.domain, items, config.workers))
    min_correct = config.resolved_min_correct()

    pending: list[tuple[int, Problem, list[Rollout], Selection]] = []
    for i, (p, result) in enumerate(zip(problems, generated)):
        if isinstance(result, str):
            continue
        rollouts = [make_rollout(c, next(verdicts)) for c in result]
        selection = select_pair(rollouts, config.seed, p.id, min_correct)
        entry = {
            "id": p.id,
            "status": selection.status,
            "rollout_correct": [r.correct for r in rollouts],
            "rollout_answers": [r.extracted for r in rollouts],
            "rollout_tokens": [r.num_tokens for r in rollouts],
            "answer_counts": selection.answer_counts,
        }
        entries[i] = entry
        if selection.status == "selected":
            pending.append((i, p, rollouts, selection))

    teacher_params = SamplingParams(
        n=1, temperature=config.teacher_temperature, top_p=config.top_p, top_k=config.top_k,
        max_new_tokens=config.teacher_max_tokens or config.max_tokens,
        seed=derive_seed(config.seed, "teacher"))
    teacher_conversations = [
        template.teacher_messages(p.question, rollouts[s.correct_index].text,
                                  rollouts[s.wrong_index].text,
                                  rollouts[s.wrong_index].detail or "")
        for _, p, rollouts, s in pending
    ]
    solutions = _generate_isolating(backend, teacher_conversations, teacher_params, progress)
    solution_items = [(r[0].text, p.gold) for (_, p, _, _), r in zip(pending, solutions)
                      if not isinstance(r, str)]
    # The solution becomes a training target: its answer must be boxed (strict extraction) and
    # it must have ended on its own -- a truncated text can "verify" by a last-number fallback.
    solution_verdicts = iter(_verify(config.domain, solution_items, config.workers, strict=True))

    for (i, p, rollouts, s), teacher_messages, result in zip(pending, teacher_conversations,
                                                              solutions):
        entry = entries[i]
        assert entry is not None
        entry["correct_index"] = s.correct_index
        entry["wrong_index"] = s.wrong_index
        entry["wrong_answer"] = s.wrong_answer
        if isinstance(result, str):
            entry.update(status=ERROR, stage="teacher", error=result)
            continue
        solution = result[0]
        verdict = next(solution_verdicts)
        ok = (bool(verdict.correct) and verdict.error is None
              and solution.finish_reason == "stop")
        entry["teacher_tokens"] = int(solution.num_tokens)
        entry["teacher_correct"] = ok
        entry["teacher_extracted"] = verdict.extracted
        entry["teacher_finish_reason"] = solution.finish_reason
        if not ok:
            entry["status"] = TEACHER_WRONG
            # Kept for reading why (DIR/rejected.jsonl), never for training.
            entry["rejected"] = {
                "id": p.id, "question": p.question, "gold": p.gold,
                "reason": _rejection_reason(verdict, solution),
                "teacher_messages": teacher_messages, "solution": solution.text,
                "solution_num_tokens": int(solution.num_tokens),
                "solution_finish_reason": solution.finish_reason,
                "solution_extracted": verdict.extracted,
                "correct_answer": rollouts[s.correct_index].extracted,
                "wrong_answer": rollouts[s.wrong_index].extracted,
            }
            continue
        record = CuratedRecord(
            id=p.id, question=p.question, gold=p.gold, dataset=p.dataset or dataset,
            domain=config.domain, template=template.id,
            student_messages=template.student_messages(p.question),
            teacher_messages=teacher_messages,
            solution=solution.text,
            correct_rollout=rollouts[s.correct_index],
            wrong_rollout=rollouts[s.wrong_index],
            rollout_answers=[r.extracted for r in rollouts],
            rollout_correct=[r.correct for r in rollouts],
            metadata={
                "correct_index": s.correct_index,
                "wrong_index": s.wrong_index,
                "wrong_answer": s.wrong_answer,
                "wrong_answer_count": s.wrong_answer_count,
                "wrong_answer_counts": s.answer_counts,
                "rollout_num_tokens": [r.num_tokens for r in rollouts],
                "rollout_finish_reasons": [r.finish_reason for r in rollouts],
                "solution_num_tokens": int(solution.num_tokens),
                "solution_finish_reason": solution.finish_reason,
                "solution_extracted": verdict.extracted,
            },
        )
        entry["status"] = KEPT
        entry["record"] = record.to_dict()
    return [e for e in entries if e is not None]


def _rejection_reason(verdict: Verdict, solution: Completion) -> str:
    if solution.finish_reason != "stop":
        return "truncated (hit --teacher-max-tokens)"
    if verdict.error:
        return f"verifier error: {verdict.error}"
    if verdict.extracted is None:
        return "no final answer in the required form (strict extraction)"
    return f"wrong answer {verdict.extracted!r}"


def _chunks(items: Sequence[Problem], size: int) -> Iterable[Sequence[Problem]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def _rebuild_outputs(out: Path, outcomes: dict[str, dict]) -> int:
    """Write curated.jsonl and rejected.jsonl atomically from the journal; returns kept count."""
    from ssb.journal import atomic_write_text

    from ssb.journal import json_line

    kept = [json_line(e["record"]) for e in outcomes.values() if e["status"] == KEPT]
    rejected = [json_line(e["rejected"])
                for e in outcomes.values() if e["status"] == TEACHER_WRONG and "rejected" in e]
    for name, lines in ((CURATED, kept), (REJECTED, rejected)):
        atomic_write_text(out / name, "".join(lines))
        make_readable(out / name)
    return len(kept)


def _live_info(outcomes: dict[str, dict]) -> str:
    counts = Counter(e["status"] for e in outcomes.values())
    few = f"few-correct {counts[FEW_CORRECT]} | " if counts[FEW_CORRECT] else ""
    return (f"kept {counts[KEPT]} | all-correct {counts[ALL_CORRECT]} | "
            f"all-wrong {counts[ALL_WRONG]} | {few}teacher-wrong {counts[TEACHER_WRONG]} | "
            f"errors {counts[ERROR]}")


class StageIncomplete(SsbError):
    """A stage finished its pass but some work failed: outputs are saved, a rerun retries."""


@dataclass
class CurateResult:
    """What :func:`curate` returns (``stats`` is also written to ``DIR/stats.json``)."""

    out: Path
    stats: dict[str, Any]

    @property
    def curated(self) -> Path:
        return self.out / CURATED

    @property
    def kept(self) -> int:
        return int(self.stats["kept"])


def curate(config: CurateConfig, *, on_event: EventCallback | None = None,
           backend: Any = None) -> CurateResult:
    """Curate ``config.out`` (resumable) and return its stats.

    ``backend``: an already loaded :class:`ssb.types.Backend` to use instead of creating one
    from ``config.backend`` (the caller keeps ownership and closes it).
    Raises :class:`StageIncomplete` after saving everything when some problems failed in the
    backend (rerun to retry them).
    """
    from ssb.journal import atomic_write_json
    from ssb.plugins import get_registry

    config = config.validate()
    started = time.monotonic()
    report = Reporter(COMMAND, on_event)
    registry = get_registry()
    dataset_name = config.dataset or config.domain
    template = registry.template(config.domain, config.template)
    problems = select_problems(registry, dataset_name, config.source, config.split, config.limit,
                               skip_bad=config.skip_bad, filters=config.filters or None)
    selected = problems.selected
    identity = {**config.identity(), "template": template.id,
                "input_sha256": problems.sha256}
    manifest_config = {**config.manifest(), "template": template.id}
    out = Path(config.out)

    with StageOutput(out, COMMAND, identity, manifest_config,
                     force=config.accept_changed_config, restart=config.restart,
                     outputs=(JOURNAL, CURATED, REJECTED, STATS),
                     inputs=problems.inputs, seed=config.seed,
                     input_hashes={f"problems:{dataset_name}/{config.split}": problems.sha256}
                     ) as stage:
        previous_stats = _read_json(out / STATS) or {}
        wall_before = float(previous_stats.get("wall_seconds_total") or 0.0)

        journal = stage.journal(JOURNAL)
        outcomes = latest_outcomes(journal.read())
        _rebuild_outputs(out, outcomes)
        done = {pid for pid, e in outcomes.items() if e["status"] != ERROR}
        todo = [p for p in selected if p.id not in done]

        run = {"resumed": stage.resumed, "problems": 0, "errors": 0, "generated_tokens": 0,
               "already_done": len(selected) - len(todo)}

        def reached_target() -> bool:
            # Only with no failed problem before the stop: a retried problem keeps its place.
            return (config.until_kept is not None
                    and sum(e["status"] == KEPT for e in outcomes.values()) >= config.until_kept
                    and not any(e["status"] == ERROR for e in outcomes.values()))

        def write_stats(final: bool) -> dict[str, Any]:
            elapsed = time.monotonic() - started
            stats = summarize(outcomes.values())
            stats["bad_rows"] = problems.skipped_rows
            stats["selected_problems"] = len(selected)
            stats["complete"] = final and (reached_target() or all(
                p.id in outcomes and outcomes[p.id]["status"] != ERROR for p in selected))
            if config.until_kept is not None:
                stats["until_kept"] = config.until_kept
            stats["this_run"] = {
                **run,
                "wall_seconds": round(elapsed, 3),
                "problems_per_second": ratio(run["problems"], elapsed),
                "tokens_per_second": ratio(run["generated_tokens"], elapsed),
            }
            stats["wall_seconds_total"] = round(wall_before + elapsed, 3)
            stats["template"] = template.id
            atomic_write_json(out / STATS, stats)
            make_readable(out / STATS)
            return stats

        owned = backend is None
        try:
            if todo and not reached_target() and backend is None:
                backend = registry.backend(config.backend).create(
                    config.model, adapter=config.adapter, **config.backend_options)
            if hasattr(backend, "check_params"):  # settings beyond the model: no work yet
                backend.check_params(SamplingParams(
                    n=config.rollouts, temperature=config.temperature, top_p=config.top_p,
                    top_k=config.top_k,
                    max_new_tokens=max(config.max_tokens, config.teacher_max_tokens or 0)))
            # Only now: a model that fails to load leaves no manifest behind that would refuse
            # the corrected command as "a different config".
            stage.start_work()
            with journal, open(out / CURATED, "a", encoding="utf-8") as curated_file, \
                    open(out / REJECTED, "a", encoding="utf-8") as rejected_file:
                # (lines go through json_line: a lone surrogate in model text is escaped)
                report.start("curate", total=len(todo), info=_live_info(outcomes))
                generated = [0]

                def on_completions(n: int) -> None:
                    generated[0] += n
                    report.info(f"{_live_info(outcomes)} | completions {generated[0]}")

                for chunk in _chunks(todo, config.batch_size):
                    if reached_target():
                        report.log(f"[curate] {config.until_kept} record(s) kept "
                                   f"(--until-kept): stopping after "
                                   f"{len(outcomes)} problem(s)")
                        break
                    entries = process_chunk(chunk, backend=backend, template=template,
                                            config=config, dataset=dataset_name,
                                            progress=on_completions)
                    for entry in entries:
                        journal.append(entry)
                        outcomes[entry["id"]] = entry
                        if entry["status"] == KEPT:
                            _append_line(curated_file, entry["record"])
                        elif "rejected" in entry:
                            _append_line(rejected_file, entry["rejected"])
                        run["problems"] += 1
                        run["generated_tokens"] += sum(entry.get("rollout_tokens") or [])
                        run["generated_tokens"] += entry.get("teacher_tokens") or 0
                        if entry["status"] == ERROR:
                            run["errors"] += 1
                        report.advance(1, info=_live_info(outcomes))
                    write_stats(final=False)
                    if run["errors"] > config.max_errors:
                        last = next(e for e in reversed(entries) if e["status"] == ERROR)
                        raise SsbError(
                            f"{run['errors']} problems failed in the backend (more than "
                            f"--max-errors {config.max_errors}); last error: {last['error']}\n"
                            f"Finished problems are saved in {out}; rerun to resume.")
                report.end()
        finally:
            if owned and backend is not None:
                backend.close()
        stats = write_stats(final=True)
        factory = registry.backends.get(config.backend)
        runtime = {k: v for k, v in config.backend_options.items()
                   if factory is not None and k not in factory.identity_options(
                       config.backend_options)}
        stage.finish(backend_runtime_options=runtime,
                     stats={k: stats[k] for k in ("problems_seen", "kept", "skipped",
                                                  "complete")})
        if not stats["complete"]:
            failed = [p.id for p in selected if outcomes.get(p.id, {}).get("status") == ERROR]
            raise StageIncomplete(
                f"curate: {len(failed)} of {len(selected)} problems failed in the backend "
                f"(first: {failed[0] if failed else '?'}); the rest is saved in {out}. "
                "Rerun the same command to retry them.")
        return CurateResult(out=out, stats=stats)


def _append_line(f: Any, obj: dict) -> None:
    from ssb.journal import json_line

    try:
        f.write(json_line(obj))
        f.flush()
        os.fsync(f.fileno())
    except OSError as exc:  # e.g. a full disk: name the file (rebuilt from the journal on rerun)
        exc.filename = exc.filename or f.name
        raise


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return None


__all__ = [
    "CurateConfig", "CurateResult", "Selection", "StageIncomplete", "answer_key",
    "curate", "select_pair", "problem_rng", "make_rollout", "summarize", "latest_outcomes",
    "process_chunk",
]
