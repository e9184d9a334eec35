"""The teacher signal, two modes behind one interface.

* **online**: the training model itself with its LoRA adapter disabled, a no-grad forward of the
  body on the teacher view; only the ``[N, H]`` hidden states at solution positions are kept and
  the LM head is applied chunk by chunk inside the loss (exact, no storage).  The teacher never
  changes, so :class:`TeacherCache` keeps those rows per example (CPU memory, ``H`` floats per
  solution token): later epochs and held-out measurements skip its forward.
* **offline**: a top-k store written by ``ssb teacher-logits``.  Per solution token: the top-k
  token ids (int32), their log-probs at the store temperature (float16), the log of the exact
  tail mass outside the top k (float32) and the solution token id itself (int32, checked at
  train time): ``6k + 8`` bytes/token, 392 at k=64 (dense fp32 at vocab 151,936: 607,744).

Store layout (``STORE/``): ``index.json`` (format, temperature, top-k, model, tokenizer and
curated-file fingerprints, and per example ``[shard, start, length]``) and
``shard-00000.safetensors`` ... holding the four flat arrays above.  safetensors files are read
memory-mapped (``safe_open``), so a store larger than RAM trains fine; no pickle anywhere.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from ssb.errors import SsbError

STORE_FORMAT = "ssb-teacher-topk"
STORE_VERSION = 1
INDEX = "index.json"
# int32 index + float16 log-prob per kept entry; float32 tail + int32 solution id per token.
DTYPES = {"indices": torch.int32, "log_probs": torch.float16, "tail_log_mass": torch.float32,
          "solution_ids": torch.int32}


def bytes_per_token(top_k: int) -> int:
    """Storage per solution token: ``6k + 8`` bytes (392 at k=64)."""
    return 6 * top_k + 8


# -- online ------------------------------------------------------------------------------------

def online_teacher_hidden(model, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """``[N, H]`` teacher hidden states: the base model (adapter disabled), no grad, eval mode,
    on the teacher view, at the positions predicting each solution token."""
    from ssb.stages.distill.forward import body_hidden_at, causal_lm_of
    from accelerate.utils import extract_model_from_parallel

    peft_model = extract_model_from_parallel(model)
    causal_lm = causal_lm_of(peft_model)
    was_training = peft_model.training
    peft_model.eval()  # base-model dropout (if any) must not touch the teacher
    try:
        with torch.no_grad(), peft_model.disable_adapter():
            hidden = body_hidden_at(causal_lm, batch["teacher_input_ids"],
                                    batch["teacher_attention_mask"],
                                    batch["teacher_position_ids"], batch["teacher_pred_index"])
    finally:
        peft_model.train(was_training)
    return hidden.detach()



@dataclass(frozen=True)
class TeacherKeys:
    """What identifies each example's teacher rows in a batch: its exact teacher view (token
    ids and prompt length) and its number of solution tokens.  An opaque object, so the Trainer
    and accelerate hand it through to the loss untouched (they rebuild lists and tuples)."""

    keys: tuple[tuple[tuple[int, ...], int], ...]
    lengths: tuple[int, ...]


class TeacherCache:
    """The frozen online teacher's ``[n, H]`` hidden states per example, kept (on the CPU) after
    their first computation, so a second epoch or a held-out measurement skips the teacher
    forward.  Exact: the teacher is the base model with the adapter off, which training never
    changes; the rows equal a recomputation up to float rounding (a different batch's padding
    width).  Bounded: once ``max_bytes`` are held (per process), further examples are computed
    every time.  A batch runs the teacher only on the examples it misses.

    With an online teacher the teacher forward is about half of a step on the long hinted view,
    so epochs 2..E cost about half as much.  ``hits`` counts batches served whole from the cache,
    ``misses`` batches that ran the teacher (on ``computed`` examples)."""

    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes
        self.rows: dict[tuple[tuple[int, ...], int], torch.Tensor] = {}
        self.bytes = 0
        self.hits = 0
        self.misses = 0
        self.computed = 0
        self.full = False

    def lookup(self, keys: TeacherKeys) -> list[torch.Tensor | None]:
        """Each example's rows, or None where the cache does not hold them."""
        return [self.rows.get(k) for k in keys.keys]

    def store(self, keys: TeacherKeys, hidden: torch.Tensor) -> None:
        if sum(keys.lengths) != hidden.shape[0]:
            raise ValueError(f"teacher cache: {hidden.shape[0]} rows for solution lengths "
                             f"{list(keys.lengths)}")
        for key, part in zip(keys.keys, torch.split(hidden, list(keys.lengths))):
            if key in self.rows:
                continue
            size = part.numel() * part.element_size()
            if self.bytes + size > self.max_bytes:
                self.full = True
                continue
            self.rows[key] = part.detach().to("cpu", copy=True)
            self.bytes += size

    def summary(self) -> dict[str, Any]:
        return {"examples": len(self.rows), "bytes": self.bytes, "hits": self.hits,
                "misses": self.misses, "computed_examples": self.computed, "full": self.full}


