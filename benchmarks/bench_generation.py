"""Rollout throughput of the llama.cpp backend: batched decoding vs one sequence at a time.

* ours: the ssb llama.cpp backend at its defaults (``n_parallel`` sequences advanced by every
  ``llama_decode`` call, see ``ssb_backends.llama_batched``);
* baseline: a plain loop written here, one ``Llama.create_completion`` per rollout (prompt
  reused from llama-cpp-python's KV prefix cache), on the very same loaded model, with the same
  threads, chat template, sampling settings and per-rollout seeds.

Aggregate tokens/s (completion tokens of all rollouts / wall seconds) on GSM8K questions with
the math-tutor system prompt, the embedded small model, the backend at its defaults.  Four
workloads, each with the settings ssb uses for it (read from ``CurateConfig``/``EvalConfig``):
curate's rollouts (several problems x K samples, the paper's T=0.8 top-k 50); curate's hinted
teacher (as many hinted prompts as one default curate batch selects, about a third of it, at the
teacher's T=0.4; the prompt holds a correct and a wrong attempt, here the GSM8K reference
solution and a copy with its answer changed); eval (one default eval batch of problems, greedy);
and ``ssb generate -n 8 -t 0.8`` (one prompt, 8 samples, generate's default top-p 1 / top-k off:
every rollout starts together, so the batch drains at the end).  ``--top-p 0.95`` (no top-k) is the costly case: llama.cpp's
top-p sampler sorts the whole 151,936-token vocabulary for every token, ~5-9 ms here, in both
methods; ``benchmarks/generation_sweep.py --top-k 0 --top-p 0.95`` measures it.  The two
methods run ABBA (ours, baseline on the first half of the problems, then baseline, ours on the
second) so that a neighbour's load drifting during the run hits both.  Model load is excluded.  The note
says how many rollouts produced exactly the baseline's text (same seeds: they differ only where
batched float rounding flips a near-tie) and the load average around the measurement.

Prompt-lookup (n-gram) speculative decoding, on the hinted-teacher workload, where the model
mostly re-types the correct attempt that sits in its prompt: two more rows compare the same plain
loop with and without llama-cpp-python's ``LlamaPromptLookupDecoding`` (the continuation of the
last matching n-gram of prompt + output proposed as ``num_pred_tokens`` draft tokens, evaluated
in one call and kept while the sampled token equals the draft), at the teacher's sampling and
greedy, on a second ``Llama`` over the same GGUF (the draft path needs logits for every token, a
load-time setting).  Each sampled token is still drawn from the model's own distribution given
the accepted prefix, one draw per token in the same order, so a seeded sample repeats the
plain loop's draws: texts differ only where the multi-token evaluation rounds differently.  The
notes also give the lookup loop against the backend's default (batched) from the teacher row of
the same run: that is the comparison that decides the default.  ssb's batched decoder has no
draft path (a slot decodes one row per step; see ``ssb_backends.llama_batched``), so prompt
lookup is measured on the one-at-a-time loop, where llama-cpp-python has it.

    .venv/bin/python benchmarks/bench_generation.py [--quick]
    .venv/bin/python -m benchmarks generation [--quick]
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
GSM8K = Path(os.environ.get("SSB_SHARED_DATA", REPO.parent / "shared" / "data")) / "gsm8k" \
    / "train.jsonl"
FALLBACK = [
    "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in "
    "May. How many clips did Natalia sell altogether in April and May?",
    "Weng earns $12 an hour for babysitting. Yesterday, she just did 50 minutes of babysitting. "
    "How much did she earn?",
]

NAME = "generation"
DESCRIPTION = ("llama.cpp rollout tokens/s: batched decoding (the backend's default) vs a plain "
               "one-at-a-time create_completion loop, same model, threads and sampling")

THREADS = int(os.environ.get("SSB_BENCH_THREADS", os.cpu_count() or 2))
LOOKUP_TOKENS = 10  # llama-cpp-python's default num_pred_tokens (max_ngram_size 2)


def questions(k: int) -> list[str]:
    return [q for q, _ in rows(k)]


def rows(k: int) -> list[tuple[str, str]]:
    """(question, reference solution without calculator annotations) of the first k rows."""
    import re

    if GSM8K.is_file():
        out = []
        with open(GSM8K, encoding="utf-8") as f:
            for line in f:
                row = json.loads(line)
                answer = re.sub(r"<<[^>]*>>", "", row["answer"])
                head, _, gold = answer.rpartition("####")
                out.append((row["question"], f"{head.strip()}\n\\boxed{{{gold.strip()}}}"))
                if len(out) == k:
                    break
        return out
    return [(FALLBACK[i % len(FALLBACK)], "\\boxed{72}") for i in range(k)]


def teacher_conversations(k: int) -> list[list[dict]]:
    """Hinted-teacher prompts as curate builds them (the gsm8k default template): the reference
    solution as the correct attempt, the same with its last number changed as the wrong one."""
    import re

    from ssb.plugins import get_registry

    template = get_registry().template("gsm8k")
    convs = []
    for question, solution in rows(k):
        wrong = re.sub(r"\\boxed\{([^}]*)\}", lambda m: "\\boxed{" + m.group(1) + "1}", solution)
        convs.append(template.teacher_messages(question, solution, wrong))
    return convs


def plain_loop(backend, conversations, params, llm=None) -> list[list[tuple[str, int]]]:
    """One ``create_completion`` per rollout on the backend's own ``Llama`` (or ``llm``): the
    plain one-sequence-at-a-time loop, with the backend's prompts, stop strings and seeds."""
    from ssb_backends.common import conversation_key, derive_seed

    llm = llm if llm is not None else backend.llm
    out = []
    for i, conv in enumerate(conversations):
        prompt, stop, criteria = backend._prompt(conv, params, i)
        key = conversation_key(conv)
        per = []
        for j in range(params.n):
            res = llm.create_completion(
                prompt=prompt, temperature=params.temperature, top_p=params.top_p,
                top_k=params.top_k, min_p=0.0, typical_p=1.0, repeat_penalty=1.0,
                presence_penalty=0.0, frequency_penalty=0.0, max_tokens=params.max_new_tokens,
                stop=stop or None, stopping_criteria=criteria,
                seed=derive_seed(params.seed, key, j))
            per.append((res["choices"][0]["text"], int(res["usage"]["completion_tokens"])))
        out.append(per)
    return out


