"""The vllm backend: in-process ``vllm.LLM`` (GPU), tensor parallel, LoRA via ``LoRARequest``.

Written against vLLM's documented offline API (``vllm.LLM``, ``vllm.SamplingParams``,
``vllm.lora.request.LoRARequest``, ``LLM.generate`` with token prompts and one
``SamplingParams`` per prompt).  vLLM pins its own torch, so it cannot live in ssb's CPU
environment: this module imports it only when the backend is created, and the import-error path
is what the test suite exercises here (see plugins/backends/README.md).

- The prompt is the tokenizer's own chat template, tokenized without extra special tokens (the
  template already wrote them), passed as ``{"prompt_token_ids": ...}``.
- Every conversation gets its own ``SamplingParams(n=K, seed=...)`` with a seed derived from the
  sampling seed and the conversation's content, so samples do not depend on batch composition.
- ``num_tokens`` excludes the end-of-sequence token, like the other backends.
"""

from __future__ import annotations

from typing import Any, Sequence

from ssb.errors import SsbError
from ssb.records import Completion, Message, SamplingParams
from ssb.types import ProgressCallback

from ssb_backends.common import (check_conversations, check_options, check_params,
                                 conversation_key, derive_seed, finish_reason_of, repeat_greedy,
                                 require)

OPTIONS = ("tensor_parallel_size", "gpu_memory_utilization", "max_lora_rank", "max_model_len",
           "dtype", "enforce_eager", "chunk_size")


def sampling_kwargs(params: SamplingParams, seed: int) -> dict[str, Any]:
    """The keyword arguments of ``vllm.SamplingParams`` for one conversation.

    Greedy asks for one sample (the caller copies it n times); top_k 0 ("off" in ssb) is -1 in
    vLLM; penalties are pinned to neutral so the model's generation_config cannot add any.
    """
    greedy = params.temperature == 0
    return {
        "n": 1 if greedy else params.n,
        "temperature": params.temperature,
        "top_p": 1.0 if greedy else params.top_p,
        "top_k": params.top_k if params.top_k > 0 else -1,
        "min_p": 0.0,
        "repetition_penalty": 1.0,
        "presence_penalty": 0.0,
        "frequency_penalty": 0.0,
        "max_tokens": params.max_new_tokens,
        "stop": list(params.stop) or None,
        "seed": seed,
    }


def completion_of(output: Any) -> Completion:
    """A :class:`Completion` from a vLLM ``CompletionOutput`` (text, token_ids, finish_reason,
    stop_reason): ``stop_reason is None`` with finish "stop" means the EOS token ended it, and
    that token is not counted."""
    n = len(output.token_ids)
    reason = finish_reason_of(output.finish_reason)
    if reason == "stop" and output.stop_reason is None and n > 0:
        n -= 1
    return Completion(output.text, n, reason)


class VLLMBackend:
    name = "vllm"

    def __init__(self, model: str, adapter: str | None = None, *, tensor_parallel_size: int = 1,
                 gpu_memory_utilization: float = 0.9, max_lora_rank: int = 64,
                 max_model_len: int | None = None, dtype: str = "auto",
                 enforce_eager: bool = False, chunk_size: int = 512):
        vllm = require("vllm", "vllm", "vllm")
        from ssb import models

        ref = models.resolve(model)
        path = models.hf_dir(ref)  # a .gguf is converted once to a cached HF directory
        kwargs: dict[str, Any] = dict(
            model=path, tensor_parallel_size=int(tensor_parallel_size),
            gpu_memory_utilization=float(gpu_memory_utilization), dtype=dtype,
            enforce_eager=bool(enforce_eager), trust_remote_code=False,
        )
        if max_model_len:
            kwargs["max_model_len"] = int(max_model_len)
        self.lora_request = None
        if adapter:
            from pathlib import Path

            if not (Path(adapter).expanduser() / "adapter_config.json").is_file():
                raise SsbError(f"adapter {adapter}: not a peft adapter directory "
                               "(no adapter_config.json)")
            from vllm.lora.request import LoRARequest

            kwargs.update(enable_lora=True, max_lora_rank=int(max_lora_rank), max_loras=1)
            self.lora_request = LoRARequest("adapter", 1, str(Path(adapter).expanduser()))
        self._vllm = vllm
        self.llm = vllm.LLM(**kwargs)
        self.tokenizer = self.llm.get_tokenizer()
        if getattr(self.tokenizer, "chat_template", None) is None:
            raise SsbError(f"{model}: the tokenizer has no chat template; ssb needs an "
                           "instruct/chat model")
        self.chunk_size = max(1, int(chunk_size))

    def generate(self, conversations: Sequence[Sequence[Message]], params: SamplingParams,
                 progress: ProgressCallback | None = None) -> list[list[Completion]]:
        check_params(params)
        check_conversations(conversations)
        greedy = params.temperature == 0
        results: list[list[Completion]] = []
        for start in range(0, len(conversations), self.chunk_size):
            chunk = conversations[start:start + self.chunk_size]
            prompts = [{"prompt_token_ids": self._prompt_ids(c)} for c in chunk]
            per_request = [
                self._vllm.SamplingParams(**sampling_kwargs(
                    params, derive_seed(params.seed, conversation_key(c), 0)))
                for c in chunk
            ]
            outputs = self.llm.generate(prompts, per_request, use_tqdm=False,
                                        lora_request=self.lora_request)
            for out in outputs:
                got = [completion_of(o) for o in sorted(out.outputs, key=lambda o: o.index)]
                results.append(repeat_greedy(got[0], params.n) if greedy else got)
            if progress is not None:
                progress(len(chunk) * params.n)
        return results

    def _prompt_ids(self, conversation: Sequence[Message]) -> list[int]:
        text = self.tokenizer.apply_chat_template(list(conversation), tokenize=False,
                                                  add_generation_prompt=True)
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def close(self) -> None:
        self.llm = None


def create(model: str, adapter: str | None = None, **options: Any) -> VLLMBackend:
    check_options("vllm", options, OPTIONS)
    return VLLMBackend(model, adapter, **options)