def teacher_subbatch(batch: dict[str, Any], rows: list[int],
                     lengths: Sequence[int]) -> dict[str, torch.Tensor]:
    """The teacher view of some of a batch's examples (``rows``), same padding width, with
    ``teacher_pred_index`` re-pointed at the rows' new places."""
    width = batch["teacher_input_ids"].shape[1]
    preds = torch.split(batch["teacher_pred_index"], list(lengths))
    pred = torch.cat([preds[b] - b * width + j * width for j, b in enumerate(rows)])
    index = torch.tensor(rows, dtype=torch.long, device=batch["teacher_input_ids"].device)
    return {f"teacher_{k}": batch[f"teacher_{k}"].index_select(0, index)
            for k in ("input_ids", "attention_mask", "position_ids")} | {
        "teacher_pred_index": pred}


def cached_teacher_hidden(model, batch: dict[str, Any],
                          cache: TeacherCache | None) -> torch.Tensor:
    """:func:`online_teacher_hidden`, with the rows ``cache`` holds read from it: the teacher
    runs only on the batch's other examples (and their rows are stored)."""
    keys = batch.get("teacher_keys")
    if cache is None or not isinstance(keys, TeacherKeys):
        return online_teacher_hidden(model, batch)
    device = batch["teacher_input_ids"].device
    found = cache.lookup(keys)
    missing = [i for i, rows in enumerate(found) if rows is None]
    if not missing:
        cache.hits += 1
        return torch.cat(found).to(device)  # type: ignore[arg-type]
    cache.misses += 1
    cache.computed += len(missing)
    if len(missing) == len(found):
        hidden = online_teacher_hidden(model, batch)
        cache.store(keys, hidden)
        return hidden
    sub_keys = TeacherKeys(tuple(keys.keys[i] for i in missing),
                           tuple(keys.lengths[i] for i in missing))
    hidden = online_teacher_hidden(model, teacher_subbatch(batch, missing, keys.lengths))
    cache.store(sub_keys, hidden)
    for i, part in zip(missing, torch.split(hidden, list(sub_keys.lengths))):
        found[i] = part
    return torch.cat([rows.to(device) for rows in found])  # type: ignore[union-attr]


# -- top-k rows --------------------------------------------------------------------------------

@dataclass
class TopKRows:
    """Top-k teacher rows of one or more examples (``[n, k]``, ``[n, k]``, ``[n]``)."""

    indices: torch.Tensor
    log_probs: torch.Tensor
    tail_log_mass: torch.Tensor


def topk_from_logits(logits: torch.Tensor, top_k: int, temperature: float) -> TopKRows:
    """Top-k of ``log_softmax(logits / T)`` plus the exact log tail mass, in float32 (float64
    for float64 logits).

    The tail is ``logsumexp`` of the non-top-k scaled logits minus the full ``logsumexp``: exact
    and finite even when the top k hold almost all the mass (``1 - sum p`` would round to 0).
    """
    z = (logits if logits.dtype == torch.float64 else logits.float()) / temperature
    k = min(top_k, z.shape[-1])
    log_norm = torch.logsumexp(z, dim=-1)
    values, indices = z.topk(k, dim=-1)
    log_probs = values - log_norm[:, None]
    if k < z.shape[-1]:
        tail = torch.logsumexp(z.scatter(-1, indices, float("-inf")), dim=-1) - log_norm
    else:
        tail = torch.full_like(log_norm, float("-inf"))
    return TopKRows(indices=indices, log_probs=log_probs, tail_log_mass=tail)


