"""The llama.cpp backend: llama-cpp-python on a ``.gguf`` model, CPU or GPU.

The prompt is the GGUF's own ``tokenizer.chat_template`` (llama-cpp-python renders it with
Jinja2 in ``create_chat_completion``, exactly as ``llama_cpp.server`` does).  Every sample gets
its own seed derived from the sampling seed, the conversation's content and the sample index, so
a conversation's samples do not depend on what else is in the batch.  The n samples of one
conversation share the evaluated prompt through llama-cpp-python's prefix cache.

llama-cpp-python's own defaults (top_k=40, min_p=0.05, ...) are overridden on every call so the
sampling is exactly what :class:`ssb.records.SamplingParams` says.
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

OPTIONS = ("n_threads", "n_ctx", "n_gpu_layers", "n_batch", "lora_scale")


class LlamaCppBackend:
    name = "llama.cpp"

    def __init__(self, model: str, adapter: str | None = None, *, n_threads: int | None = None,
                 n_ctx: int = 4096, n_gpu_layers: int = 0, n_batch: int = 512,
                 lora_scale: float = 1.0):
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
        if n_threads is not None:
            kwargs["n_threads"] = int(n_threads)
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

    def generate(self, conversations: Sequence[Sequence[Message]], params: SamplingParams,
                 progress: ProgressCallback | None = None) -> list[list[Completion]]:
        check_params(params)
        check_conversations(conversations)
        greedy = params.temperature == 0
        results: list[list[Completion]] = []
        for i, conv in enumerate(conversations):
            key = conversation_key(conv)
            samples = []
            for j in range(1 if greedy else params.n):
                samples.append(self._one(conv, params, derive_seed(params.seed, key, j), i))
                if progress is not None and not greedy:
                    progress(1)
            if greedy:
                samples = repeat_greedy(samples[0], params.n)
                if progress is not None:
                    progress(params.n)
            results.append(samples)
        return results

    def _one(self, conv: Sequence[Message], params: SamplingParams, seed: int,
             index: int) -> Completion:
        try:
            out = self.llm.create_chat_completion(
                messages=[dict(m) for m in conv],
                temperature=params.temperature, top_p=params.top_p,
                top_k=params.top_k,  # llama.cpp: k <= 0 disables top-k
                min_p=0.0, typical_p=1.0, repeat_penalty=1.0, presence_penalty=0.0,
                frequency_penalty=0.0, max_tokens=params.max_new_tokens,
                stop=list(params.stop) or None, seed=seed,
            )
        except ValueError as exc:  # e.g. "Requested tokens (5000) exceed context window"
            raise SsbError(f"llama.cpp, conversation {index}: {exc} (raise -B n_ctx=..., "
                           f"now {self.n_ctx})") from None
        choice = out["choices"][0]
        text = choice["message"].get("content") or ""
        return Completion(text, int(out["usage"]["completion_tokens"]),
                          finish_reason_of(choice.get("finish_reason")))

    def close(self) -> None:
        llm = getattr(self, "llm", None)
        if llm is not None:
            llm.close()
            self.llm = None


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
