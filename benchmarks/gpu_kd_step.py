"""The KD training step on a GPU, at the paper's scale: step time, tokens/s, peak memory, MFU.

A random-init model with the Qwen2.5-3B-Instruct shape (hidden 2048, 36 layers, 16 heads,
2 KV heads, intermediate 11008, vocab 151,936, tied embeddings; no weights needed), LoRA r=32 on
every projection, bf16 (weights bf16, autocast as the Trainer's ``bf16=True``, LoRA weights and
losses fp32), batch 4 x (prompt 1024 + solution 1024) tokens.  One step = forward, loss,
backward, gradient clipping, AdamW step; the batch is collated once (the Trainer's dataloader
does that off the step) and copied to the device inside the step.  Rows:

* ``sft (hf labels)``: plain LoRA SFT as everyone writes it: ``model(ids, labels=...)``, full
  ``[B, L, V]`` logits, prompt positions masked with -100;
* ``sft (ssb ce)``: the same objective through ssb's step (``--teacher none --loss ce=1``:
  LM head on solution rows only, in chunks);
* ``teacher fwd``: the online teacher alone, no grad (adapter off, teacher view, head on the
  solution rows): the cost the online target allows on top of SFT;
* ``online KD (ssb)``: ``--teacher online --loss kl=1`` at T=2;
* ``offline KD (ssb)``: ``--teacher offline``, top-k rows (k=64) as the store would hand them
  (synthetic values: only their shape matters for speed);
* ``dense KD (reference)``: the paper's public code's way: full-vocabulary logits at every
  position of both models, the teacher's placed at the student's positions in a
  ``[B, L, V]`` fp32 tensor, log-softmax over all of it, KL masked to the solution.

Step time is the median of ``--steps`` (>= 10) after ``--warmup``, timed with CUDA events; peak
memory is ``torch.cuda.max_memory_allocated`` over the variant's steps (weights and optimizer
state included).  MFU = model FLOPs / step time / the card's bf16 matmul peak measured here
(an N x N x N product, best of 3 x 10).  Model FLOPs count the work the objective needs, never
recomputation: student forward (2 per weight per token, attention causal), backward through
the frozen base (input gradients only: 1x forward; LoRA: 2x; attention: 2x), the LM head on
the solution rows only (forward + input gradient), and for KD the teacher forward.  The dense
reference is credited with the same FLOPs as online KD (its full-vocabulary work is waste).

Targets (issue 14), printed as pass/fail: online KD <= 1.1 x (SFT + teacher fwd); offline KD
<= 1.1 x SFT; peak <= SFT + 2 GB; MFU >= 40%.  SFT is the better of the two SFT rows.

    python benchmarks/gpu_kd_step.py --json gpu_kd_step.json           # the GPU run (~1 min on an H200)
    python benchmarks/gpu_kd_step.py --tiny --device cpu --json x.json  # scaled down, CPU
    OUT=gpu-out bash benchmarks/gpu_run.sh   # everything ssb checks on a lent GPU (~3 min)

Results of the H200 run: benchmarks/results/2026-11-28-gpu-h200/README.md.

Needs torch, transformers, peft, accelerate and this repository (no install, no network).
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

QWEN25_3B = dict(hidden=2048, layers=36, heads=16, kv_heads=2, intermediate=11008, vocab=151_936)
TINY = dict(hidden=64, layers=2, heads=4, kv_heads=2, intermediate=128, vocab=2048, batch=2,
            prompt_len=24, solution_len=24, lora_r=4, steps=2, warmup=1, peak_size=256,
            dtype="fp32")
VARIANTS = ("sft_hf", "sft", "teacher_fwd", "online", "offline", "dense_ref")
LABELS = {"sft_hf": "sft (hf labels)", "sft": "sft (ssb ce)", "teacher_fwd": "teacher fwd",
          "online": "online KD (ssb)", "offline": "offline KD (ssb)",
          "dense_ref": "dense KD (reference)"}
TARGETS = {"time_ratio": 1.1, "extra_peak_bytes": 2e9, "mfu": 0.40}


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tiny", action="store_true",
                    help="a scaled-down config for CPU tests (explicit flags still win)")
    for name, default in QWEN25_3B.items():
        ap.add_argument(f"--{name.replace('_', '-')}", type=int, default=None,
                        help=f"model shape (Qwen2.5-3B: {default})")
    ap.add_argument("--batch", type=int, default=None, help="sequences per step (4)")
    ap.add_argument("--prompt-len", type=int, default=None, help="student prompt tokens (1024)")
    ap.add_argument("--teacher-prompt-len", type=int, default=None,
                    help="teacher (hinted) prompt tokens (default: --prompt-len)")
    ap.add_argument("--solution-len", type=int, default=None, help="solution tokens (1024)")
    ap.add_argument("--lora-r", type=int, default=None, help="LoRA rank (32; alpha = rank)")
    ap.add_argument("--lora-dropout", type=float, default=0.05)
    ap.add_argument("--topk", type=int, default=64, help="offline store entries per token")
    ap.add_argument("--temperature", type=float, default=2.0)
    ap.add_argument("--logit-chunk", type=int, default=256,
                    help="solution rows per LM-head/loss chunk (ssb's --logit-chunk)")
    ap.add_argument("--gradient-checkpointing", action=argparse.BooleanOptionalAction,
                    default=False, help="recompute activations in backward (default off, as "
                    "`ssb distill`; on: ~41%% slower, ~5x less memory on an H200)")
    ap.add_argument("--steps", type=int, default=None, help="timed steps per variant (10)")
    ap.add_argument("--warmup", type=int, default=None, help="untimed steps first (3)")
    ap.add_argument("--dtype", choices=("bf16", "fp32"), default=None, help="bf16 (GPU default)")
    ap.add_argument("--device", default="auto", help="auto (cuda if present), cuda, cpu")
    ap.add_argument("--peak-size", type=int, default=None,
                    help="N of the N x N x N matmul measuring the peak (8192)")
    ap.add_argument("--variants", default=",".join(VARIANTS),
                    help=f"comma-separated subset of {', '.join(VARIANTS)}")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, default=None, help="write the raw numbers here")
    args = ap.parse_args(argv)
    defaults = dict(QWEN25_3B, batch=4, prompt_len=1024, solution_len=1024, lora_r=32,
                    steps=10, warmup=3, peak_size=8192, dtype="bf16")
    if args.tiny:
        defaults.update(TINY)
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.teacher_prompt_len is None:
        args.teacher_prompt_len = args.prompt_len
    args.variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = [v for v in args.variants if v not in VARIANTS]
    if unknown:
        ap.error(f"unknown variant(s) {unknown}; choose from {', '.join(VARIANTS)}")
    return args


# -- timing and memory -------------------------------------------------------------------------

class Clock:
    """CUDA events on a GPU (time on the device, no host sync inside the step); wall clock on
    the CPU."""

    def __init__(self, device):
        import torch

        self.cuda = device.type == "cuda"
        self.torch = torch

    def __enter__(self):
        if self.cuda:
            self.start = self.torch.cuda.Event(enable_timing=True)
            self.end = self.torch.cuda.Event(enable_timing=True)
            self.start.record()
        else:
            self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc):
        if self.cuda:
            self.end.record()
            self.end.synchronize()
            self.seconds = self.start.elapsed_time(self.end) / 1e3
        else:
            self.seconds = time.perf_counter() - self.t0


def measure_peak_flops(device, dtype, n: int) -> float:
    """FLOP/s of an n x n x n matmul on this device in this dtype: best of 3 rounds of 10."""
    import torch

    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    best = 0.0
    for _ in range(3):
        with Clock(device) as clock:
            for _ in range(10):
                a @ b
        best = max(best, 10 * 2 * n**3 / clock.seconds)
    del a, b
    return best


# -- model and batches -------------------------------------------------------------------------

def build_model(args, device, dtype):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import Qwen2Config, Qwen2ForCausalLM

    config = Qwen2Config(
        vocab_size=args.vocab, hidden_size=args.hidden, intermediate_size=args.intermediate,
        num_hidden_layers=args.layers, num_attention_heads=args.heads,
        num_key_value_heads=args.kv_heads, max_position_embeddings=32768, rope_theta=1e6,
        rms_norm_eps=1e-6, tie_word_embeddings=True, use_cache=False)
    config._attn_implementation = "sdpa"
    torch.manual_seed(args.seed)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)  # build in the target dtype: no fp32 copy of 3B weights
    try:
        with torch.device(device):
            base = Qwen2ForCausalLM(config)
    finally:
        torch.set_default_dtype(previous)
    base.requires_grad_(False)
    lora = LoraConfig(r=args.lora_r, lora_alpha=args.lora_r, lora_dropout=args.lora_dropout,
                      target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj",
                                      "up_proj", "down_proj"], task_type="CAUSAL_LM")
    model = get_peft_model(base, lora)
    if args.gradient_checkpointing:
        # Non-reentrant: the frozen embeddings' output needs no grad (as ssb's Trainer sets).
        if hasattr(base, "activation_checkpointing_enable"):  # transformers >= 5.x name
            base.activation_checkpointing_enable(
                activation_checkpointing_kwargs={"use_reentrant": False})
        else:
            base.gradient_checkpointing_enable(
                gradient_checkpointing_kwargs={"use_reentrant": False})
    model.train()
    return model, config


class SyntheticStore:
    """Top-k rows shaped like ``ssb.stages.distill.teacher.TopKStore.rows`` (values random: speed only)."""

    def __init__(self, k: int, vocab: int, seed: int):
        self.k, self.vocab, self.seed = k, vocab, seed

    def rows(self, example_id: str, solution_ids):
        import torch

        from ssb.stages.distill.teacher import TopKRows

        g = torch.Generator().manual_seed(self.seed + hash(example_id) % 1000)
        n = len(solution_ids)
        log_probs = torch.log_softmax(torch.randn(n, self.k, generator=g), -1) + math.log(0.95)
        return TopKRows(torch.randint(0, self.vocab, (n, self.k), generator=g, dtype=torch.int32),
                        log_probs.half(), torch.full((n,), math.log(0.05)))


def examples(args):
    import torch

    from ssb.stages.distill.alignment import AlignedExample

    g = torch.Generator().manual_seed(args.seed)
    out = []
    for i in range(args.batch):
        def ids(n):
            return tuple(torch.randint(10, args.vocab, (n,), generator=g).tolist())

        solution = ids(args.solution_len)
        out.append(AlignedExample(
            id=f"ex{i}", teacher_ids=ids(args.teacher_prompt_len) + solution,
            student_ids=ids(args.prompt_len) + solution,
            teacher_prompt_len=args.teacher_prompt_len, student_prompt_len=args.prompt_len,
            solution_ids=solution))
    return out


def collate(args, exs, teacher: str) -> dict:
    """A CPU batch exactly as ssb's collator builds it (pinned, as the Trainer's loader)."""
    import torch

    from ssb.stages.distill.batching import DistillCollator

    store = SyntheticStore(args.topk, args.vocab, args.seed) if teacher == "offline" else None
    batch = DistillCollator(0, teacher=teacher, store=store)(exs)
    # The reference and plain SFT read these too: labels = solution tokens, -100 elsewhere.
    labels = batch["student_input_ids"].clone()
    labels[:, :args.prompt_len] = -100
    batch["labels"] = labels
    if torch.cuda.is_available():
        batch = {k: v.pin_memory() for k, v in batch.items()}
    return batch


# -- the steps ---------------------------------------------------------------------------------

def make_loss(variant: str, args, model, device, dtype):
    """A function from a device batch to the variant's loss (with grad), or to None for the
    teacher forward alone."""
    import contextlib

    import torch
    import torch.nn.functional as F

    from ssb.stages.distill.forward import causal_lm_of, chunked_token_mean
    from ssb.stages.distill.step import LossTerm, distill_step
    from ssb.losses import cross_entropy, forward_kl
    from ssb.stages.distill.teacher import online_teacher_hidden

    T = args.temperature
    autocast = (lambda: torch.autocast(device.type, dtype=torch.bfloat16)) \
        if dtype == torch.bfloat16 else contextlib.nullcontext

    def ssb_loss(teacher, terms):
        def loss(batch):
            with autocast():
                return distill_step(model, batch, terms, temperature=T, teacher=teacher,
                                    logit_chunk=args.logit_chunk).loss
        return loss

    def sft_hf(batch):
        with autocast():
            return model(input_ids=batch["student_input_ids"],
                         attention_mask=batch["student_attention_mask"],
                         labels=batch["labels"], use_cache=False).loss

    def teacher_fwd(batch):
        head = causal_lm_of(model).get_output_embeddings()
        with autocast(), torch.no_grad():
            hidden = online_teacher_hidden(model, batch)
            # The head over the rows in the step's chunks (the mean keeps the work alive).
            chunked_token_mean(lambda h: head(h.to(head.weight.dtype)).float().mean(),
                               hidden.shape[0], args.logit_chunk, hidden)
        return None

    def dense_ref(batch):
        P, Pt, S = args.prompt_len, args.teacher_prompt_len, args.solution_len
        with autocast():
            model.eval()
            with torch.no_grad(), model.disable_adapter():
                t_logits = model(input_ids=batch["teacher_input_ids"],
                                 attention_mask=batch["teacher_attention_mask"],
                                 use_cache=False).logits  # [B, Lt, V], every position
            model.train()
            # The reference collator: teacher rows moved to the student's positions in a dense
            # fp32 [B, L, V] tensor (zeros elsewhere), a mask for the solution positions.
            teacher = torch.zeros(batch["student_input_ids"].shape + (args.vocab,),
                                  dtype=torch.float32, device=device)
            teacher[:, P - 1:P - 1 + S] = t_logits[:, Pt - 1:Pt - 1 + S].float()
            del t_logits
            mask = torch.zeros(batch["student_input_ids"].shape, dtype=torch.bool,
                               device=device)
            mask[:, P - 1:P - 1 + S] = True
            s_logits = model(input_ids=batch["student_input_ids"],
                             attention_mask=batch["student_attention_mask"],
                             use_cache=False).logits
        s_logp = F.log_softmax(s_logits.float() / T, dim=-1)
        t_logp = F.log_softmax(teacher / T, dim=-1)
        kl = (t_logp.exp() * (t_logp - s_logp)).sum(-1)
        return (kl * mask).sum() / mask.sum() * T * T

    kl = [LossTerm("kl", 1.0, forward_kl)]
    return {"sft_hf": sft_hf,
            "sft": ssb_loss("none", [LossTerm("ce", 1.0, cross_entropy, needs_teacher=False)]),
            "teacher_fwd": teacher_fwd, "online": ssb_loss("online", kl),
            "offline": ssb_loss("offline", kl), "dense_ref": dense_ref}[variant]


def make_step(variant: str, args, model, optimizer, device, dtype):
    """One step of ``variant`` on a CPU batch: copy to the device, loss, backward, clip,
    AdamW step (the teacher forward alone stops after its forward)."""
    import torch

    loss_of = make_loss(variant, args, model, device, dtype)
    params = [p for p in model.parameters() if p.requires_grad]

    def step(cpu_batch):
        batch = {k: v.to(device, non_blocking=True) if hasattr(v, "to") else v
                 for k, v in cpu_batch.items()}
        loss = loss_of(batch)
        if loss is None:
            return
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


# -- FLOPs -------------------------------------------------------------------------------------

def model_flops(args) -> dict[str, float]:
    """Model FLOPs per step of each variant (see the module docstring for what counts)."""
    H, I, V, layers = args.hidden, args.intermediate, args.vocab, args.layers
    hd = H // args.heads
    q, kv = args.heads * hd, args.kv_heads * hd
    shapes = [(H, q), (H, kv), (H, kv), (q, H), (H, I), (H, I), (I, H)]  # q k v o gate up down
    linear = sum(i * o for i, o in shapes)  # multiply-adds per token per layer
    lora = sum(args.lora_r * (i + o) for i, o in shapes)
    B, S = args.batch, args.solution_len
    Ls, Lt = args.prompt_len + S, args.teacher_prompt_len + S

    def attention(L):  # QK^T and AV, causal: half of L x L, per sequence per layer
        return args.heads * hd * L * L

    rows = B * S
    student_fwd = 2 * (B * Ls * layers * (linear + lora) + B * layers * attention(Ls))
    student_bwd = 2 * (B * Ls * layers * (linear + 2 * lora) + B * layers * 2 * attention(Ls))
    head = 2 * rows * H * V
    student = student_fwd + student_bwd + 2 * head  # head: forward + input gradient
    teacher = 2 * (B * Lt * layers * linear + B * layers * attention(Lt)) + head
    return {"sft_hf": student, "sft": student, "teacher_fwd": teacher,
            "online": student + teacher, "offline": student, "dense_ref": student + teacher}


# -- run ---------------------------------------------------------------------------------------

def run(args) -> dict:
    import torch

    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(args.device)
    dtype = torch.bfloat16 if args.dtype == "bf16" else torch.float32
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True  # fp32 runs: what a user would set
        torch.backends.cudnn.allow_tf32 = True
    peak = measure_peak_flops(device, dtype, args.peak_size)
    model, _ = build_model(args, device, dtype)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=2e-4,
                                  fused=device.type == "cuda")
    exs = examples(args)
    flops = model_flops(args)
    student_tokens = args.batch * (args.prompt_len + args.solution_len)
    teacher_tokens = args.batch * (args.teacher_prompt_len + args.solution_len)
    rows = []
    for variant in args.variants:
        teacher = {"online": "online", "offline": "offline", "teacher_fwd": "online",
                   "dense_ref": "online"}.get(variant, "none")
        cpu_batch = collate(args, exs, teacher)
        step = make_step(variant, args, model, optimizer, device, dtype)
        row = {"variant": variant, "label": LABELS[variant]}
        if device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        try:
            times = []
            for i in range(args.warmup + args.steps):
                with Clock(device) as clock:
                    step(cpu_batch)
                if i >= args.warmup:
                    times.append(clock.seconds)
        except torch.OutOfMemoryError as exc:  # the reference may not fit: say so, go on
            optimizer.zero_grad(set_to_none=True)
            row["error"] = f"out of memory: {str(exc).splitlines()[0]}"
            rows.append(row)
            continue
        seconds = statistics.median(times)
        tokens = teacher_tokens if variant == "teacher_fwd" else student_tokens
        row.update({
            "step_s": seconds, "step_s_all": times, "tokens": tokens,
            "tokens_per_s": tokens / seconds,
            "peak_bytes": torch.cuda.max_memory_allocated() if device.type == "cuda" else None,
            "model_flops": flops[variant], "mfu": flops[variant] / seconds / peak,
        })
        rows.append(row)
    return {"machine": machine_info(device), "config": config_of(args),
            "peak_flops": peak, "rows": rows, "targets": judge(rows)}


def judge(rows: list[dict]) -> dict:
    """Pass/fail of each target, per row (None where it does not apply or was not measured)."""
    by = {r["variant"]: r for r in rows if "step_s" in r}
    sft = [by[v] for v in ("sft", "sft_hf") if v in by]
    sft_s = min(r["step_s"] for r in sft) if sft else None
    peaks = [r["peak_bytes"] for r in sft if r.get("peak_bytes") is not None]
    sft_peak = min(peaks) if peaks else None
    out = {"sft_step_s": sft_s, "sft_peak_bytes": sft_peak, "rows": {}}
    for variant, r in by.items():
        t = {"time": None, "time_limit_s": None, "memory": None, "memory_limit_bytes": None,
             "mfu": None}
        limit = None
        if variant == "online" and sft_s is not None and "teacher_fwd" in by:
            limit = TARGETS["time_ratio"] * (sft_s + by["teacher_fwd"]["step_s"])
        elif variant == "offline" and sft_s is not None:
            limit = TARGETS["time_ratio"] * sft_s
        if limit is not None:
            t["time_limit_s"], t["time"] = limit, r["step_s"] <= limit
        if variant in ("online", "offline") and sft_peak is not None \
                and r.get("peak_bytes") is not None:
            t["memory_limit_bytes"] = sft_peak + TARGETS["extra_peak_bytes"]
            t["memory"] = r["peak_bytes"] <= t["memory_limit_bytes"]
        if variant in ("sft", "sft_hf", "online", "offline"):
            t["mfu"] = r["mfu"] >= TARGETS["mfu"]
        out["rows"][variant] = t
    return out


def machine_info(device) -> dict:
    import torch

    info = {"python": platform.python_version(), "torch": torch.__version__,
            "device": str(device), "platform": platform.platform()}
    for name in ("transformers", "peft", "accelerate"):
        try:
            info[name] = __import__(name).__version__
        except ImportError:
            info[name] = None
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update({"gpu": props.name, "gpu_memory_bytes": props.total_memory,
                     "cuda": torch.version.cuda})
    else:
        info["cpu_threads"] = torch.get_num_threads()
    return info


def config_of(args) -> dict:
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}


def table(result: dict) -> str:
    def fmt(value, spec):
        return "-" if value is None else format(value, spec)

    def verdict(ok):
        return "-" if ok is None else ("PASS" if ok else "FAIL")

    cfg, m = result["config"], result["machine"]
    lines = [
        f"KD step: {m.get('gpu', m['device'])}, torch {m['torch']}, transformers "
        f"{m['transformers']}, peft {m['peft']}",
        f"model hidden {cfg['hidden']} x {cfg['layers']} layers, heads {cfg['heads']}/"
        f"{cfg['kv_heads']}, intermediate {cfg['intermediate']}, vocab {cfg['vocab']:,}; LoRA "
        f"r={cfg['lora_r']} all projections; {cfg['dtype']}; batch {cfg['batch']} x (prompt "
        f"{cfg['prompt_len']} + solution {cfg['solution_len']}), teacher prompt "
        f"{cfg['teacher_prompt_len']}; gradient checkpointing "
        f"{'on' if cfg['gradient_checkpointing'] else 'off'}; median of {cfg['steps']} after "
        f"{cfg['warmup']} warm-up",
        f"measured {cfg['dtype']} matmul peak ({cfg['peak_size']}^3): "
        f"{result['peak_flops'] / 1e12:,.4g} TFLOP/s",
    ]
    head = ["variant", "step ms", "tokens/s", "peak GiB", "TFLOP/step", "MFU",
            "time target", "mem target", "MFU>=40%"]
    body = []
    targets = result["targets"]["rows"]
    for r in result["rows"]:
        if "error" in r:
            body.append([r["label"], r["error"]] + [""] * (len(head) - 2))
            continue
        t = targets.get(r["variant"], {})
        time_cell = verdict(t.get("time"))
        if t.get("time_limit_s") is not None:
            time_cell += f" (<= {t['time_limit_s'] * 1e3:,.0f})"
        mem_cell = verdict(t.get("memory"))
        if t.get("memory_limit_bytes") is not None:
            mem_cell += f" (<= {t['memory_limit_bytes'] / 2**30:,.1f})"
        peak = r["peak_bytes"] / 2**30 if r["peak_bytes"] is not None else None
        body.append([r["label"], fmt(r["step_s"] * 1e3, ",.1f"), fmt(r["tokens_per_s"], ",.0f"),
                     fmt(peak, ",.2f"), fmt(r["model_flops"] / 1e12, ".4g"),
                     f"{r['mfu']:.1%}", time_cell, mem_cell, verdict(t.get("mfu"))])
    widths = [max(len(str(x)) for x in col) for col in zip(head, *body)]
    rule = "  ".join("-" * w for w in widths)
    lines += ["", "  ".join(h.ljust(w) for h, w in zip(head, widths)), rule]
    lines += ["  ".join(str(c).ljust(w) for c, w in zip(row, widths)) for row in body]
    lines += ["", "targets: online <= 1.1 x (SFT + teacher fwd), offline <= 1.1 x SFT, peak <= "
              "SFT + 2 GB, MFU >= 40%; SFT = the better of the two SFT rows; '-': not "
              "applicable or not measured (no peak memory on CPU)"]
    return "\n".join(lines)


def main(argv=None) -> int:
    args = parse_args(argv)
    result = run(args)
    print(table(result), flush=True)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