def tokenizer_fingerprint(tokenizer) -> str:
    """sha256 over the vocabulary, special tokens and chat template (what alignment depends on)."""
    h = hashlib.sha256()
    vocab = tokenizer.get_vocab()
    h.update(json.dumps(sorted(vocab.items(), key=lambda kv: kv[1]), ensure_ascii=False).encode())
    h.update(json.dumps(sorted(map(str, tokenizer.all_special_tokens))).encode())
    h.update((getattr(tokenizer, "chat_template", None) or "").encode())
    return h.hexdigest()


# -- writer ------------------------------------------------------------------------------------

class TopKStoreWriter:
    """Appends examples to a store, one safetensors shard per ``shard_tokens`` tokens.

    Each shard is written atomically and then recorded in ``index.json`` (also atomic, with
    ``complete: false``), so an interrupted build resumes after its last finished shard.
    """

    def __init__(self, out: str | Path, meta: dict[str, Any], shard_tokens: int = 1 << 18):
        self.out = Path(out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.shard_tokens = shard_tokens
        existing = _read_index(self.out) if (self.out / INDEX).exists() else None
        if existing is not None:
            self.index = existing
        else:
            self.index = {"format": STORE_FORMAT, "version": STORE_VERSION, **meta,
                          "dtypes": {k: str(v).removeprefix("torch.") for k, v in DTYPES.items()},
                          "bytes_per_token": bytes_per_token(meta["top_k"]),
                          "num_tokens": 0, "shards": [], "examples": {}, "complete": False}
        self._pending: list[tuple[str, torch.Tensor, TopKRows]] = []
        self._pending_tokens = 0

    @property
    def done_ids(self) -> set[str]:
        return set(self.index["examples"])

    def add(self, example_id: str, solution_ids: Sequence[int], rows: TopKRows) -> None:
        ids = torch.as_tensor(list(solution_ids), dtype=torch.int32)
        if rows.indices.shape[0] != len(ids):
            raise ValueError("one top-k row per solution token expected")
        self._pending.append((example_id, ids, rows))
        self._pending_tokens += len(ids)
        if self._pending_tokens >= self.shard_tokens:
            self.flush()

    def flush(self) -> None:
        """Write the pending examples as one shard and record them in the index."""
        if not self._pending:
            return
        from safetensors.torch import save_file

        shard_no = len(self.index["shards"])
        name = f"shard-{shard_no:05d}.safetensors"
        tensors = {
            "indices": torch.cat([r.indices for _, _, r in self._pending]).to(DTYPES["indices"]),
            # float16 keeps ~3 significant digits; very unlikely tokens are clamped at -60000.
            "log_probs": torch.cat([r.log_probs for _, _, r in self._pending])
            .clamp(min=-6e4).to(DTYPES["log_probs"]),
            "tail_log_mass": torch.cat([r.tail_log_mass for _, _, r in self._pending])
            .to(DTYPES["tail_log_mass"]),
            "solution_ids": torch.cat([ids for _, ids, _ in self._pending]),
        }
        tmp = self.out / f".{name}.tmp"
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp),
                  metadata={"format": STORE_FORMAT})
        os.replace(tmp, self.out / name)
        start = 0
        for example_id, ids, _ in self._pending:
            self.index["examples"][example_id] = [shard_no, start, len(ids)]
            start += len(ids)
        self.index["shards"].append(name)
        self.index["num_tokens"] += start
        self._pending, self._pending_tokens = [], 0
        self._write_index()

    def finish(self, **extra: Any) -> dict[str, Any]:
        self.flush()
        self.index.update(extra)
        self.index["complete"] = True
        self._write_index()
        return self.index

    def _write_index(self) -> None:
        from ssb.journal import atomic_write_json

        atomic_write_json(self.out / INDEX, self.index)


