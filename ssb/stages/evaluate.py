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

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Iterable, Sequence

from ssb import metrics
from ssb.errors import DataError, SsbError
from ssb.events import EventCallback, Reporter
from ssb.option_groups import (ACCEPT_CHANGED_CONFIG, BACKEND, BACKEND_OPTIONS, DATASET, FILTERS,
                               FORCE, LIMIT, MODEL, OUT, RESTART, SEED, SOURCE, SPLIT, TEMPLATE,
                               WORKERS)
from ssb.options import ConfigError, StageConfig, option
from ssb.records import Problem, SamplingParams
from ssb.journal import atomic_write_json, atomic_write_text
from ssb.plugins import get_registry
from ssb.secrets import redact, redact_text
from ssb.stage import StageOutput, check_output_dir, select_problems

COMMAND = "eval"
JOURNAL = "journal.jsonl"
RESULTS = "results.jsonl"
SUMMARY = "summary.json"
EXPORTED_ADAPTER_FILE = "adapter.gguf"  # where a peft adapter is exported for a GGUF-only backend
FOLDED_ADAPTER_DIR = "adapter-folded"  # several adapters (a round-r student) folded into one

SAMPLED_TEMPERATURE = 0.6  # default when --samples > 1
SAMPLED_TOP_P = 0.95


@dataclass
class EvalConfig(StageConfig):
    """Everything ``ssb eval`` takes: the flags, the TOML keys and the Python API in one place."""

    COMMAND: ClassVar[str] = "eval"

    # Options shared with other commands are declared once, in ssb.option_groups.
    dataset: str = DATASET(note="gsm8k, math500, aime24, amc23, ...")
    backend: str = BACKEND()
    model: str = MODEL()
    out: Path = OUT(note="results.jsonl, summary.json, manifest.json, journal.jsonl")
    source: str | None = SOURCE()
    split: str = SPLIT("test")
    adapter: str | None = option(None, help="LoRA adapter: a peft directory (exported to GGUF "
                                 "automatically for backends that load only GGUF adapters) or "
                                 "a GGUF LoRA file; or a round-r student: the `ssb run` "
                                 "directory (or its roundR/) or the rounds' adapters in order, "
                                 "comma-separated or a repeated flag.")
    limit: int | None = LIMIT()
    filters: dict[str, Any] = FILTERS()
    samples: int = option(1, ge=1, short="-n",
                          help="Samples per problem (n > 1: avg@n, maj@n, pass@k).")
    temperature: float | None = option(None, ge=0, short="-t",
                                       help="Sampling temperature (default: 0, greedy, with one "
                                       f"sample; {SAMPLED_TEMPERATURE} with --samples).")
    top_p: float | None = option(None, gt=0, le=1, help="Nucleus sampling (default: 1.0 "
                                 f"greedy; {SAMPLED_TOP_P} sampled).")
    top_k: int = option(0, ge=0, help="Top-k sampling, 0 = off.")
    max_tokens: int = option(2048, ge=1, help="Maximum new tokens per response.")
    seed: int = SEED(0, note="sampling")
    template: str | None = TEMPLATE()
    batch_size: int = option(32, ge=1, resume=False,
                             help="Problems per backend call (and per journal flush).")
    workers: int | None = WORKERS()
    verify_timeout: float = option(5.0, gt=0, resume=False,
                                   help="Seconds allowed per verification.")
    backend_options: dict[str, Any] = BACKEND_OPTIONS()
    restart: bool = RESTART()
    accept_changed_config: bool = ACCEPT_CHANGED_CONFIG(
        note="the problems already answered are kept, the rest are answered under the new one")
    force: bool = FORCE("accept_changed_config", "resume even though the config changed")

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

    def check(self) -> None:
        from ssb.plugins import get_registry

        if self.samples > 1 and self.effective_temperature == 0:
            raise ConfigError("--samples > 1 with --temperature 0 gives n copies of one greedy "
                              f"answer; set --temperature (default with --samples is "
                              f"{SAMPLED_TEMPERATURE})")
        registry = get_registry()
        factory = registry.backend(self.backend)
        self.backend_options = factory.parse_options(self.backend_options)
        loader = registry.dataset(self.dataset)
        registry.verifier(loader.domain)
        registry.template(loader.domain, self.template)

    def sampling(self) -> SamplingParams:
        return SamplingParams(n=self.samples, temperature=self.effective_temperature,
                              top_p=self.effective_top_p, top_k=self.top_k,
                              max_new_tokens=self.max_tokens, seed=self.seed)

    def settings(self) -> dict[str, Any]:
        """What decides the answers (recorded in summary.json and compared on resume)."""
        from ssb.plugins import get_registry

        factory = get_registry().backend(self.backend)
        return {
            "dataset": self.dataset, "source": self.source, "split": self.split,
            "limit": self.limit, "backend": self.backend, "model": self.model,
            "adapter": self.adapter, "samples": self.samples,
            "temperature": self.effective_temperature, "top_p": self.effective_top_p,
            "top_k": self.top_k, "max_tokens": self.max_tokens, "seed": self.seed,
            "template": self.template, "filters": self.filters,
            "backend_options": factory.identity_options(self.backend_options),
        }

    def runtime_options(self) -> dict[str, Any]:
        """Backend options that change speed or plumbing, not answers (never secrets)."""
        from ssb.plugins import get_registry

        factory = get_registry().backend(self.backend)
        identity = factory.identity_options(self.backend_options)
        return {k: v for k, v in factory.public_options(self.backend_options).items()
                if k not in identity}


