"""The llama.cpp backend: llama-cpp-python on a ``.gguf`` model, CPU or GPU.

The prompt is the GGUF's own ``tokenizer.chat_template``, rendered by llama-cpp-python's Jinja2
formatter exactly as ``create_chat_completion`` (and so ``llama_cpp.server``) renders it.  Every sample gets
its own seed derived from the sampling seed, the conversation's content and the sample index, so
a conversation's samples do not depend on what else is in the batch or ran before.  The n
samples of one conversation share one evaluation of the prompt.

Rollouts are decoded ``n_parallel`` at a time (default 8; large jobs gain up to 1.25x at 32):
one ``llama_decode`` call advances every running sequence by a token (see
:mod:`ssb_backends.llama_batched`), which on a CPU gives several times the tokens/s of one
sequence at a time.  What changes versus ``-B n_parallel=1``
(the plain one-sequence-at-a-time loop over ``create_completion``):

* a rollout still depends only on its conversation, seed, sample index and the settings (never
  on the batch around it), but llama.cpp computes a row of an n-row batch with other kernels
  than a lone row (for n >= 4 on this CPU build), so logits differ by float rounding (up to
  ~0.3 on a logit here) and a sampled or greedy text can differ from n_parallel=1 after a
  near-tie; n_parallel <= 3 uses the lone-row kernels and gives the same text as n_parallel=1;
* ``n_ctx`` is per sequence: the KV cache holds ``n_parallel * n_ctx`` cells;
* a stop string ends a rollout at the token that completes it, and ``max_new_tokens`` is never
  exceeded (``create_completion`` could run past it while a UTF-8 character was incomplete).

llama-cpp-python's own defaults (top_k=40, min_p=0.05, ...) are overridden on every call so the
sampling is exactly what :class:`ssb.records.SamplingParams` says: the sampler chain is
``create_completion``'s (top-k, top-p, then temperature, then the seeded draw).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from ssb.errors import SsbError
from ssb.records import Completion, Message, SamplingParams
from ssb.types import ProgressCallback

from ssb_backends.common import (check_conversations, check_options, check_params,
                                 conversation_key, derive_seed, finish_reason_of, repeat_greedy,
                                 require)

from ssb_backends import option_names  # noqa: E402

OPTIONS = option_names("llama.cpp")  # declared once, in the schema of ssb_backends

class LlamaCppBackend:
    name = "llama.cpp"

    def __init__(self, model: str, adapter: str | None = None, *, n_threads: int | None = None,
                 n_ctx: int = 4096, n_gpu_layers: int = 0, n_batch: int = 512,
                 lora_scale: float = 1.0, n_parallel: int = 8):
        llama_cpp = require("llama_cpp", "llama", "llama.cpp")
        from ssb.models import resolve

        ref = resolve(model)
        if not ref.is_gguf:
            raise SsbError(f"the llama.cpp backend needs a .gguf model, got {model} ({ref.kind}); "
                           "use the transformers or vllm backend for HF models")
        lora_path = None
        if adapter:
            path = Path(adapter).expanduser()
            if path.is_dir():
                ggufs = sorted(path.glob("*.gguf"))
                if len(ggufs) != 1:
                    raise SsbError(
                        f"adapter {adapter}: the llama.cpp backend needs a GGUF LoRA file "
                        "(convert a peft adapter with `ssb export`)"
                    )
                path = ggufs[0]
            if not path.is_file() or path.suffix != ".gguf":
                raise SsbError(f"adapter {adapter}: not a GGUF LoRA file (convert a peft "
                               "adapter with `ssb export`)")
            _check_gguf_lora(path, ref.location)
            lora_path = str(path)
        kwargs: dict[str, Any] = dict(model_path=ref.location, n_ctx=int(n_ctx),
                                      n_gpu_layers=int(n_gpu_layers), n_batch=int(n_batch),
                                      verbose=False)
        if int(n_parallel) < 1:
            raise SsbError(f"llama.cpp: n_parallel must be >= 1, got {n_parallel}")
        if n_threads is not None:
            kwargs["n_threads"] = kwargs["n_threads_batch"] = int(n_threads)
        if lora_path:
            kwargs["lora_path"] = lora_path
            kwargs["lora_scale"] = float(lora_scale)
        try:
            self.llm = llama_cpp.Llama(**kwargs)
        except (ValueError, RuntimeError) as exc:
            what = f" with LoRA {lora_path}" if lora_path else ""
            raise SsbError(f"llama.cpp could not load {ref.location}{what}: {exc}") from None
        # llama-cpp-python 0.3.x compares the adapter pointer with None, so a LoRA that failed
        # to load passes silently (the base model would be evaluated as "the adapter").
        if lora_path and not getattr(self.llm, "_lora_adapter", None):
            self.llm.close()
            raise SsbError(f"llama.cpp could not load the LoRA adapter {lora_path}")
        self.model_path = ref.location
        self.n_ctx = int(n_ctx)
        self.n_parallel = int(n_parallel)
        self.formatter = _chat_formatter(self.llm, model)
        self.decoder = None
        if self.n_parallel > 1:
            from ssb_backends.llama_batched import BatchedDecoder

            try:
                self.decoder = BatchedDecoder(
                    self.llm, n_parallel=self.n_parallel, n_ctx=self.n_ctx,
                    n_threads=n_threads, lora_adapter=getattr(self.llm, "_lora_adapter", None),
                    lora_scale=float(lora_scale))
            except (ValueError, RuntimeError) as exc:
                self.llm.close()
                raise SsbError(f"llama.cpp could not make a context for n_parallel="
                               f"{self.n_parallel} x n_ctx={self.n_ctx}: {exc} (lower -B "
                               "n_parallel or -B n_ctx)") from None

    def check_params(self, params: SamplingParams) -> None:
        """Refuse what this model cannot honour (stages call it before starting work): more new
        tokens than the context window n_ctx, a top_k above the vocabulary, NaN, ..."""
        check_params(params, context=self.n_ctx, vocab=self.llm.n_vocab())

    def generate(self, conversations: Sequence[Sequence[Message]], params: SamplingParams,
                 progress: ProgressCallback | None = None) -> list[list[Completion]]:
        self.check_params(params)
        check_conversations(conversations)
        if self.decoder is not None:
            return self._generate_batched(conversations, params, progress)
        greedy = params.temperature == 0
        results: list[list[Completion]] = []
        for i, conv in enumerate(conversations):
            key = conversation_key(conv)
            prompt, stop, criteria = self._prompt(conv, params, i)
            self._prime(prompt)
            samples = []
            for j in range(1 if greedy else params.n):
                samples.append(self._one(prompt, stop, criteria, params,
                                         derive_seed(params.seed, key, j)))
                if progress is not None and not greedy:
                    progress(1)
            if greedy:
                samples = repeat_greedy(samples[0], params.n)
                if progress is not None:
                    progress(params.n)
            results.append(samples)
        return results

    def _generate_batched(self, conversations: Sequence[Sequence[Message]],
                          params: SamplingParams, progress: ProgressCallback | None
                          ) -> list[list[Completion]]:
        from ssb_backends.llama_batched import Rollout

        greedy = params.temperature == 0
        per = 1 if greedy else params.n  # greedy: one rollout, n copies
        rollouts: list[Rollout] = []
        for i, conv in enumerate(conversations):
            key = conversation_key(conv)
            prompt, stop, _ = self._prompt(conv, params, i)  # the template's stop: an EOG token
            stop_bytes = [s.encode("utf-8") for s in stop if s]
            for j in range(per):
                rollouts.append(Rollout(
                    prompt=prompt, max_new_tokens=params.max_new_tokens,
                    temperature=params.temperature, top_p=params.top_p, top_k=params.top_k,
                    seed=derive_seed(params.seed, key, j), stop=stop_bytes))

        def finished(_rollout) -> None:
            if progress is not None:
                progress(params.n if greedy else 1)

        self.decoder.run(rollouts, finished)
        results: list[list[Completion]] = []
        for i in range(len(conversations)):
            samples = [Completion(r.text.decode("utf-8", errors="ignore"), len(r.tokens),
                                  finish_reason_of(r.finish_reason))
                       for r in rollouts[i * per:(i + 1) * per]]
            results.append(repeat_greedy(samples[0], params.n) if greedy else samples)
        return results

    def _prompt(self, conv: Sequence[Message], params: SamplingParams, index: int):
        """Token ids of the conversation through the GGUF's chat template, rendered exactly as
        ``create_chat_completion`` (and so ``llama_cpp.server``) renders it."""
        result = self.formatter(messages=[dict(m) for m in conv])
        tokens = self.llm.tokenize(result.prompt.encode("utf-8"),
                                   add_bos=not result.added_special, special=True)
        if len(tokens) >= self.n_ctx:
            raise SsbError(f"llama.cpp, conversation {index}: the prompt has {len(tokens)} "
                           f"tokens, the context window n_ctx={self.n_ctx} (raise -B n_ctx=...)")
        extra = result.stop if isinstance(result.stop, list) else [result.stop] \
            if result.stop else []
        return tokens, list(params.stop) + extra, result.stopping_criteria

    def _prime(self, prompt: list[int]) -> None:
        """Evaluate all but the last prompt token once per conversation.

        Every sample then evaluates only the last prompt token on top of that cache.  Without
        this the first sample would see logits from a batched prompt pass and later samples
        from a one-token pass (llama-cpp-python's prefix reuse), which differ slightly and make
        seeded samples depend on what ran before.  It also shares the prompt across n samples.
        """
        self.llm.reset()
        if len(prompt) > 1:
            self.llm.eval(prompt[:-1])

    def _one(self, prompt: list[int], stop: list[str], criteria, params: SamplingParams,
             seed: int) -> Completion:
        out = self.llm.create_completion(
            prompt=prompt, temperature=params.temperature, top_p=params.top_p,
            top_k=params.top_k,  # llama.cpp: k <= 0 disables top-k
            min_p=0.0, typical_p=1.0, repeat_penalty=1.0, presence_penalty=0.0,
            frequency_penalty=0.0, max_tokens=params.max_new_tokens, stop=stop or None,
            stopping_criteria=criteria, seed=seed,
        )
        choice = out["choices"][0]
        return Completion(choice.get("text") or "", int(out["usage"]["completion_tokens"]),
                          finish_reason_of(choice.get("finish_reason")))

    def close(self) -> None:
        decoder = getattr(self, "decoder", None)
        if decoder is not None:
            decoder.close()
            self.decoder = None
        llm = getattr(self, "llm", None)
        if llm is not None:
            llm.close()
            self.llm = None


def _chat_formatter(llm, model: str):
    """The GGUF's ``tokenizer.chat_template`` as llama-cpp-python's Jinja2 formatter (the same
    object ``create_chat_completion`` builds for it)."""
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    template = llm.metadata.get("tokenizer.chat_template")
    if not template:
        llm.close()
        raise SsbError(f"{model}: the GGUF has no tokenizer.chat_template; ssb needs an "
                       "instruct/chat model")
    eos_id, bos_id = llm.token_eos(), llm.token_bos()
    eos = llm._model.token_get_text(eos_id) if eos_id != -1 else ""
    bos = llm._model.token_get_text(bos_id) if bos_id != -1 else ""
    return Jinja2ChatFormatter(template=template, eos_token=eos, bos_token=bos,
                               stop_token_ids=[eos_id])


def _check_gguf_lora(path: Path, base: str) -> None:
    """Refuse anything but a GGUF LoRA adapter made for the base model's architecture."""
    with open(path, "rb") as f:
        if f.read(4) != b"GGUF":
            raise SsbError(f"adapter {path}: could not load: not a GGUF file")
    import gguf

    def field(reader, key):
        f = reader.fields.get(key)
        return f.contents() if f is not None else None

    try:
        lora = gguf.GGUFReader(str(path))
        model = gguf.GGUFReader(base)
    except Exception as exc:  # noqa: BLE001 - a damaged file
        raise SsbError(f"adapter {path}: could not load: {exc}") from None
    if field(lora, "general.type") != "adapter" or field(lora, "adapter.type") not in (None, "lora"):
        raise SsbError(f"adapter {path}: could not load: not a LoRA adapter (general.type="
                       f"{field(lora, 'general.type')!r}, adapter.type="
                       f"{field(lora, 'adapter.type')!r})")
    arch, base_arch = field(lora, "general.architecture"), field(model, "general.architecture")
    if arch != base_arch:
        raise SsbError(f"adapter {path}: could not load: made for {arch!r}, the model is "
                       f"{base_arch!r}")


def create(model: str, adapter: str | None = None, **options: Any) -> LlamaCppBackend:
    check_options("llama.cpp", options, OPTIONS)
    return LlamaCppBackend(model, adapter, **options)