def _read_index(store: Path) -> dict[str, Any]:
    path = store / INDEX
    try:
        index = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SsbError(f"{store}: not a teacher store (no {INDEX}); build one with "
                       "`ssb teacher-logits`") from None
    except json.JSONDecodeError as exc:
        raise SsbError(f"{path}: unreadable ({exc})") from None
    if index.get("format") != STORE_FORMAT or index.get("version") != STORE_VERSION:
        raise SsbError(f"{path}: not a {STORE_FORMAT} v{STORE_VERSION} index")
    return index


# -- reader ------------------------------------------------------------------------------------

class TopKStore:
    """Memory-mapped read access to a finished store."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.index = _read_index(self.path)
        if not self.index.get("complete"):
            raise SsbError(f"{self.path}: the teacher store is incomplete (interrupted build); "
                           "rerun the same `ssb teacher-logits` command to finish it")
        self._files: dict[int, Any] = {}

    @property
    def temperature(self) -> float:
        return float(self.index["temperature"])

    @property
    def top_k(self) -> int:
        return int(self.index["top_k"])

    def __contains__(self, example_id: str) -> bool:
        return example_id in self.index["examples"]

    def _file(self, shard_no: int):
        handle = self._files.get(shard_no)
        if handle is None:
            from safetensors import safe_open

            handle = safe_open(str(self.path / self.index["shards"][shard_no]), framework="pt")
            self._files[shard_no] = handle
        return handle

    def rows(self, example_id: str, solution_ids: Sequence[int] | None = None) -> TopKRows:
        """The rows of one example; with ``solution_ids`` also checks they are the ids the store
        was built on (a prefix is allowed: training may truncate more than the store did)."""
        try:
            shard_no, start, length = self.index["examples"][example_id]
        except KeyError:
            raise SsbError(f"{self.path}: no teacher rows for example {example_id!r}; rebuild "
                           "the store from the same curated file") from None
        n = length if solution_ids is None else len(solution_ids)
        if n > length:
            raise SsbError(f"{self.path}: example {example_id!r} has {length} stored solution "
                           f"tokens but training needs {n} (store built with a smaller "
                           "--max-length?)")
        f = self._file(shard_no)
        stored_ids = f.get_slice("solution_ids")[start:start + n]
        if solution_ids is not None and stored_ids.tolist() != list(solution_ids):
            raise SsbError(f"{self.path}: solution token ids of {example_id!r} differ from the "
                           "store's (different tokenizer, model or curated file?)")
        return TopKRows(indices=f.get_slice("indices")[start:start + n],
                        log_probs=f.get_slice("log_probs")[start:start + n],
                        tail_log_mass=f.get_slice("tail_log_mass")[start:start + n])

    def check_compatible(self, *, temperature: float, vocab_size: int,
                         tokenizer_sha256: str | None = None,
                         curated_sha256: str | None = None) -> None:
        """Refuse a store built for another temperature, vocabulary, tokenizer or curated file."""
        idx = self.index
        if abs(self.temperature - temperature) > 1e-6:
            raise SsbError(f"{self.path}: store taken at temperature {self.temperature}, "
                           f"training at {temperature}; rebuild with `ssb teacher-logits "
                           f"--temperature {temperature}` or train with that temperature")
        if int(idx["vocab_size"]) != int(vocab_size):
            raise SsbError(f"{self.path}: store vocabulary {idx['vocab_size']} != model "
                           f"vocabulary {vocab_size}")
        if tokenizer_sha256 and idx.get("tokenizer_sha256") != tokenizer_sha256:
            raise SsbError(f"{self.path}: built with a different tokenizer than this model's")
        if curated_sha256 and idx.get("curated_sha256") != curated_sha256:
            raise SsbError(f"{self.path}: built from a different curated file (sha256 "
                           f"{str(idx.get('curated_sha256'))[:12]}... != {curated_sha256[:12]}...)")


# -- building a store --------------------------------------------------------------------------

def build_store(curated: str | Path, model: str, out: str | Path, *, top_k: int = 64,
                temperature: float = 2.0, max_length: int | None = None,
                overlong: str = "truncate", batch_size: int = 4, dtype: str = "auto",
                device: str | None = None, logit_chunk: int = 256, force: bool = False,
                shard_tokens: int = 1 << 18,
                progress: Callable[..., None] | None = None) -> dict[str, Any]:
    """Run the frozen model on every teacher view and store the top-k rows (resumable)."""
    import shutil

    from ssb.stage import sha256_file
    from ssb.stages.distill.alignment import align_records, curated_path, load_curated
    from ssb.stages.distill.batching import pad_view
    from ssb.stages.distill.forward import body_hidden_at
    from ssb.models import default_device, load_causal_lm, load_tokenizer, resolve

    if top_k < 1:
        raise SsbError("--top-k must be >= 1")
    if temperature <= 0:
        raise SsbError("--temperature must be > 0")
    curated_file = curated_path(curated)
    records = load_curated(curated_file)
    ref = resolve(model)
    tokenizer = load_tokenizer(ref)
    examples, report = align_records(tokenizer, records, max_length=max_length,
                                     overlong=overlong)  # type: ignore[arg-type]
    device = device or default_device()
    lm = load_causal_lm(ref, dtype=dtype, device=device).eval()
    vocab_size = lm.get_output_embeddings().weight.shape[0]
    meta = {"top_k": min(top_k, vocab_size), "temperature": float(temperature),
            "vocab_size": int(vocab_size), "model": model,
            "tokenizer_sha256": tokenizer_fingerprint(tokenizer),
            "curated_sha256": sha256_file(curated_file), "curated_path": str(curated_file),
            "max_length": max_length, "overlong": overlong}
    out = Path(out)
    if (out / INDEX).exists():
        old = _read_index(out)
        changed = {k: (old.get(k), v) for k, v in meta.items()
                   if k not in ("model", "curated_path") and old.get(k) != v}
        if changed and not force:
            raise SsbError(f"{out} holds a store built with other settings {changed}; use a new "
                           "--out or --force to rebuild it")
        if changed:
            shutil.rmtree(out)
    writer = TopKStoreWriter(out, meta, shard_tokens=shard_tokens)
    todo = [e for e in examples if e.id not in writer.done_ids]
    head = lm.get_output_embeddings()
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    with torch.no_grad():
        for start in range(0, len(todo), batch_size):
            chunk = todo[start:start + batch_size]
            view = pad_view([e.teacher_ids for e in chunk], [e.teacher_prompt_len for e in chunk],
                            pad_id)
            view = {k: v.to(device) for k, v in view.items()}
            hidden = body_hidden_at(lm, view["input_ids"], view["attention_mask"],
                                    view["position_ids"], view["pred_index"])
            rows = [topk_from_logits(head(hidden[i:i + logit_chunk]), meta["top_k"], temperature)
                    for i in range(0, hidden.shape[0], logit_chunk)]
            cat = TopKRows(*(torch.cat([getattr(r, f) for r in rows]).cpu()
                             for f in ("indices", "log_probs", "tail_log_mass")))
            offset = 0
            for e in chunk:
                n = e.num_solution_tokens
                writer.add(e.id, e.solution_ids,
                           TopKRows(cat.indices[offset:offset + n], cat.log_probs[offset:offset + n],
                                    cat.tail_log_mass[offset:offset + n]))
                offset += n
            if progress:
                progress(len(chunk))
    index = writer.finish(alignment=report.to_dict())
    return {"store": str(out), "examples": len(index["examples"]),
            "num_tokens": index["num_tokens"], "top_k": index["top_k"],
            "temperature": index["temperature"], "bytes_per_token": index["bytes_per_token"],
            "dense_fp32_bytes_per_token": 4 * int(vocab_size), "alignment": report.to_dict()}
