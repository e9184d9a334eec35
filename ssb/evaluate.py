"""The eval stage: problems -> student prompts -> responses -> verdicts -> metrics.

``DIR/journal.jsonl`` gets one fsync'd line per finished problem, so a killed run resumes where
it stopped and no problem is evaluated twice; ``DIR/results.jsonl`` (one row per problem, in
dataset order) and ``DIR/summary.json`` are written atomically from the journal at the end.

Prompts are the domain's *student* template (system + bare question) rendered by the backend
through the model's chat template: the exact format the distilled student was trained on.

Decoding: greedy (temperature 0, one sample: pass@1) by default.  With ``samples > 1`` the
default is temperature 0.6 and top-p 0.95, and the summary adds avg@n, maj@n and unbiased pass@k
for k in 1 and the powers of two up to n.  Statistics: see :mod:`ssb.metrics`.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

from ssb import metrics
from ssb.errors import DataError, SsbError
from ssb.records import Problem, SamplingParams

COMMAND = "eval"
JOURNAL = "journal.jsonl"
RESULTS = "results.jsonl"
SUMMARY = "summary.json"
LOCK = ".eval.lock"
ADAPTER_GGUF = "adapter.gguf"

SAMPLED_TEMPERATURE = 0.6  # default when --samples > 1
SAMPLED_TOP_P = 0.95
# Backend options that change speed or where requests go, never what a model answers.
RUNTIME_BACKEND_OPTIONS = {"n_threads", "n_batch", "batch_size", "concurrency", "timeout",
                           "max_retries", "base_url"}
SECRET_BACKEND_OPTIONS = {"api_key"}


@dataclass
class EvalConfig:
    """Everything ``ssb eval`` was asked to do (CLI flags mirror these fields)."""

    dataset: str
    backend: str
    model: str
    out: Path
    source: str | None = None
    split: str = "test"
    adapter: str | None = None
    limit: int | None = None
    samples: int = 1
    temperature: float | None = None  # None: 0 (greedy) for one sample, 0.6 for several
    top_p: float | None = None  # None: 1.0 greedy, 0.95 sampled
    top_k: int = 0
    max_tokens: int = 2048
    seed: int = 0
    template: str | None = None
    batch_size: int = 8  # problems per backend call (and per journal flush)
    workers: int = 0  # verification helper processes
    verify_timeout: float = 5.0
    backend_options: dict[str, Any] = field(default_factory=dict)
    force: bool = False
    progress: bool = True

    @property
    def effective_temperature(self) -> float:
        if self.temperature is not None:
            return float(self.temperature)
        return 0.0 if self.samples == 1 else SAMPLED_TEMPERATURE

    @property
    def effective_top_p(self) -> float:
        if self.top_p is not None:
            return float(self.top_p)
        return 1.0 if self.effective_temperature == 0 else SAMPLED_TOP_P

    def validate(self) -> None:
        if self.samples < 1:
            raise SsbError(f"--samples must be >= 1, got {self.samples}")
        if self.samples > 1 and self.effective_temperature == 0:
            raise SsbError("--samples > 1 with --temperature 0 gives n copies of one greedy answer; "
                           "set --temperature (default with --samples is "
                           f"{SAMPLED_TEMPERATURE})")
        if self.effective_temperature < 0:
            raise SsbError(f"--temperature must be >= 0, got {self.temperature}")
        if not 0 < self.effective_top_p <= 1:
            raise SsbError(f"--top-p must be in (0, 1], got {self.top_p}")
        if self.max_tokens < 1:
            raise SsbError(f"--max-tokens must be >= 1, got {self.max_tokens}")
        if self.limit is not None and self.limit < 1:
            raise SsbError(f"--limit must be >= 1, got {self.limit}")
        if self.batch_size < 1:
            raise SsbError(f"--batch-size must be >= 1, got {self.batch_size}")
        if self.workers < 0:
            raise SsbError(f"--workers must be >= 0, got {self.workers}")

    def sampling(self) -> SamplingParams:
        return SamplingParams(n=self.samples, temperature=self.effective_temperature,
                              top_p=self.effective_top_p, top_k=self.top_k,
                              max_new_tokens=self.max_tokens, seed=self.seed)

    def settings(self) -> dict[str, Any]:
        """What decides the answers (recorded in summary.json and compared on resume)."""
        options = {k: v for k, v in self.backend_options.items()
                   if k not in SECRET_BACKEND_OPTIONS | RUNTIME_BACKEND_OPTIONS}
        return {
            "dataset": self.dataset, "source": self.source, "split": self.split,
            "limit": self.limit, "backend": self.backend, "model": self.model,
            "adapter": self.adapter, "samples": self.samples,
            "temperature": self.effective_temperature, "top_p": self.effective_top_p,
            "top_k": self.top_k, "max_tokens": self.max_tokens, "seed": self.seed,
            "template": self.template, "backend_options": options,
        }


# -- pure helpers ---------------------------------------------------------------------------------

def problems_sha256(problems: Sequence[Problem]) -> str:
    """A hash of the evaluated problems (ids, questions, golds), order included."""
    h = hashlib.sha256()
    for p in problems:
        h.update(json.dumps([p.id, p.question, p.gold], ensure_ascii=False).encode())
        h.update(b"\n")
    return h.hexdigest()


def summarize(rows: Sequence[dict], *, seed: int = 0) -> dict[str, Any]:
    """Metrics of result rows (each with ``samples``: dicts with ``correct``, ``extracted``,
    ``num_tokens``, ``finish_reason``)."""
    flags = [[bool(s["correct"]) for s in r["samples"]] for r in rows]
    answers = [[s.get("extracted") for s in r["samples"]] for r in rows]
    samples = [s for r in rows for s in r["samples"]]
    acc = metrics.accuracy(flags, seed=seed)
    n_per_problem = sorted({len(f) for f in flags})
    out: dict[str, Any] = {
        "n": len(rows),
        "samples_per_problem": n_per_problem[0] if len(n_per_problem) == 1 else n_per_problem,
        "accuracy": acc.to_dict(),
        "correct": sum(sum(f) for f in flags),
        "responses": len(samples),
        "truncation_rate": (sum(s["finish_reason"] == "length" for s in samples) / len(samples)
                            if samples else 0.0),
        "no_answer_rate": (sum(s.get("extracted") is None for s in samples) / len(samples)
                           if samples else 0.0),
        "verifier_errors": sum(1 for s in samples if s.get("error")),
        "mean_response_tokens": (sum(s["num_tokens"] for s in samples) / len(samples)
                                 if samples else 0.0),
        "mean_response_chars": (sum(len(s["text"]) for s in samples) / len(samples)
                                if samples else 0.0),
    }
    if rows and len(n_per_problem) == 1 and n_per_problem[0] > 1:
        n = n_per_problem[0]
        out["avg@n"] = metrics.avg_at_n(flags)
        out["maj@n"] = metrics.maj_at_n(answers, flags)
        out["pass@k"] = {str(k): metrics.mean_pass_at_k(flags, k)
                         for k in metrics.pass_at_k_ladder(n)}
    elif rows:
        out["pass@k"] = {"1": acc.mean}
    return out


def latest_entries(entries: Iterable[dict]) -> dict[str, dict]:
    """Journal entries by problem id (a later line for the same id wins)."""
    out: dict[str, dict] = {}
    for e in entries:
        if isinstance(e.get("id"), str) and isinstance(e.get("samples"), list):
            out[e["id"]] = e
    return out


# -- the stage ------------------------------------------------------------------------------------

def _local_inputs(source: str | None) -> list[Path]:
    if not source:
        return []
    path = Path(source).expanduser()
    if path.is_file():
        return [path]
    return []


def _resolve_adapter(config: EvalConfig, out: Path) -> tuple[str | None, dict[str, Any]]:
    """The adapter argument for the backend, plus what to record about it.

    llama.cpp loads LoRA adapters only as GGUF: a peft directory is exported (once per adapter
    content) to ``DIR/adapter.gguf`` against the evaluated base model.
    """
    if not config.adapter:
        return None, {}
    from ssb.export import adapter_fingerprint, ensure_gguf_adapter, is_peft_adapter

    path = Path(config.adapter).expanduser()
    if not path.exists():
        raise SsbError(f"adapter not found: {config.adapter}")
    info: dict[str, Any] = {}
    if is_peft_adapter(path):
        info["adapter_sha256"] = adapter_fingerprint(path)
        if config.backend == "llama.cpp":
            gguf = ensure_gguf_adapter(path, out / ADAPTER_GGUF, base=config.model)
            info["adapter_gguf"] = str(gguf)
            return str(gguf), info
    elif path.is_file():
        from ssb.config import sha256_file

        info["adapter_sha256"] = sha256_file(path)
    return str(path), info


def _generate_verify(chunk: Sequence[Problem], *, backend: Any, template: Any, domain: str,
                     config: EvalConfig, progress) -> list[dict]:
    from ssb.verification import verify_batch

    params = config.sampling()
    conversations = [template.student_messages(p.question) for p in chunk]
    try:
        completions = backend.generate(conversations, params, progress)
    except SsbError:
        raise
    except Exception as exc:  # a backend crash: what is journaled so far stays; rerun resumes
        raise SsbError(f"backend {config.backend!r} failed: {type(exc).__name__}: {exc}\n"
                       f"Finished problems are saved in {config.out}; rerun to resume.") from exc
    if len(completions) != len(chunk) or any(len(c) != params.n for c in completions):
        raise SsbError(f"backend {config.backend!r} returned the wrong number of completions")
    items = [(c.text, p.gold) for p, cs in zip(chunk, completions) for c in cs]
    verdicts = verify_batch(domain, items, workers=config.workers, timeout=config.verify_timeout)
    entries, k = [], 0
    for p, cs in zip(chunk, completions):
        samples = []
        for c in cs:
            v = verdicts[k]
            k += 1
            sample = {"text": c.text, "num_tokens": c.num_tokens,
                      "finish_reason": c.finish_reason, "extracted": v.extracted,
                      "correct": bool(v.correct)}
            if v.error:
                sample["error"] = v.error
            samples.append(sample)
        entries.append({"id": p.id, "gold": p.gold, "samples": samples})
    return entries


def result_row(problem: Problem, entry: dict) -> dict:
    """One results.jsonl row: the problem, each response with its verdict, and its score."""
    samples = entry["samples"]
    n_correct = sum(1 for s in samples if s["correct"])
    return {"id": problem.id, "dataset": problem.dataset, "question": problem.question,
            "gold": problem.gold, "score": n_correct / len(samples), "n_correct": n_correct,
            "samples": samples}


def run_eval(config: EvalConfig) -> dict[str, Any]:
    """Evaluate ``config.model`` (+ adapter) on a dataset; resumable. Returns the summary."""
    from ssb.commands._common import load_backend, progress_bar
    from ssb.config import check_resume, finish_manifest, start_manifest
    from ssb.journal import Journal, OutputLock, atomic_write_json, atomic_write_text
    from ssb.plugins import get_registry

    config.validate()
    started = time.monotonic()
    registry = get_registry()
    loader = registry.dataset(config.dataset)
    domain = loader.domain
    registry.verifier(domain)
    template = registry.template(domain, config.template)
    loaded = loader.load(config.source, config.split, skip_bad=False, filters=None)
    problems = list(loaded.problems)
    seen: set[str] = set()
    for p in problems:
        if p.id in seen:
            raise SsbError(f"dataset {config.dataset!r} has two problems with id {p.id!r}")
        seen.add(p.id)
    selected = problems[: config.limit] if config.limit else problems
    if not selected:
        raise SsbError(f"dataset {config.dataset!r} ({config.source or loader.default_source}, "
                       f"split {config.split}) has no problems")

    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    with OutputLock(out / LOCK, "ssb eval"):
        adapter_arg, adapter_info = _resolve_adapter(config, out)
        settings = config.settings()
        manifest_config = {**settings, "template": template.id, "domain": domain,
                           "problems_sha256": problems_sha256(selected),
                           "adapter_sha256": adapter_info.get("adapter_sha256")}
        resumed = check_resume(out, COMMAND, manifest_config, config.force)
        manifest = start_manifest(out, COMMAND, manifest_config,
                                  inputs=_local_inputs(config.source), seed=config.seed)

        journal = Journal(out / JOURNAL)
        wanted = {p.id for p in selected}
        done = {k: v for k, v in latest_entries(journal.read()).items() if k in wanted}
        todo = [p for p in selected if p.id not in done]
        this_run = {"resumed": resumed, "already_done": len(done), "evaluated": 0,
                    "generated_tokens": 0}

        backend = None
        try:
            if todo:
                backend = load_backend(config.backend, config.model, adapter_arg,
                                       config.backend_options)
            total = len(todo) * config.samples
            with journal, progress_bar(f"eval {config.dataset}", total=total,
                                       enabled=config.progress) as advance:
                right = sum(sum(s["correct"] for s in e["samples"]) for e in done.values())
                seen_samples = sum(len(e["samples"]) for e in done.values())
                for start in range(0, len(todo), config.batch_size):
                    chunk = todo[start:start + config.batch_size]
                    entries = _generate_verify(chunk, backend=backend, template=template,
                                               domain=domain, config=config,
                                               progress=lambda n: advance(n))
                    for entry in entries:
                        journal.append(entry)
                        done[entry["id"]] = entry
                        this_run["evaluated"] += 1
                        this_run["generated_tokens"] += sum(s["num_tokens"]
                                                            for s in entry["samples"])
                        right += sum(s["correct"] for s in entry["samples"])
                        seen_samples += len(entry["samples"])
                    advance(0, info=f"acc {right}/{seen_samples}")
        finally:
            if backend is not None:
                backend.close()

        by_id = {p.id: p for p in selected}
        rows = [result_row(by_id[p.id], done[p.id]) for p in selected]
        atomic_write_text(out / RESULTS,
                          "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
        elapsed = time.monotonic() - started
        summary = {
            "dataset": config.dataset, "split": config.split,
            "source": config.source or loader.default_source, "domain": domain,
            "template": template.id, "model": config.model, "adapter": config.adapter,
            **{k: v for k, v in adapter_info.items() if k == "adapter_gguf"},
            "backend": config.backend,
            **summarize(rows, seed=config.seed),
            "settings": {**settings, "template": template.id},
            "runtime": {"batch_size": config.batch_size, "workers": config.workers,
                        "backend_options": {k: v for k, v in config.backend_options.items()
                                            if k in RUNTIME_BACKEND_OPTIONS}},
            "statistics": {
                "accuracy_ci": "95% Wilson score interval (one sample per problem) or "
                               "percentile bootstrap over problems (several samples)",
                "pass@k": "unbiased estimator 1 - C(n-c,k)/C(n,k) (Chen et al. 2021)",
                "maj@n": "majority vote over extracted answers (whitespace-insensitive); "
                         "ties go to the answer seen first; no answer never votes",
            },
            "this_run": {**this_run, "wall_seconds": round(elapsed, 3)},
        }
        atomic_write_json(out / SUMMARY, summary)
        finish_manifest(out, manifest, accuracy=summary["accuracy"]["mean"], n=summary["n"])
        return summary


# -- reading finished runs and comparing them -----------------------------------------------------

@dataclass
class RunResults:
    path: Path
    summary: dict[str, Any]
    scores: dict[str, float]  # problem id -> fraction of samples correct

    @property
    def label(self) -> str:
        return self.path.name or str(self.path)


def load_run(path: str | os.PathLike) -> RunResults:
    """A finished eval run directory (summary.json + results.jsonl)."""
    from ssb.journal import read_jsonl

    path = Path(path)
    summary_path, results_path = path / SUMMARY, path / RESULTS
    if not summary_path.is_file() or not results_path.is_file():
        raise SsbError(f"{path}: not a finished eval run (needs {SUMMARY} and {RESULTS}; "
                       "rerun `ssb eval` there to finish it)")
    try:
        summary = json.loads(summary_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DataError(f"invalid JSON: {exc}", path=str(summary_path)) from None
    scores: dict[str, float] = {}
    for line, row in enumerate(read_jsonl(results_path), start=1):
        pid, samples = row.get("id"), row.get("samples")
        if not isinstance(pid, str):
            raise DataError("missing or non-string 'id'", path=str(results_path), line=line,
                            field="id")
        if not isinstance(samples, list) or not samples or not all(
                isinstance(s, dict) and isinstance(s.get("correct"), bool) for s in samples):
            raise DataError("'samples' must be a non-empty list of objects with a boolean "
                            "'correct'", path=str(results_path), line=line, field="samples")
        scores[pid] = sum(s["correct"] for s in samples) / len(samples)
    return RunResults(path, summary, scores)


def compare_runs(paths: Sequence[str | os.PathLike], *, alpha: float = 0.05,
                 resamples: int = 10_000, seed: int = 0) -> dict[str, Any]:
    """Every run against the first, paired over the problems all runs share."""
    if len(paths) < 2:
        raise SsbError("compare needs at least two run directories")
    runs = [load_run(p) for p in paths]
    shared_set = set(runs[0].scores)
    for r in runs[1:]:
        shared_set &= set(r.scores)
    shared = [pid for pid in runs[0].scores if pid in shared_set]  # first run's order
    if not shared:
        raise SsbError("the runs share no problems (different datasets or splits?)")
    notes = []
    datasets = {(r.summary.get("dataset"), r.summary.get("split")) for r in runs}
    if len(datasets) > 1:
        notes.append(f"runs are on different datasets/splits: {sorted(map(str, datasets))}")
    # A comparison is about the model/adapter; other differences would confound it.
    for key in ("template", "samples", "temperature", "top_p", "top_k", "max_tokens"):
        values = {json.dumps((r.summary.get("settings") or {}).get(key)) for r in runs}
        if len(values) > 1:
            notes.append(f"runs differ in {key} ({', '.join(sorted(values))}): the difference "
                         "is not only the model/adapter")
    for r in runs:
        if len(r.scores) != len(shared):
            notes.append(f"{r.label}: {len(r.scores) - len(shared)} problems not shared by all "
                         "runs are left out")
    base = runs[0]
    base_scores = [base.scores[pid] for pid in shared]
    out_runs, comparisons = [], []
    for i, r in enumerate(runs):
        scores = [r.scores[pid] for pid in shared]
        per_problem_binary = all(s in (0.0, 1.0) for s in scores)
        mean = sum(scores) / len(scores)
        if per_problem_binary:
            lo, hi = metrics.wilson_interval(int(round(sum(scores))), len(scores))
        else:
            lo, hi = metrics.bootstrap_mean_interval(scores, seed=seed)
        out_runs.append({
            "path": str(r.path), "label": r.label, "dataset": r.summary.get("dataset"),
            "split": r.summary.get("split"), "model": r.summary.get("model"),
            "adapter": r.summary.get("adapter"), "backend": r.summary.get("backend"),
            "n_total": len(r.scores), "accuracy": mean, "ci_low": lo, "ci_high": hi,
        })
        if i == 0:
            continue
        c = metrics.compare_paired(base_scores, scores, alpha=alpha, resamples=resamples,
                                   seed=seed)
        comparisons.append({"a": base.label, "b": r.label, **c.to_dict(),
                            "verdict": metrics.describe_comparison(c, base.label, r.label)})
    return {"shared_problems": len(shared), "runs": out_runs, "comparisons": comparisons,
            "notes": notes, "alpha": alpha, "resamples": resamples,
            "method": "paired percentile bootstrap over shared problems of the per-problem "
                      "score difference; exact two-sided McNemar test when every score is 0/1; "
                      "significant only if the bootstrap CI excludes 0 and McNemar rejects"}


# -- tables ---------------------------------------------------------------------------------------

def summary_table(summary: dict[str, Any]):
    """A rich table of one run's summary."""
    from rich.table import Table

    acc = summary["accuracy"]
    title = f"{summary['dataset']} ({summary['split']}): {summary['model']}"
    if summary.get("adapter"):
        title += f" + {summary['adapter']}"
    table = Table(title=title, show_header=True)
    table.add_column("metric")
    table.add_column("value", justify="right")
    table.add_row("problems", str(summary["n"]))
    table.add_row("samples / problem", str(summary["samples_per_problem"]))
    table.add_row("accuracy (pass@1)", f"{100 * acc['mean']:.1f}%")
    table.add_row("95% CI", f"{100 * acc['ci_low']:.1f} - {100 * acc['ci_high']:.1f}% "
                            f"({acc['ci_method']})")
    for k, v in (summary.get("pass@k") or {}).items():
        if k != "1":
            table.add_row(f"pass@{k}", f"{100 * v:.1f}%")
    if "maj@n" in summary:
        n = summary["samples_per_problem"]
        table.add_row(f"avg@{n}", f"{100 * summary['avg@n']:.1f}%")
        table.add_row(f"maj@{n}", f"{100 * summary['maj@n']:.1f}%")
    table.add_row("truncated (hit max tokens)", f"{100 * summary['truncation_rate']:.1f}%")
    table.add_row("no answer extracted", f"{100 * summary['no_answer_rate']:.1f}%")
    table.add_row("mean response tokens", f"{summary['mean_response_tokens']:.1f}")
    s = summary["settings"]
    table.add_row("decoding", f"T={s['temperature']:g} top_p={s['top_p']:g} "
                              f"max_tokens={s['max_tokens']} seed={s['seed']}")
    return table


