"""Read what the hinted teacher writes, kept or not: curate's own recipe, every text saved.

``ssb curate`` keeps only the solutions that verify; this probe runs the very same recipe
(:func:`ssb.curate.process_chunk`, chunk by chunk, same config, seeds and verifier) with a thin
recording layer around the backend, and saves every rollout and every teacher reply with its
verdict and an automatic failure class, so the failures can be read and counted.

Uses:

* a baseline: ``--out DIR`` alone gives the same per-problem outcomes as ``ssb curate`` with the
  same flags (the backend seeds each sample from the seed and the conversation, so the batch it
  lands in does not matter), plus ``DIR/probe.jsonl`` with all the texts;
* reading a finished run: ``--replay FILE`` answers every request found in ``FILE``, a recording
  in the format of the test-only ``record`` backend (tests/plugins/ssb_replay: one line
  ``{"messages", "params", "completions"}`` per conversation) -- e.g. the one an
  ``ssb curate --backend record -B inner=llama.cpp -B recording=FILE ...`` run wrote.  With the
  run's own template nothing is generated: the probe only lays the texts out;
* a template variant on the *same* pairs: with ``--replay`` and another template, the student
  rollouts (same conversation, same sampling params) come from the recording and only the
  teacher requests go to the engine, so a new hinted template is measured on identical problems,
  rollouts and selected pairs in a fraction of the time.  Use ``--template NAME@VER`` for a
  registered template or ``--teacher-file FILE`` for a draft teacher text (a ``str.format``
  template with ``{question}``, ``{correct}``, ``{wrong}``, optionally ``{wrong_detail}``).

    .venv/bin/python scripts/teacher_probe.py --domain arithmetic --split dev --limit 40 \\
        --max-tokens 384 --teacher-max-tokens 512 --batch-size 4 -B n_threads=2 --out /tmp/p1
    .venv/bin/python scripts/teacher_probe.py ... --template arithmetic-tutor@2 \\
        --replay /tmp/p1/recording.jsonl --out /tmp/p2

Writes ``DIR/probe.jsonl`` (one line per problem), ``DIR/recording.jsonl`` (every request with
its completions, in the ``record`` format, for ``--replay``) and ``DIR/summary.json``; prints the
summary.
"""

from __future__ import annotations

import argparse
import difflib
import json
import re
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ssb.stages.curate import CurateConfig, answer_key, process_chunk
from ssb.errors import SsbError
from ssb.plugins import get_registry
from ssb.prompts import make_template
from ssb.records import Completion, SamplingParams
from ssb.types import PromptTemplate

# Phrases by which a solution shows that it was given attempts (the template forbids it; a
# solution that says so is a poor training target for a student that sees no attempts).
LEAK = re.compile(r"\battempts?\b|\bchecker\b|\bmarked (?:as )?wrong\b|\bsolution [AB12]\b|"
                  r"\byour task\b|\bprevious (?:solution|answer)s?\b", re.IGNORECASE)
# A reply that starts re-typing the prompt (section headers of the hinted template).
ECHO = re.compile(r"^#+ *(?:Problem|Attempt|Your task|Task)\b", re.IGNORECASE | re.MULTILINE)
# The coder model likes to "verify with Python" and then invents the program's output.
CODE = re.compile(r"```(?:python|py)\b", re.IGNORECASE)


def request_key(conversation: list[dict], params: SamplingParams | dict) -> str:
    """The exact messages and sampling params (a recorded reply answers only the same request)."""
    if isinstance(params, SamplingParams):
        params = params.to_dict()
    return json.dumps([[dict(m) for m in conversation], params], ensure_ascii=False,
                      sort_keys=True)


class RecordingBackend:
    """Forwards to the real backend (loaded on first need), answering requests found in
    ``replay`` from there, and records every request with its completions."""

    name = "probe"

    def __init__(self, load, replay: dict[str, list[dict]]):
        self._load = load
        self._inner = None
        self.replay = replay
        self.log: dict[str, dict] = {}  # request key -> record-format row
        self.replayed = 0
        self.generated = 0

    def generate(self, conversations, params, progress=None):
        keys = [request_key(c, params) for c in conversations]
        results: list[list[Completion] | None] = [None] * len(conversations)
        todo = []
        for i, key in enumerate(keys):
            if key in self.replay:
                results[i] = [Completion.from_dict(c) for c in self.replay[key]]
                self.replayed += 1
            else:
                todo.append(i)
        if todo:
            if self._inner is None:
                self._inner = self._load()
            fresh = self._inner.generate([conversations[i] for i in todo], params, progress)
            for i, r in zip(todo, fresh):
                results[i] = list(r)
            self.generated += len(todo)
        for key, conv, r in zip(keys, conversations, results):
            self.log[key] = {"messages": [dict(m) for m in conv], "params": params.to_dict(),
                             "completions": [c.to_dict() for c in r]}
        return results

    def close(self):
        if self._inner is not None:
            self._inner.close()


