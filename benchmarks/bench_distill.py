"""Distillation memory, storage, speed and fidelity, each as a ratio measured in one run.

1. Teacher store size: bytes/token of the top-k store on disk vs dense fp32 (vocab 151,936).
2. Peak memory of one training step (collate + teacher + student + loss + backward + optimizer)
   with the reference code's dense-teacher collator (a [batch, max_length, vocab] fp32 teacher
   tensor, padded to full length, plus full-sequence student logits) vs ours (hidden states at
   solution positions, chunked LM head), on a random-init tiny-hidden model with the real vocab
   size.  Each variant runs in a fresh subprocess; the peak is sampled from /proc RSS.
3. Step time: online-teacher distillation step vs a plain LoRA SFT step (cross-entropy only);
   and a step whose teacher rows come from the TeacherCache (epochs 2+) vs one that recomputes
   them; and that step in bf16 vs fp32 on the CPU; all on the fidelity model below (records:
   ``SSB_BENCH_CURATED``, a curated.jsonl, or GSM8K train with its reference solutions as hints).
4. Fidelity: KD loss from the top-k store vs the exact loss, at T=1 and T=2 (the base model on
   the student view vs on the hinted view: the loss SSB starts from).  ``--quick`` uses the
   tiny random model (near-uniform: the numbers mean little); the full run uses the real small
   model (Qwen2.5-Coder-0.5B, vocab 151,936; first use converts the GGUF, ~1 min).  Override
   with ``SSB_BENCH_FIDELITY_MODEL`` (a model reference, ``default`` or ``tiny``).

    .venv/bin/python benchmarks/bench_distill.py [--quick] [--json PATH]
    .venv/bin/python -m benchmarks distill [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # run as a script: `benchmarks` must be importable
    sys.path.insert(0, str(REPO))

QWEN_VOCAB = 151_936
SYSTEM = "You are a helpful math tutor. Reason step by step and put the final answer in \\boxed{}."


# -- data --------------------------------------------------------------------------------------

def gsm8k_records(n: int):
    """Curated-style records from GSM8K train: the reference solution is the target and the
    teacher sees it as a hint (as a curated record's correct rollout would be)."""
    from ssb.records import CuratedRecord, Rollout

    shared = Path(os.environ.get("SSB_SHARED_DATA", REPO.parent / "shared" / "data"))
    lines = (shared / "gsm8k" / "train.jsonl").read_text().splitlines()[:n]
    records = []
    for i, line in enumerate(lines):
        row = json.loads(line)
        steps, answer = row["answer"].split("####")
        solution = (steps.replace("<<", "").replace(">>", " ").strip()
                    + f"\nThe answer is \\boxed{{{answer.strip()}}}.")
        hinted = (f"{row['question']}\n\nA correct response:\n{solution}\n\nA response marked "
                  "wrong:\nThe answer is \\boxed{3}.\n\nWrite a complete step-by-step solution.")
        ro = Rollout(text=solution, num_tokens=1, finish_reason="stop", extracted="", correct=True)
        records.append(CuratedRecord(
            id=f"gsm8k-{i}", question=row["question"], gold=answer.strip(), dataset="gsm8k",
            domain="gsm8k", template="bench@1",
            student_messages=[{"role": "system", "content": SYSTEM},
                              {"role": "user", "content": row["question"]}],
            teacher_messages=[{"role": "system", "content": SYSTEM},
                              {"role": "user", "content": hinted}],
            solution=solution, correct_rollout=ro, wrong_rollout=ro,
            rollout_answers=[], rollout_correct=[]))
    return records


def real_vocab_model(path: Path, hidden: int, layers: int) -> Path:
    """The tiny ChatML tokenizer with a random-init Qwen2 whose vocabulary is Qwen's 151,936."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from ssb.testing import build_tokenizer

    if (path / "config.json").exists():
        return path
    path.mkdir(parents=True, exist_ok=True)
    tok = build_tokenizer(path)
    config = Qwen2Config(vocab_size=QWEN_VOCAB, hidden_size=hidden, intermediate_size=2 * hidden,
                         num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2,
                         tie_word_embeddings=False,
                         pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
    torch.manual_seed(0)
    Qwen2ForCausalLM(config).save_pretrained(str(path))
    return path


def aligned(model_dir: Path, n: int, max_length: int):
    from ssb.stages.distill.alignment import align_records
    from ssb.models import load_tokenizer

    tok = load_tokenizer(str(model_dir))
    examples, _ = align_records(tok, gsm8k_records(n), max_length=max_length)
    return tok, examples


def lora_model(model_dir: Path, seed: int = 0):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    base = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32)
    return get_peft_model(base, LoraConfig(r=16, lora_alpha=16, task_type="CAUSAL_LM",
                                           target_modules=["q_proj", "k_proj", "v_proj",
                                                           "o_proj", "gate_proj", "up_proj",
                                                           "down_proj"]))


# -- 1. store size -----------------------------------------------------------------------------

def bench_store_size(tmp: Path, k: int = 64, tokens: int = 2048) -> dict:
    import torch

    from ssb.stages.distill.teacher import TopKStoreWriter, topk_from_logits

    writer = TopKStoreWriter(tmp / "store", {"top_k": k, "temperature": 2.0,
                                             "vocab_size": QWEN_VOCAB})
    g = torch.Generator().manual_seed(0)
    for i in range(tokens // 256):
        rows = topk_from_logits(torch.randn(256, QWEN_VOCAB, generator=g), k, 2.0)
        writer.add(f"ex{i}", list(range(256)), rows)
    index = writer.finish()
    on_disk = sum((tmp / "store" / s).stat().st_size for s in index["shards"])
    return {"k": k, "store_bytes_per_token": on_disk / tokens,
            "dense_fp32_bytes_per_token": 4 * QWEN_VOCAB}


# -- 2. peak memory (child processes) ----------------------------------------------------------

def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class PeakSampler:
    """Samples RSS every millisecond in a thread; ``peak`` is the highest value seen."""

    def __init__(self):
        self.peak = _rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, _rss())
            time.sleep(0.001)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _rss())


def child_memory(variant: str, model_dir: str, batch: int, max_length: int) -> dict:
    """One training step of ``variant`` in this (fresh) process; returns the RSS growth."""
    import numpy as np
    import torch
    import torch.nn.functional as F

    from ssb.stages.distill.batching import DistillCollator, pad_view
    from ssb.stages.distill.step import distill_step, resolve_loss_terms

    torch.set_num_threads(2)
    tok, examples = aligned(Path(model_dir), batch, max_length)
    examples = examples[:batch]
    model = lora_model(Path(model_dir)).train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    T = 2.0
    tmp = Path(tempfile.mkdtemp())
    if variant == "reference":
        # The reference stores each example's dense teacher logits (fp32, [len, V]) on disk.
        with torch.no_grad():
            for i, e in enumerate(examples):
                logits = model.get_base_model()(input_ids=torch.tensor([e.teacher_ids])).logits[0]
                np.save(tmp / f"t{i}.npy", logits.numpy())
                del logits
    import gc

    gc.collect()
    base = _rss()
    t0 = time.perf_counter()
    with PeakSampler() as sampler:
        if variant == "reference":
            # collator: dense teacher [B, max_length, V] fp32 padded to full length, solution
            # rows moved to the student's positions; student logits for every position.
            student = pad_view([e.student_ids for e in examples],
                               [e.student_prompt_len for e in examples], tok.pad_token_id)
            B, L = batch, max_length
            ids = torch.full((B, L), tok.pad_token_id)
            mask = torch.zeros((B, L), dtype=torch.bool)
            teacher = torch.zeros((B, L, QWEN_VOCAB), dtype=torch.float32)
            for b, e in enumerate(examples):
                ids[b, :len(e.student_ids)] = torch.tensor(e.student_ids)
                t_logits = torch.from_numpy(np.load(tmp / f"t{b}.npy"))
                n = e.num_solution_tokens
                sp, tp = e.student_prompt_len, e.teacher_prompt_len
                teacher[b, sp - 1:sp - 1 + n] = t_logits[tp - 1:tp - 1 + n]
                mask[b, sp - 1:sp - 1 + n] = True
            logits = model(input_ids=ids, attention_mask=(ids != tok.pad_token_id).long()).logits
            s_logp = F.log_softmax(logits / T, -1)
            t_logp = F.log_softmax(teacher / T, -1)
            kl = (t_logp.exp() * (t_logp - s_logp)).sum(-1)
            loss = (kl * mask).sum() / mask.sum() * T * T
            del student
        else:
            terms = resolve_loss_terms("kl=1")
            batch_t = DistillCollator(tok.pad_token_id, teacher="online")(examples)
            loss = distill_step(model, batch_t, terms, temperature=T, teacher="online",
                                logit_chunk=256).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
    return {"variant": variant, "peak_rss_growth": sampler.peak - base,
            "seconds": time.perf_counter() - t0,
            "solution_tokens": sum(e.num_solution_tokens for e in examples)}


def bench_memory(model_dir: Path, batch: int, max_length: int) -> dict:
    out = {}
    for variant in ("reference", "ours"):
        proc = subprocess.run(
            [sys.executable, __file__, "--_child", variant, "--_model", str(model_dir),
             "--batch", str(batch), "--max-length", str(max_length)],
            capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"{variant} child failed:\n{proc.stderr[-3000:]}")
        out[variant] = json.loads(proc.stdout.strip().splitlines()[-1])
    return out


# -- 3. step time ------------------------------------------------------------------------------

def bench_step_time(model_dir: Path, batch: int, max_length: int, repeats: int = 2) -> dict:
    import statistics

    import torch

    from ssb.stages.distill.batching import DistillCollator
    from ssb.stages.distill.step import distill_step, resolve_loss_terms

    tok, examples = aligned(model_dir, batch, max_length)
    model = lora_model(model_dir).train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    setups = {
        "online-teacher KD": ("online", resolve_loss_terms("kl=1")),
        "plain LoRA SFT": ("none", resolve_loss_terms("ce=1")),
    }
    times: dict[str, list[float]] = {name: [] for name in setups}
    for r in range(repeats + 1):  # the first round warms up
        for name, (teacher, terms) in setups.items():
            t0 = time.perf_counter()
            b = DistillCollator(tok.pad_token_id, teacher=teacher)(examples)
            distill_step(model, b, terms, temperature=2.0, teacher=teacher).loss.backward()
            opt.step()
            opt.zero_grad()
            if r:
                times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(v) for name, v in times.items()}


def study_lora(ref, dtype: str):
    """The studies' LoRA (r=32, alpha 32, every projection) on ``ref`` loaded in ``dtype``, in
    train mode, seeded, with its AdamW: what the step-time benchmarks train."""
    import torch
    from peft import LoraConfig, get_peft_model

    from ssb.models import load_causal_lm

    torch.manual_seed(0)
    lm = get_peft_model(load_causal_lm(ref, dtype=dtype), LoraConfig(
        r=32, lora_alpha=32, task_type="CAUSAL_LM", target_modules=[
            "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])).train()
    return lm, torch.optim.AdamW([p for p in lm.parameters() if p.requires_grad], lr=1e-5)


def bench_teacher_cache(model: str, records, batch: int, max_length: int,
                        repeats: int = 2) -> dict:
    """One training step (collate, teacher, student, loss, backward, AdamW) with the online
    teacher recomputed (epoch 1, or ``--teacher-cache-gib 0``) vs read from the TeacherCache
    (epochs 2 and later).  The study's LoRA (r=32, every projection), fp32."""
    import statistics


    from ssb.models import load_tokenizer, resolve
    from ssb.stages.distill.alignment import align_records
    from ssb.stages.distill.batching import DistillCollator
    from ssb.stages.distill.step import distill_step, resolve_loss_terms
    from ssb.stages.distill.teacher import TeacherCache

    ref = resolve(model)
    tok = load_tokenizer(ref)
    examples, _ = align_records(tok, records[:batch], max_length=max_length)
    lm, opt = study_lora(ref, "float32")
    terms = resolve_loss_terms("kl=1,ce=0")
    cache = TeacherCache(1 << 34)
    setups = {"recomputed": None, "cached": cache}
    times: dict[str, list[float]] = {name: [] for name in setups}
    for r in range(repeats + 1):  # the first round warms up (and fills the cache)
        for name, c in setups.items():
            t0 = time.perf_counter()
            b = DistillCollator(tok.pad_token_id, teacher="online")(examples)
            distill_step(lm, b, terms, temperature=2.0, teacher="online",
                         teacher_cache=c).loss.backward()
            opt.step()
            opt.zero_grad()
            if r:
                times[name].append(time.perf_counter() - t0)
    assert cache.hits >= repeats, cache.summary()
    return {"recomputed": statistics.median(times["recomputed"]),
            "cached": statistics.median(times["cached"]),
            "teacher_tokens": sum(len(e.teacher_ids) for e in examples),
            "student_tokens": sum(len(e.student_ids) for e in examples),
            "solution_tokens": sum(e.num_solution_tokens for e in examples)}


def bench_cpu_dtype(model: str, records, batch: int, max_length: int, repeats: int = 2) -> dict:
    """One training step (collate, online teacher, student, loss, backward, AdamW) with the
    weights in fp32 (``ssb distill --dtype auto`` on a CPU) vs bf16 (``--dtype bfloat16``: bf16
    weights under CPU autocast, as the trainer runs it), the teacher recomputed every step; the
    study's LoRA (r=32, every projection).  Also the first step's loss in each, before any update:
    how far bf16 moves the objective itself."""
    import gc
    import statistics

    import torch

    from ssb.models import load_tokenizer, resolve
    from ssb.stages.distill.alignment import align_records
    from ssb.stages.distill.batching import DistillCollator
    from ssb.stages.distill.step import distill_step, resolve_loss_terms

    ref = resolve(model)
    tok = load_tokenizer(ref)
    examples, _ = align_records(tok, records[:batch], max_length=max_length)
    terms = resolve_loss_terms("kl=1,ce=0")
    out: dict[str, dict] = {}
    for dtype in ("float32", "bfloat16"):
        lm, opt = study_lora(ref, dtype)
        times, first = [], None
        for r in range(repeats + 1):  # the first step warms up
            t0 = time.perf_counter()
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == "bfloat16"):
                b = DistillCollator(tok.pad_token_id, teacher="online")(examples)
                loss = distill_step(lm, b, terms, temperature=2.0, teacher="online").loss
            loss.backward()
            opt.step()
            opt.zero_grad()
            if first is None:
                first = float(loss.detach())
            if r:
                times.append(time.perf_counter() - t0)
        out[dtype] = {"seconds": statistics.median(times), "first_loss": first}
        del lm, opt, loss, b
        gc.collect()
    return {**out, "teacher_tokens": sum(len(e.teacher_ids) for e in examples),
            "student_tokens": sum(len(e.student_ids) for e in examples)}