def _ours(backend, conversations, params) -> list[list[tuple[str, int]]]:
    return [[(c.text, c.num_tokens) for c in per]
            for per in backend.generate(conversations, params)]


def lookup_llm(backend):
    """A second ``Llama`` on the backend's GGUF, its settings, with llama-cpp-python's
    prompt-lookup draft model (``LOOKUP_TOKENS`` draft tokens, n-grams of up to 2)."""
    import llama_cpp
    from llama_cpp.llama_speculative import LlamaPromptLookupDecoding

    # logits_all=True as well: llama-cpp-python 0.3.36 computes every token's logits when it has
    # a draft model but sizes its score buffer by the logits_all argument (n_batch rows
    # without it), so a sequence past 512 tokens fails ("could not broadcast ... into shape").
    return llama_cpp.Llama(model_path=backend.model_path, n_ctx=backend.n_ctx,
                           n_threads=THREADS, n_threads_batch=THREADS, verbose=False,
                           logits_all=True,
                           draft_model=LlamaPromptLookupDecoding(num_pred_tokens=LOOKUP_TOKENS))


def measure(backend, conversations, params, ours=None, base=None) -> dict:
    """ABBA over two halves of ``conversations``: tokens, seconds and texts per method
    (``ours``: the backend's generate, ``base``: the plain loop, unless given)."""
    methods = {"ours": ours or _ours, "base": base or plain_loop}
    half = max(1, len(conversations) // 2)
    parts = [conversations[:half], conversations[half:]] if len(conversations) > 1 \
        else [conversations]
    order = [("ours", 0), ("base", 0), ("base", 1), ("ours", 1)] if len(parts) == 2 \
        else [("ours", 0), ("base", 0)]
    acc = {m: {"tokens": 0, "seconds": 0.0, "texts": {}} for m in ("ours", "base")}
    for method, k in order:
        fn = methods[method]
        t = time.perf_counter()
        res = fn(backend, parts[k], params)
        acc[method]["seconds"] += time.perf_counter() - t
        acc[method]["tokens"] += sum(n for per in res for _, n in per)
        acc[method]["texts"][k] = [text for per in res for text, _ in per]
    same = total = 0
    for k in acc["ours"]["texts"]:
        a, b = acc["ours"]["texts"][k], acc["base"]["texts"][k]
        same += sum(x == y for x, y in zip(a, b))
        total += len(a)
    return {"ours": acc["ours"], "base": acc["base"], "same": same, "total": total}


def workloads(quick: bool, max_tokens: int | None = None) -> list[tuple[str, list, Any]]:
    """(label, conversations, SamplingParams) of each workload, with the settings ssb uses for
    it (read from ``CurateConfig``/``EvalConfig``); benchmarks/bench_engines.py runs the same."""
    from ssb.prompts import MATH_TUTOR_SYSTEM
    from ssb.records import SamplingParams
    from ssb.stages.curate import CurateConfig
    from ssb.stages.evaluate import EvalConfig

    max_tokens = max_tokens or (96 if quick else 256)
    curate = CurateConfig.__dataclass_fields__
    curate_sampling = {"temperature": curate["temperature"].default,
                       "top_k": curate["top_k"].default, "top_p": curate["top_p"].default}
    teacher_sampling = {**curate_sampling, "temperature": curate["teacher_temperature"].default}
    # How many hinted prompts one curate batch sends at once: the batch's selected problems,
    # about a third of CurateConfig's default batch (the arithmetic study kept 157 of 240).
    n_teacher = max(2, curate["batch_size"].default // 3)
    eval_batch = EvalConfig.__dataclass_fields__["batch_size"].default
    specs = [
        # (label, prompts, samples per prompt, sampling, conversations builder)
        ("curate rollouts", 4 if quick else 8, curate["rollouts"].default, curate_sampling,
         None),
        ("curate hinted teacher", 4 if quick else n_teacher, 1, teacher_sampling,
         teacher_conversations),
        ("eval, greedy", 8 if quick else eval_batch, 1,
         {"temperature": 0.0, "top_k": 0, "top_p": 1.0}, None),
        ("generate -n 8 -t 0.8", 1, 8, {"temperature": 0.8, "top_k": 0, "top_p": 1.0}, None),
    ]
    qs = questions(max(p for _, p, _, _, _ in specs))
    out = []
    for label, n_prompts, n, sampling, build in specs:
        convs = build(n_prompts) if build is not None else [
            [{"role": "system", "content": MATH_TUTOR_SYSTEM}, {"role": "user", "content": q}]
            for q in qs[:n_prompts]]
        out.append((f"{label} ({n_prompts} prompt(s) x {n} samples)", convs,
                    SamplingParams(n=n, max_new_tokens=max_tokens, seed=0, **sampling)))
    return out


def run(quick: bool) -> list[dict]:
    from ssb.models import resolve
    from ssb.plugins import get_registry

    ref = resolve("default")
    # The backend at its defaults (n_parallel included), as curate and eval create it.
    backend = get_registry().backend("llama.cpp").create(ref.location, n_threads=THREADS,
                                                          n_ctx=2048)
    rows = []
    teacher = None
    try:
        for label, convs, params in workloads(quick):
            row = rate_row(backend, convs, params, f"tokens/s, {label}", 2.0,
                           f"n_parallel={backend.n_parallel}", "create_completion per rollout")
            rows.append(row)
            if label.startswith("curate hinted teacher"):
                teacher = (label, convs, params, row["ours"])
        if teacher is not None:
            rows += lookup_rows(backend, *teacher)
    finally:
        backend.close()
    return rows


def rate_row(backend, convs: list, params: Any, metric: str, target: float, ours_is: str,
             base_is: str, ours=None) -> dict:
    """Measure (ABBA, :func:`measure`) and make the row: tokens/s of ``ours`` (default: the
    backend's generate) against the plain loop, ``target`` times the baseline."""
    load_before = os.getloadavg()
    m = measure(backend, convs, params, ours=ours)
    load_after = os.getloadavg()
    ours_rate = m["ours"]["tokens"] / m["ours"]["seconds"]
    base_rate = m["base"]["tokens"] / m["base"]["seconds"]
    return {
        "metric": metric,
        "ours": ours_rate, "baseline": base_rate, "ratio": ours_rate / base_rate,
        "unit": "tok/s", "higher_is_better": True, "target": target * base_rate,
        "note": (f"ours: {ours_is}, {m['ours']['tokens']} tokens in "
                 f"{m['ours']['seconds']:.1f} s; baseline: {base_is}, {m['base']['tokens']} "
                 f"tokens in {m['base']['seconds']:.1f} s; max {params.max_new_tokens} new "
                 f"tokens, T={params.temperature}, top_k={params.top_k}, top_p={params.top_p}, "
                 f"{THREADS} threads; {m['same']}/{m['total']} rollouts with the baseline's "
                 f"exact text; load average (1/5/15 min) "
                 f"{'/'.join(f'{x:.2f}' for x in load_before)} before, "
                 f"{'/'.join(f'{x:.2f}' for x in load_after)} after"),
    }


def lookup_rows(backend, label: str, convs: list, params: Any, batched: float) -> list[dict]:
    """The teacher workload, plain loop with vs without prompt lookup, sampled as curate's
    teacher and greedy (``batched``: the backend's default tokens/s on it, same run)."""
    from dataclasses import replace

    llm = lookup_llm(backend)
    rows = []
    try:
        def with_lookup(b, c, p):
            return plain_loop(b, c, p, llm=llm)

        greedy = replace(params, temperature=0.0, top_k=0, top_p=1.0)
        for name, p in (("sampled as the teacher", params), ("greedy", greedy)):
            row = rate_row(backend, convs, p,
                           f"tokens/s, {label}, {name}: prompt lookup vs plain, one at a time",
                           1.5, f"create_completion with LlamaPromptLookupDecoding("
                           f"num_pred_tokens={LOOKUP_TOKENS})", "the same loop without it",
                           ours=with_lookup)
            if p is params:
                row["note"] += (f"; against the backend's default (n_parallel="
                                f"{backend.n_parallel}, {batched:.1f} tok/s on the same prompts "
                                f"sampled as the teacher, above): {row['ours'] / batched:.2f}x")
            rows.append(row)
    finally:
        llm.close()
    return rows


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    from benchmarks.harness import standalone

    sys.exit(standalone(sys.modules[__name__]))