@dataclass(frozen=True)
class AnswerStatingTemplate(PromptTemplate):
    """A draft teacher text that may also use ``{correct_answer}``: the final answer the
    domain's verifier extracts from the correct attempt (what curate records as that rollout's
    ``extracted``) -- nothing beyond what the attempt itself shows."""

    def teacher_messages(self, question, correct, wrong, wrong_detail=""):
        answer = get_registry().verifier(self.domain).extract(correct) or ""
        return [{"role": "system", "content": self.system},
                {"role": "user", "content": self.teacher.format(
                    question=question, correct=correct, wrong=wrong,
                    wrong_detail=wrong_detail or "", correct_answer=answer)}]


def failure_class(entry: dict, reply: Completion | None, gold: str) -> str | None:
    """Why a teacher reply was rejected, from its verdict alone (None: it was kept)."""
    if entry.get("teacher_correct"):
        return None
    if reply is None:
        return "error"
    if reply.finish_reason != "stop":
        return "truncated"
    extracted = entry.get("teacher_extracted")
    if extracted is None:
        return "no_boxed_answer"
    key = answer_key(extracted.rsplit("=", 1)[-1])
    if entry.get("wrong_answer") is not None and key == answer_key(entry["wrong_answer"]):
        return "copied_wrong_answer"
    return "other_wrong_answer"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--domain", default="arithmetic")
    ap.add_argument("--dataset")
    ap.add_argument("--source")
    ap.add_argument("--split", default="dev")
    ap.add_argument("--offset", type=int, default=0, help="skip this many problems first")
    ap.add_argument("--limit", type=int, default=40)
    ap.add_argument("--backend", default="llama.cpp")
    ap.add_argument("--model", default="default")
    ap.add_argument("-B", "--backend-opt", action="append", default=[],
                    help="KEY=VALUE backend option (repeatable)")
    ap.add_argument("--rollouts", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-tokens", type=int, default=384)
    ap.add_argument("--teacher-max-tokens", type=int, default=512)
    ap.add_argument("--teacher-temperature", type=float, default=0.4)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--template", help="registered template, NAME or NAME@VERSION")
    ap.add_argument("--teacher-file", type=Path, help="draft teacher text (str.format template)")
    ap.add_argument("--replay", type=Path, action="append", default=[],
                    help="a recording (record-backend format) whose replies to reuse; repeatable")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)

    registry = get_registry()
    template = registry.template(args.domain, args.template)
    if args.teacher_file:
        text = args.teacher_file.read_text(encoding="utf-8")
        if "{correct_answer}" in text:
            # Probe only: ssb templates get no such field; this measures whether one would help.
            template = AnswerStatingTemplate(
                f"draft-{args.teacher_file.stem}", "0", args.domain, template.system,
                template.student, text)
        else:
            template = make_template(f"draft-{args.teacher_file.stem}", "0", args.domain,
                                     system=template.system, student=template.student,
                                     teacher=text)
    options: dict[str, Any] = {}
    for opt in args.backend_opt:
        k, sep, v = opt.partition("=")
        if not sep:
            raise SsbError(f"-B takes KEY=VALUE, got {opt!r}")
        options[k] = v
    dataset = args.dataset or args.domain
    problems = list(registry.dataset(dataset).load(args.source, args.split).problems)
    problems = problems[args.offset: args.offset + args.limit]
    # curate's own config (its checks, its defaults for everything not set here); the template
    # object goes to process_chunk directly, so a draft needs no registration.
    config = CurateConfig(domain=args.domain, backend=args.backend, model=args.model,
                          out=args.out, dataset=dataset, split=args.split,
                          rollouts=args.rollouts, seed=args.seed, max_tokens=args.max_tokens,
                          teacher_max_tokens=args.teacher_max_tokens,
                          teacher_temperature=args.teacher_temperature,
                          batch_size=args.batch_size, backend_options=options).validate()
    options = config.backend_options

    replay: dict[str, list[dict]] = {}
    for path in args.replay:
        with open(path, encoding="utf-8") as f:
            for line in f:
                if line.strip():
                    row = json.loads(line)
                    replay[request_key(row["messages"], row["params"])] = row["completions"]

    from ssb.commands._common import load_backend

    backend = RecordingBackend(
        lambda: load_backend(args.backend, args.model, None, options), replay)
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    rows = []
    try:
        for start in range(0, len(problems), args.batch_size):
            chunk = problems[start: start + args.batch_size]
            entries = process_chunk(chunk, backend=backend, template=template, config=config,
                                    dataset=dataset)
            for p, entry in zip(chunk, entries):
                student = template.student_messages(p.question)
                row: dict[str, Any] = {"id": p.id, "question": p.question, "gold": p.gold,
                                       "entry": {k: v for k, v in entry.items() if k != "record"}}
                student_params = SamplingParams(
                    n=config.rollouts, temperature=config.temperature, top_p=config.top_p,
                    top_k=config.top_k, max_new_tokens=config.max_tokens,
                    seed=_seed(config, "rollouts"))
                logged = backend.log.get(request_key(student, student_params))
                row["rollouts"] = logged["completions"] if logged else None
                reply = None
                if "correct_index" in entry:
                    rollouts = row["rollouts"]
                    teacher = template.teacher_messages(
                        p.question, rollouts[entry["correct_index"]]["text"],
                        rollouts[entry["wrong_index"]]["text"])
                    teacher_params = SamplingParams(
                        n=1, temperature=config.teacher_temperature, top_p=config.top_p,
                        top_k=config.top_k, max_new_tokens=config.teacher_max_tokens,
                        seed=_seed(config, "teacher"))
                    logged = backend.log.get(request_key(teacher, teacher_params))
                    if logged:
                        reply = Completion.from_dict(logged["completions"][0])
                        row["teacher_prompt"] = teacher[-1]["content"]
                        row["teacher_reply"] = logged["completions"][0]
                        row["leak"] = bool(LEAK.search(reply.text))
                        row["echo"] = bool(ECHO.search(reply.text))
                        row["code"] = bool(CODE.search(reply.text))
                        # How much of the reply is a re-typed attempt (1.0: identical text).
                        row["similarity_to_correct"] = round(difflib.SequenceMatcher(
                            None, rollouts[entry["correct_index"]]["text"], reply.text).ratio(), 3)
                        row["similarity_to_wrong"] = round(difflib.SequenceMatcher(
                            None, rollouts[entry["wrong_index"]]["text"], reply.text).ratio(), 3)
                    row["failure"] = failure_class(entry, reply, p.gold)
                rows.append(row)
            print(f"{len(rows)}/{len(problems)} problems, "
                  f"{time.monotonic() - started:.0f}s", file=sys.stderr, flush=True)
    finally:
        backend.close()

    with open(args.out / "probe.jsonl", "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    with open(args.out / "recording.jsonl", "w", encoding="utf-8") as f:
        for logged in backend.log.values():
            f.write(json.dumps(logged, ensure_ascii=False) + "\n")
    summary = summarize(rows)
    summary.update(template=template.id, teacher_file=str(args.teacher_file or ""),
                   wall_seconds=round(time.monotonic() - started, 1),
                   requests_replayed=backend.replayed, requests_generated=backend.generated,
                   config={k: str(v) for k, v in vars(args).items()})
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))
    return 0