# -- pure helpers ---------------------------------------------------------------------------------

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

def _resolve_adapter(config: EvalConfig, out: Path,
                     factory: Any) -> tuple[str | None, dict[str, Any]]:
    """The adapter argument for the backend, plus what to record about it.

    A peft directory given to a backend that loads only GGUF LoRA adapters (llama.cpp) is
    exported, once per adapter content, to ``DIR/adapter.gguf`` against the evaluated model.
    """
    if not config.adapter:
        return None, {}
    from ssb.export import (adapter_fingerprint, check_adapter, ensure_gguf_adapter,
                            is_peft_adapter)
    from ssb.stage import sha256_file
    from ssb.types import ADAPTER_GGUF, ADAPTER_PEFT

    info: dict[str, Any] = {}
    adapters = adapter_list(config.adapter)
    if len(adapters) > 1:  # a round-r student: its rounds' LoRAs summed, folded into one
        from ssb.export import ensure_folded_adapter

        for a in adapters:
            if not is_peft_adapter(a):
                raise SsbError(f"adapter {a}: a list of adapters (a round-r student) takes peft "
                               "adapter directories, each as `ssb distill` wrote it")
        info["adapters"] = [str(a) for a in adapters]
        path = ensure_folded_adapter(adapters, out / FOLDED_ADAPTER_DIR)
    else:
        path = adapters[0]
    if is_peft_adapter(path):
        check_adapter(path)  # a truncated file or a mismatched config: one line, before any output
        info["adapter_sha256"] = adapter_fingerprint(path)
        if ADAPTER_PEFT not in factory.adapter_formats:
            if ADAPTER_GGUF not in factory.adapter_formats:
                raise SsbError(f"backend {factory.name!r} loads no LoRA adapters")
            gguf = ensure_gguf_adapter(path, out / EXPORTED_ADAPTER_FILE, base=config.model)
            info["adapter_gguf"] = str(gguf)
            return str(gguf), info
    elif path.is_file():
        info["adapter_sha256"] = sha256_file(path)
    return str(path), info