def compare_table(report: dict[str, Any]):
    """A rich table of :func:`compare_runs`' report."""
    from rich.table import Table

    table = Table(title=f"paired comparison on {report['shared_problems']} shared problems "
                        f"(vs {report['runs'][0]['label']})")
    for col, justify in (("run", "left"), ("model", "left"), ("adapter", "left"),
                         ("accuracy", "right"), ("95% CI", "right"), ("diff (pts)", "right"),
                         ("diff 95% CI", "right"), ("McNemar p", "right"),
                         ("significant", "center")):
        table.add_column(col, justify=justify)
    for i, r in enumerate(report["runs"]):
        c = report["comparisons"][i - 1] if i else None  # comparisons follow runs[1:]
        table.add_row(
            r["label"], str(r.get("model") or ""), str(r.get("adapter") or "-"),
            f"{100 * r['accuracy']:.1f}%", f"{100 * r['ci_low']:.1f}-{100 * r['ci_high']:.1f}",
            "(base)" if c is None else f"{100 * c['diff']:+.1f}",
            "" if c is None else f"{100 * c['ci_low']:+.1f} to {100 * c['ci_high']:+.1f}",
            "" if c is None or c["mcnemar_p"] is None else f"{c['mcnemar_p']:.3g}",
            "" if c is None else ("yes" if c["significant"] else "NO"),
        )
    return table


def config_dict(config: EvalConfig) -> dict[str, Any]:
    data = asdict(config)
    data["out"] = str(config.out)
    return data