def _seed(config: CurateConfig, label: str) -> int:
    from ssb.stages.curate import derive_seed

    return derive_seed(config.seed, label)


def _median(values: list[float]) -> float | None:
    values = sorted(values)
    if not values:
        return None
    mid = len(values) // 2
    return values[mid] if len(values) % 2 else round((values[mid - 1] + values[mid]) / 2, 3)


def summarize(rows: list[dict]) -> dict[str, Any]:
    status = Counter(r["entry"]["status"] for r in rows)
    teacher = [r for r in rows if "teacher_reply" in r]
    kept = sum(1 for r in teacher if r["entry"].get("teacher_correct"))
    tokens = [r["teacher_reply"]["num_tokens"] for r in teacher]
    kept_rows = [r for r in teacher if r["entry"].get("teacher_correct")]
    failed_rows = [r for r in teacher if not r["entry"].get("teacher_correct")]
    return {
        "problems": len(rows),
        "status": dict(status),
        "teacher_attempts": len(teacher),
        "kept": kept,
        "teacher_accuracy": round(kept / len(teacher), 4) if teacher else None,
        "keep_rate": round(kept / len(rows), 4) if rows else None,
        "mean_teacher_tokens": round(sum(tokens) / len(tokens), 1) if tokens else None,
        "truncated": sum(1 for r in teacher if r["teacher_reply"]["finish_reason"] != "stop"),
        "failures": dict(Counter(r["failure"] for r in teacher if r.get("failure"))),
        "leaks_in_kept": sum(1 for r in teacher
                             if r["entry"].get("teacher_correct") and r.get("leak")),
        "leaks_in_all": sum(1 for r in teacher if r.get("leak")),
        "prompt_echo_in_all": sum(1 for r in teacher if r.get("echo")),
        # A kept "solution" of a few tokens ("\\boxed{13}") verifies but teaches no reasoning.
        "kept_under_40_tokens": sum(1 for r in teacher if r["entry"].get("teacher_correct")
                                    and r["teacher_reply"]["num_tokens"] < 40),
        "code_in_all": sum(1 for r in teacher if r.get("code")),
        "median_similarity_kept_to_correct": _median([r["similarity_to_correct"]
                                                      for r in kept_rows]),
        "median_similarity_failed_to_wrong": _median([r["similarity_to_wrong"]
                                                      for r in failed_rows]),
        "code_in_failures": sum(1 for r in teacher if r.get("code") and r.get("failure")),
    }


if __name__ == "__main__":
    try:
        sys.exit(main())
    except SsbError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
