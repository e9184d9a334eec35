"""Batched decoding for the llama.cpp backend: one ``llama_decode`` call advances many rollouts.

This is what llama.cpp's ``examples/batched`` and its server's parallel slots do, written against
llama-cpp-python's low-level API (``llama_batch``, ``llama_decode``, per-sequence sampler chains,
``llama_memory_seq_*``):

* one extra ``llama_context`` on the already loaded model, with ``n_seq_max = n_parallel`` slots
  and one KV stream per slot (``kv_unified = False``) of ``n_ctx`` cells each, and the same GGUF
  LoRA adapter (at the same scale) as the backend's own context;
* a queue of rollouts (conversation i, sample j).  A free slot takes the next one: the prompt,
  all but its last token, is evaluated alone into the slot's stream in ``n_batch`` chunks (as the
  one-at-a-time path does), or copied from a slot that still holds the same prompt, so the n
  samples of a conversation share one prompt evaluation;
* every step decodes one token for every slot in one call, then samples each slot's next token
  with its own sampler chain, seeded per rollout by the caller.  Sampling the full vocabulary
  costs ~2 ms a token here, so the slots' draws run on ``n_threads`` threads (the C calls
  release the GIL; each chain only reads its row's logits); the cores are idle between decodes.

Why every step has a row for *every* slot (idle ones decode a throwaway token that is removed
again): llama.cpp's CPU kernels compute a row differently depending on how many rows the ubatch
has (K-quant matmuls switch to repacked/tiled kernels at 4 and at 8 rows), though not on which
other sequences are in it nor on the row's position, and each slot attends only over its own KV
stream.  With a constant row count and prompts evaluated alone, a rollout's tokens depend only on
its prompt, its sampler seed and ``n_parallel``: never on what else is in the batch, on the order
of the queue or on how a caller splits its problems into ``generate`` calls.  (Measured on this
build; ``tests/test_backend_llama_batched.py`` checks it.)
"""

from __future__ import annotations

import ctypes
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable, Iterable

# A throwaway token for idle slots (any valid id: its logits are never read).
_PAD_TOKEN = 0


@dataclass
class Rollout:
    """One sequence to generate: a prompt, how to sample, when to stop."""

    prompt: list[int]
    max_new_tokens: int
    temperature: float
    top_p: float
    top_k: int
    seed: int
    stop: list[bytes] = field(default_factory=list)
    # Filled in by the decoder:
    tokens: list[int] = field(default_factory=list)
    text: bytes = b""
    finish_reason: str = ""


class _Slot:
    __slots__ = ("rollout", "prefix", "pos", "sampler", "row", "next_token")

    def __init__(self) -> None:
        self.rollout: Rollout | None = None
        self.prefix: tuple[int, ...] | None = None  # prompt[:-1] held in the stream's cells 0..
        self.pos = 0  # the position the next decoded token of this slot takes
        self.sampler = None
        self.row = -1
        self.next_token = 0