def adapter_list(adapter: str) -> list[Path]:
    """``--adapter`` as the ordered adapters it names: a peft directory or GGUF file (one), a
    comma-separated list (the rounds' adapters, in order), or the directory of an ``ssb run``
    or one of its rounds (``RUN/round2``: rounds 1 and 2's adapters;
    :func:`ssb.stages.run.student_adapters`)."""
    from ssb.export import is_peft_adapter
    from ssb.stages.run import student_adapters

    items = [a.strip() for a in str(adapter).split(",")]
    if any(not a for a in items):
        raise SsbError(f"--adapter {adapter!r}: an empty name in the list (ADAPTER[,ADAPTER...])")
    paths: list[Path] = []
    for item in items:
        path = Path(item).expanduser()
        if not path.exists():
            raise SsbError(f"adapter not found: {item}")
        if path.is_dir() and not is_peft_adapter(path) and not any(path.glob("*.gguf")):
            found = student_adapters(path)
            if found is None:
                raise SsbError(f"adapter {item}: neither a peft adapter, a GGUF LoRA, nor the "
                               "directory of an `ssb run` or one of its rounds")
            paths.extend(found)
        else:
            paths.append(path)
    return paths


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
        raise SsbError(f"backend {config.backend!r} failed: "
                       f"{redact_text(f'{type(exc).__name__}: {exc}')}\n"
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
            if v.detail:  # why it failed, when the domain can say (a failing assertion...)
                sample["detail"] = v.detail
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


@dataclass
class EvalResult:
    """What :func:`evaluate` returns (``summary`` is also ``DIR/summary.json``)."""

    out: Path
    summary: dict[str, Any]

    @property
    def accuracy(self) -> float:
        return float(self.summary["accuracy"]["mean"])

    @property
    def results(self) -> Path:
        return self.out / RESULTS


def evaluate(config: EvalConfig, *, on_event: EventCallback | None = None,
             backend: Any = None) -> EvalResult:
    """Evaluate ``config.model`` (+ adapter) on a dataset; resumable.

    ``backend``: an already loaded backend to use instead of creating one (the caller keeps
    ownership; its adapter, if any, must be the one ``config.adapter`` names).
    """
    config = config.validate()
    started = time.monotonic()
    report = Reporter(COMMAND, on_event)
    registry = get_registry()
    factory = registry.backend(config.backend)
    problems = select_problems(registry, config.dataset, config.source, config.split,
                               config.limit, filters=config.filters or None)
    domain = problems.domain
    template = registry.template(domain, config.template)
    selected = problems.selected

    out = Path(config.out)
    check_output_dir(out)  # a file, a path under a file, a symlink loop: one line
    out.mkdir(parents=True, exist_ok=True)
    adapter_arg, adapter_info = _resolve_adapter(config, out, factory)
    settings = config.settings()
    identity = {**settings, "template": template.id, "domain": domain,
                "problems_sha256": problems.sha256,
                "adapter_sha256": adapter_info.get("adapter_sha256")}
    with StageOutput(out, COMMAND, identity, {**config.manifest(), "template": template.id},
                     force=config.accept_changed_config, restart=config.restart,
                     outputs=(JOURNAL, RESULTS, SUMMARY),
                     inputs=problems.inputs, seed=config.seed) as stage:
        journal = stage.journal(JOURNAL)
        wanted = {p.id for p in selected}
        done = {k: v for k, v in latest_entries(journal.read()).items() if k in wanted}
        todo = [p for p in selected if p.id not in done]
        this_run = {"resumed": stage.resumed, "already_done": len(done), "evaluated": 0,
                    "generated_tokens": 0}

        owned = backend is None
        try:
            if todo and backend is None:
                backend = factory.create(config.model, adapter=adapter_arg,
                                         **config.backend_options)
            if hasattr(backend, "check_params"):  # settings beyond the model: no work yet
                backend.check_params(config.sampling())
            # Only now: a model or adapter that fails to load leaves no manifest behind that
            # would refuse the corrected command as "a different config".
            stage.start_work()
            right = sum(sum(s["correct"] for s in e["samples"]) for e in done.values())
            seen_samples = sum(len(e["samples"]) for e in done.values())
            report.start(f"eval {config.dataset}", total=len(todo) * config.samples)
            with journal:
                for start in range(0, len(todo), config.batch_size):
                    chunk = todo[start:start + config.batch_size]
                    entries = _generate_verify(chunk, backend=backend, template=template,
                                               domain=domain, config=config,
                                               progress=lambda n: report.advance(n))
                    for entry in entries:
                        journal.append(entry)
                        done[entry["id"]] = entry
                        this_run["evaluated"] += 1
                        this_run["generated_tokens"] += sum(s["num_tokens"]
                                                            for s in entry["samples"])
                        right += sum(s["correct"] for s in entry["samples"])
                        seen_samples += len(entry["samples"])
                    report.info(f"acc {right}/{seen_samples}")
            report.end()
        finally:
            if owned and backend is not None:
                backend.close()

        by_id = {p.id: p for p in selected}
        rows = [result_row(by_id[p.id], done[p.id]) for p in selected]
        atomic_write_text(out / RESULTS,
                          "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
        elapsed = time.monotonic() - started
        summary = {
            "dataset": config.dataset, "split": config.split,
            "source": problems.source, "domain": domain,
            "template": template.id, "model": config.model, "adapter": config.adapter,
            **{k: v for k, v in adapter_info.items() if k in ("adapter_gguf", "adapters")},
            "backend": config.backend,
            **summarize(rows, seed=config.seed),
            "settings": {**settings, "template": template.id},
            "runtime": {"batch_size": config.batch_size, "workers": config.workers,
                        "backend_options": config.runtime_options()},
            "statistics": {
                "accuracy_ci": "95% Wilson score interval (one sample per problem) or "
                               "percentile bootstrap over problems (several samples)",
                "pass@k": "unbiased estimator 1 - C(n-c,k)/C(n,k) (Chen et al. 2021)",
                "maj@n": "majority vote over extracted answers (whitespace-insensitive); "
                         "ties go to the answer seen first; no answer never votes",
            },
            "this_run": {**this_run, "wall_seconds": round(elapsed, 3)},
        }
        atomic_write_json(out / SUMMARY, redact(summary))
        stage.finish(accuracy=summary["accuracy"]["mean"], n=summary["n"])
        return EvalResult(out=out, summary=summary)


# -- reading finished runs and comparing them -----------------------------------------------------

@dataclass
class RunResults:
    path: Path
    summary: dict[str, Any]
    scores: dict[str, float]  # problem id -> fraction of samples correct
    content: dict[str, str] = field(default_factory=dict)  # problem id -> hash(question, gold)

    @property
    def label(self) -> str:
        return self.path.name or str(self.path)


def load_run(path: str | os.PathLike) -> RunResults:
    """A finished eval run directory (summary.json + results.jsonl)."""
    from ssb.journal import read_json, read_jsonl_numbered

    path = Path(path)
    summary_path, results_path = path / SUMMARY, path / RESULTS
    if not summary_path.is_file() or not results_path.is_file():
        raise SsbError(f"{path}: not a finished eval run (needs {SUMMARY} and {RESULTS}; "
                       "rerun `ssb eval` there to finish it)")
    summary = read_json(summary_path, "summary file")  # bounded: size, nesting
    if not isinstance(summary, dict):
        raise DataError("expected a JSON object", path=str(summary_path))
    scores: dict[str, float] = {}
    content: dict[str, str] = {}
    first_line: dict[str, int] = {}
    for line, row in read_jsonl_numbered(results_path, what="results file"):
        pid, samples = row.get("id"), row.get("samples")
        if not isinstance(pid, str):
            raise DataError("missing or non-string 'id'", path=str(results_path), line=line,
                            field="id")
        if pid in first_line:  # two rows for one problem would weigh it twice
            raise DataError(f"a second row for id {pid!r} (first on line {first_line[pid]})",
                            path=str(results_path), line=line, field="id")
        first_line[pid] = line
        if not isinstance(samples, list) or not samples or not all(
                isinstance(s, dict) and isinstance(s.get("correct"), bool) for s in samples):
            raise DataError("'samples' must be a non-empty list of objects with a boolean "
                            "'correct'", path=str(results_path), line=line, field="samples")
        scores[pid] = sum(s["correct"] for s in samples) / len(samples)
        content[pid] = _content_hash(row.get("question"), row.get("gold"))
    return RunResults(path, summary, scores, content)


def _content_hash(question: Any, gold: Any) -> str:
    import hashlib

    blob = json.dumps([question, gold], ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8", "surrogatepass")).hexdigest()


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
    # Pairs are (id, content): the same id over a different question or gold is another problem.
    for r in runs[1:]:
        differ = [pid for pid in shared if r.content.get(pid) != runs[0].content.get(pid)]
        if differ:
            raise SsbError(f"{r.path} and {runs[0].path} hold different problems under the same "
                           f"id ({len(differ)} of {len(shared)}, e.g. {differ[0]!r}: question or "
                           "gold differs); compare runs over the same source")
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
            "truncation_rate": r.summary.get("truncation_rate"),
            "mean_response_tokens": r.summary.get("mean_response_tokens"),
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