def curated_records(path: str):
    """Records of a real curated.jsonl (``SSB_BENCH_CURATED``): the teacher views SSB trains on."""
    from ssb.records import CuratedRecord

    lines = Path(path).read_text(encoding="utf-8").splitlines()
    return [CuratedRecord.from_dict(json.loads(line)) for line in lines if line.strip()]


# -- 4. fidelity -------------------------------------------------------------------------------

def bench_fidelity(model: str, n: int, max_length: int, ks=(16, 64, 256)) -> list[dict]:
    """Exact KD loss (dense teacher logits) vs the loss from a store round trip (top-k, float16
    log-probs, exact tail) for the base model: student view vs hinted teacher view."""
    import torch

    from ssb.stages.distill.alignment import align_records
    from ssb.stages.distill.batching import pad_view
    from ssb.stages.distill.forward import body_hidden_at
    from ssb.losses import LossInputs, TopKTeacher, forward_kl
    from ssb.models import load_causal_lm, load_tokenizer, resolve
    from ssb.stages.distill.teacher import TopKRows, TopKStore, TopKStoreWriter, topk_from_logits

    ref = resolve(model)
    tok = load_tokenizer(ref)
    examples, _ = align_records(tok, gsm8k_records(n), max_length=max_length)
    lm = load_causal_lm(ref, dtype="float32").eval()
    with torch.no_grad():
        logits = {}
        for side in ("teacher", "student"):
            view = pad_view([getattr(e, f"{side}_ids") for e in examples],
                            [getattr(e, f"{side}_prompt_len") for e in examples], tok.pad_token_id)
            hidden = body_hidden_at(lm, view["input_ids"], view["attention_mask"],
                                    view["position_ids"], view["pred_index"])
            logits[side] = lm.get_output_embeddings()(hidden)
    targets = torch.tensor([t for e in examples for t in e.solution_ids])
    rows = []
    for T in (1.0, 2.0):
        exact = forward_kl(LossInputs(logits["student"], targets, teacher_logits=logits["teacher"],
                                      temperature=T)).item()
        for k in ks:
            tmp = Path(tempfile.mkdtemp())
            writer = TopKStoreWriter(tmp, {"top_k": k, "temperature": T,
                                           "vocab_size": logits["teacher"].shape[-1]})
            top = topk_from_logits(logits["teacher"], k, T)
            start = 0
            for e in examples:
                stop = start + e.num_solution_tokens
                writer.add(e.id, e.solution_ids, TopKRows(
                    top.indices[start:stop], top.log_probs[start:stop], top.tail_log_mass[start:stop]))
                start = stop
            writer.finish()
            store = TopKStore(tmp)
            stored = [store.rows(e.id, e.solution_ids) for e in examples]
            teacher = TopKTeacher(torch.cat([r.indices for r in stored]).long(),
                                  torch.cat([r.log_probs for r in stored]).float(),
                                  torch.cat([r.tail_log_mass for r in stored]), T)
            value = forward_kl(LossInputs(logits["student"], targets, teacher_topk=teacher,
                                          temperature=T)).item()
            rows.append({"T": T, "k": k, "exact": exact, "store": value,
                         "rel_error": (value - exact) / exact, "tokens": int(targets.numel())})
    return rows