class BatchedDecoder:
    """Decodes :class:`Rollout` s ``n_parallel`` at a time on an already loaded ``llama_cpp.Llama``.

    ``n_ctx`` is per slot: a rollout's prompt plus its new tokens must fit in it (new tokens are
    capped there with finish reason "length", as ``create_completion`` caps ``max_tokens``).
    llama.cpp rounds a sequence's context up to a multiple of 256, for the one-sequence context
    as for these slots; the cap is the rounded size, as in ``create_completion``.
    """

    def __init__(self, llm, *, n_parallel: int, n_ctx: int, n_threads: int | None = None,
                 lora_adapter=None, lora_scale: float = 1.0):
        import llama_cpp
        from llama_cpp import _internals

        self._llama_cpp = llama_cpp
        self.n_parallel = int(n_parallel)
        per_slot = -(-int(n_ctx) // 256) * 256  # what llama.cpp would round it to anyway
        model = llm._model
        # Start from the backend context's own parameters (rope, KV types, flash attention,
        # threads...) so a slot computes exactly what the one-sequence context computes.
        params = llama_cpp.llama_context_params.from_buffer_copy(llm.context_params)
        params.n_ctx = self.n_parallel * per_slot
        params.n_seq_max = self.n_parallel
        params.kv_unified = False  # one KV stream per slot: a slot attends over its cells only
        # Prompts are evaluated in the chunks ``Llama.eval`` uses (n_batch, split by n_ubatch);
        # a step's ubatch holds one row per slot.
        self.n_batch = max(1, int(llm.n_batch))
        params.n_batch = max(int(params.n_batch), self.n_parallel)
        params.n_ubatch = max(int(params.n_ubatch), self.n_parallel)
        if n_threads is not None:
            params.n_threads = params.n_threads_batch = int(n_threads)
        params.no_perf = True
        self._ctx = _internals.LlamaContext(model=model, params=params, verbose=False)
        try:
            if lora_adapter is not None:
                adapters = (llama_cpp.llama_adapter_lora_p_ctypes * 1)(lora_adapter)
                scales = (ctypes.c_float * 1)(float(lora_scale))
                if llama_cpp.llama_set_adapters_lora(self._ctx.ctx, adapters, 1, scales):
                    raise RuntimeError("llama_set_adapters_lora failed on the batched context")
            self.n_ctx = min(int(llama_cpp.llama_n_ctx_seq(self._ctx.ctx)), int(llm.n_ctx()))
            self._mem = llama_cpp.llama_get_memory(self._ctx.ctx)
            if self._mem is None:
                raise RuntimeError("the batched llama.cpp context has no KV memory")
            size = max(self.n_batch, self.n_parallel)
            self._batch = _internals.LlamaBatch(n_tokens=size, embd=0, n_seq_max=1,
                                                verbose=False)
        except Exception:
            self._ctx.close()
            raise
        self._model = model
        self._vocab = model.vocab
        if n_threads is None:
            from ssb.processes import usable_cores

            n_threads = usable_cores()  # the cores this process may use, not the machine's
        threads = int(n_threads)
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="ssb-sample") \
            if threads > 1 and self.n_parallel > 1 else None
        self._n_vocab = model.n_vocab()
        self._candidates: dict[int, object] = {}  # slot -> its llama_token_data buffer
        import numpy as np

        self._ids = np.arange(self._n_vocab, dtype=np.int32)
        self._pieces: dict[int, bytes] = {}
        self._piece_buf = ctypes.create_string_buffer(256)
        self._slots = [_Slot() for _ in range(self.n_parallel)]

    # -- public -------------------------------------------------------------------------------

    def run(self, rollouts: Iterable[Rollout],
            on_finish: Callable[[Rollout], None] | None = None) -> None:
        """Generate every rollout (in place); ``on_finish`` is called as each one ends."""
        queue = deque(rollouts)
        for r in queue:
            if not 1 <= len(r.prompt) < self.n_ctx:
                raise ValueError(f"the prompt has {len(r.prompt)} tokens, the context "
                                 f"window n_ctx={self.n_ctx}")
        slots = self._slots
        try:
            while True:
                for s, slot in enumerate(slots):
                    if slot.rollout is None and queue:
                        self._start(s, queue.popleft())
                if all(slot.rollout is None for slot in slots):
                    return
                self._step()
                active = [slot for slot in slots if slot.rollout is not None]
                for slot, token in zip(active, self._sample(active)):
                    r = slot.rollout
                    if self._accept(slot, r, token):
                        self._finish(slot)
                        if on_finish is not None:
                            on_finish(r)
        except BaseException:
            # A failed or interrupted run leaves no half-generated sequence behind.
            for s, slot in enumerate(slots):
                self._release(slot)
                self._llama_cpp.llama_memory_seq_rm(self._mem, s, -1, -1)
                slot.prefix = None
            raise

    def close(self) -> None:
        pool = getattr(self, "_pool", None)
        if pool is not None:
            pool.shutdown(wait=True)
            self._pool = None
        for slot in getattr(self, "_slots", []):
            self._release(slot)
        for name in ("_batch", "_ctx"):
            obj = getattr(self, name, None)
            if obj is not None:
                obj.close()
                setattr(self, name, None)

    # -- internals ----------------------------------------------------------------------------

    def _start(self, s: int, r: Rollout) -> None:
        """Put rollout ``r`` in slot ``s``: its prompt but the last token into the slot's KV
        stream (kept, copied from another slot, or evaluated), and its sampler chain."""
        lc = self._llama_cpp
        prefix = tuple(r.prompt[:-1])
        slot = self._slots[s]
        if slot.prefix != prefix:
            donor = next((t for t, other in enumerate(self._slots)
                          if t != s and other.prefix == prefix), None)
            lc.llama_memory_seq_rm(self._mem, s, -1, -1)
            slot.prefix = None
            if donor is not None:
                # Another stream holds this prompt: copy it (applied before the next decode),
                # then drop what the donor generated after it.
                lc.llama_memory_seq_cp(self._mem, donor, s, -1, -1)
                lc.llama_memory_seq_rm(self._mem, s, len(prefix), -1)
            else:
                self._prefill(s, prefix)
            slot.prefix = prefix
        else:
            lc.llama_memory_seq_rm(self._mem, s, len(prefix), -1)
        slot.rollout = r
        slot.pos = len(prefix)
        slot.next_token = r.prompt[-1]
        slot.sampler = self._sampler(r)
        r.tokens, r.text, r.finish_reason = [], b"", ""

    def _prefill(self, s: int, tokens: tuple[int, ...]) -> None:
        """Evaluate ``tokens`` into slot ``s`` alone, in ``n_batch`` chunks, no logits."""
        b = self._batch.batch
        for start in range(0, len(tokens), self.n_batch):
            chunk = tokens[start:start + self.n_batch]
            for i, tok in enumerate(chunk):
                b.token[i] = tok
                b.pos[i] = start + i
                b.n_seq_id[i] = 1
                b.seq_id[i][0] = s
                b.logits[i] = False
            b.n_tokens = len(chunk)
            self._decode()

    def _step(self) -> None:
        """One token for every slot, in slot order (one ubatch: llama.cpp splits a multi-stream
        batch wherever sequence ids stop increasing by one)."""
        b = self._batch.batch
        for s, slot in enumerate(self._slots):
            if slot.rollout is not None:
                b.token[s] = slot.next_token
                b.pos[s] = slot.pos
            else:
                # Idle: a throwaway token after whatever the stream keeps, removed below.  It
                # keeps the row count constant (see the module docstring); its logits are
                # computed like everyone's, since the last layer only runs on output rows.
                b.token[s] = _PAD_TOKEN
                b.pos[s] = len(slot.prefix) if slot.prefix is not None else 0
            b.n_seq_id[s] = 1
            b.seq_id[s][0] = s
            b.logits[s] = True
            slot.row = s
        b.n_tokens = self.n_parallel
        self._decode()
        lc = self._llama_cpp
        for s, slot in enumerate(self._slots):
            if slot.rollout is None:
                lc.llama_memory_seq_rm(self._mem, s, int(b.pos[s]), -1)
            else:
                slot.pos += 1

    def _sample(self, active: list[_Slot]) -> list[int]:
        """Each active slot's next token from its row's logits, with its own sampler chain."""
        lc, ctx = self._llama_cpp, self._ctx.ctx
        if self._pool is None or len(active) < 2:
            return [lc.llama_sampler_sample(slot.sampler, ctx, slot.row) for slot in active]
        import numpy as np

        # llama_get_logits_ith synchronizes the context and puts the output rows in batch
        # order: done here, once per row, before any thread reads them.
        rows = [np.ctypeslib.as_array(lc.llama_get_logits_ith(ctx, slot.row),
                                      shape=(self._n_vocab,)) for slot in active]
        bufs = [self._buffer(slot.row) for slot in active]  # row s is slot s (see _step)
        return list(self._pool.map(self._draw, [slot.sampler for slot in active], rows, bufs))

    def _buffer(self, s: int):
        buf = self._candidates.get(s)
        if buf is None:
            import numpy as np

            buf = np.zeros(self._n_vocab, dtype=[("id", "<i4"), ("logit", "<f4"), ("p", "<f4")])
            self._candidates[s] = buf
        return buf

    def _draw(self, chain, logits, buf) -> int:
        """What ``llama_sampler_sample`` does, on a buffer of our own: candidates
        {id, logit, p=0} for the whole vocabulary, unsorted; apply the chain; accept."""
        lc = self._llama_cpp
        buf["id"] = self._ids
        buf["logit"] = logits
        buf["p"] = 0.0
        arr = lc.llama_token_data_array(
            data=buf.ctypes.data_as(lc.llama_token_data_p), size=self._n_vocab, selected=-1,
            sorted=False)
        lc.llama_sampler_apply(chain, ctypes.byref(arr))
        if not 0 <= arr.selected < arr.size:
            raise RuntimeError("llama.cpp sampler selected no token")
        token = int(arr.data[arr.selected].id)
        lc.llama_sampler_accept(chain, token)
        return token

    def _accept(self, slot: _Slot, r: Rollout, token: int) -> bool:
        """Record a sampled token; True when the rollout is finished.

        The rules of llama-cpp-python's ``create_completion``: an end-of-generation token ends
        it and is not counted; a stop string ends it, the text cut before it, the tokens up to
        the one that completed it counted; otherwise it ends at ``max_new_tokens`` or when the
        slot's context is full ("length").
        """
        if self._llama_cpp.llama_vocab_is_eog(self._vocab, token):
            r.finish_reason = "stop"
            return True
        r.tokens.append(token)
        before = len(r.text)
        r.text += self._piece(token)
        if r.stop:
            longest = max(len(x) for x in r.stop)
            window = r.text[max(0, before - longest + 1):]
            for stop in r.stop:
                if stop in window:
                    r.text = r.text[:r.text.index(stop)]
                    r.finish_reason = "stop"
                    return True
        # create_completion's cap: prompt + new tokens <= n_ctx.
        if len(r.tokens) >= min(r.max_new_tokens, self.n_ctx - len(r.prompt)):
            r.finish_reason = "length"
            return True
        slot.next_token = token
        return False

    def _finish(self, slot: _Slot) -> None:
        # Keep the prompt's cells (the next sample of the same conversation reuses them).
        s = self._slots.index(slot)
        if slot.prefix is not None:
            self._llama_cpp.llama_memory_seq_rm(self._mem, s, len(slot.prefix), -1)
        self._release(slot)

    def _release(self, slot: _Slot) -> None:
        if slot.sampler is not None:
            self._llama_cpp.llama_sampler_free(slot.sampler)
        slot.sampler = None
        slot.rollout = None

    def _sampler(self, r: Rollout):
        """The chain llama-cpp-python's ``Llama._init_sampler`` builds for ``create_completion``
        with ssb's settings (neutral penalties, typical_p=1, min_p=0), in the same order, so a
        seeded rollout draws exactly as the one-at-a-time path draws from the same logits."""
        lc = self._llama_cpp
        chain = lc.llama_sampler_chain_init(lc.llama_sampler_chain_default_params())
        add = lambda smpl: lc.llama_sampler_chain_add(chain, smpl)  # noqa: E731
        add(lc.llama_sampler_init_penalties(self._n_vocab, 64, 1.0, 0.0, 0.0))
        if r.temperature == 0:
            add(lc.llama_sampler_init_greedy())
        else:
            add(lc.llama_sampler_init_top_k(int(r.top_k)))  # k <= 0: off
            add(lc.llama_sampler_init_typical(1.0, 1))
            add(lc.llama_sampler_init_top_p(float(r.top_p), 1))
            add(lc.llama_sampler_init_min_p(0.0, 1))
            add(lc.llama_sampler_init_temp(float(r.temperature)))
            add(lc.llama_sampler_init_dist(int(r.seed) & 0xFFFFFFFF))
        return chain

    def _piece(self, token: int) -> bytes:
        piece = self._pieces.get(token)
        if piece is None:
            n = self._llama_cpp.llama_token_to_piece(self._vocab, token, self._piece_buf,
                                                     len(self._piece_buf), 0, False)
            piece = self._piece_buf.raw[:max(n, 0)]
            self._pieces[token] = piece
        return piece

    def _decode(self) -> None:
        rc = self._llama_cpp.llama_decode(self._ctx.ctx, self._batch.batch)
        if rc != 0:
            raise RuntimeError(f"llama_decode returned {rc}"
                               + (" (no KV cache slot: raise -B n_ctx)" if rc == 1 else ""))