# -- harness interface -------------------------------------------------------------------------

NAME = "distill"
DESCRIPTION = ("distillation: store bytes/token vs dense, step peak memory vs the reference "
               "collator, KD step time vs SFT, cached vs recomputed teacher, store KD loss vs "
               "exact")


def run(quick: bool) -> list[dict]:
    batch, max_length, hidden, layers = 2, 192, 64, 2
    fidelity_model = os.environ.get("SSB_BENCH_FIDELITY_MODEL", "tiny" if quick else "default")
    fidelity_records = 2
    rows: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        model_dir = real_vocab_model(tmp / "real-vocab", hidden, layers)

        size = bench_store_size(tmp)
        rows.append({
            "metric": f"teacher store bytes/token (top-{size['k']}, vocab 151,936)",
            "ours": size["store_bytes_per_token"], "baseline": size["dense_fp32_bytes_per_token"],
            "ratio": size["store_bytes_per_token"] / size["dense_fp32_bytes_per_token"],
            "unit": "bytes/token", "higher_is_better": False,
            "note": "baseline: dense fp32 logits per token (the reference stores those)",
        })

        mem = bench_memory(model_dir, batch, max_length)
        ref, ours = mem["reference"], mem["ours"]
        rows.append({
            "metric": "peak RSS growth of one training step",
            "ours": ours["peak_rss_growth"] / 2**20, "baseline": ref["peak_rss_growth"] / 2**20,
            "ratio": ours["peak_rss_growth"] / ref["peak_rss_growth"], "unit": "MiB",
            "higher_is_better": False,
            "note": (f"baseline: the reference collator (dense [B,L,V] fp32 teacher, full "
                     f"logits); batch {batch}, max_length {max_length}, hidden {hidden}, vocab "
                     f"151,936; step {ours['seconds']:.2f} s vs {ref['seconds']:.2f} s"),
        })

        times = bench_step_time(model_dir, batch, max_length)
        kd, sft = times["online-teacher KD"], times["plain LoRA SFT"]
        rows.append({
            "metric": "online-teacher KD step time",
            "ours": kd, "baseline": sft, "ratio": kd / sft, "unit": "s",
            "higher_is_better": False,
            "note": ("baseline: a plain LoRA SFT step (cross-entropy) on the same model and "
                     "batch; median of 2; a tiny-hidden model is LM-head bound"),
        })

        if fidelity_model == "tiny":
            from ssb.testing import build_tiny_model

            fid_model = str(build_tiny_model(tmp / "tiny"))
        else:
            fid_model = fidelity_model

        curated = os.environ.get("SSB_BENCH_CURATED")
        records = curated_records(curated) if curated else gsm8k_records(4)
        cache = bench_teacher_cache(fid_model, records, 4, 1536)
        gsm8k_hints = "GSM8K train (reference solutions as hints)"
        rows.append({
            "metric": "online-teacher KD step, teacher rows cached (epochs 2+)",
            "ours": cache["cached"], "baseline": cache["recomputed"],
            "ratio": cache["cached"] / cache["recomputed"], "unit": "s",
            "higher_is_better": False,
            "note": (f"baseline: the same step recomputing the teacher (epoch 1); model "
                     f"{fidelity_model}, batch 4 of {curated or gsm8k_hints}: "
                     f"{cache['teacher_tokens']} teacher / "
                     f"{cache['student_tokens']} student / {cache['solution_tokens']} solution "
                     "tokens; LoRA r=32 on every projection, fp32; median of 2"),
        })
        dt = bench_cpu_dtype(fid_model, records, 4, 1536)
        f32, b16 = dt["float32"], dt["bfloat16"]
        rows.append({
            "metric": "online-teacher KD step in bf16 on the CPU (--dtype bfloat16)",
            "ours": b16["seconds"], "baseline": f32["seconds"],
            "ratio": b16["seconds"] / f32["seconds"], "unit": "s", "higher_is_better": False,
            "note": (f"baseline: the same step in fp32 (--dtype auto on a CPU); model "
                     f"{fidelity_model}, batch 4 of {curated or gsm8k_hints}: "
                     f"{dt['teacher_tokens']} teacher / {dt['student_tokens']} student tokens; "
                     f"teacher recomputed; LoRA r=32 on every projection; median of 2; first "
                     f"loss {b16['first_loss']:.5f} (bf16) vs {f32['first_loss']:.5f} (fp32)"),
        })
        for r in bench_fidelity(fid_model, fidelity_records, 320):
            rows.append({
                "metric": f"KD loss from the top-{r['k']} store, T={r['T']:g}",
                "ours": r["store"], "baseline": r["exact"], "ratio": r["store"] / r["exact"],
                "unit": "KL x T^2", "higher_is_better": None,
                "note": (f"baseline: exact loss from dense teacher logits; model "
                         f"{fidelity_model}, {r['tokens']} solution tokens of "
                         f"{fidelity_records} GSM8K records; ratio 1 is perfect"),
            })
    return rows


def main() -> int:
    if "--_child" in sys.argv:  # one memory variant, in a fresh process (see bench_memory)
        ap = argparse.ArgumentParser()
        ap.add_argument("--batch", type=int, default=2)
        ap.add_argument("--max-length", type=int, default=192)
        ap.add_argument("--_child")
        ap.add_argument("--_model")
        args = ap.parse_args()
        print(json.dumps(child_memory(args._child, args._model, args.batch, args.max_length)))
        return 0
    from benchmarks.harness import standalone

    return standalone(sys.modules[__name__])


if __name__ == "__main__":
    sys.exit(main())
