"""softboot-backends: the generation backends behind one contract (see :class:`ssb.types.Backend`).

=============  =========================================================  ===================
name           engine                                                     extra
=============  =========================================================  ===================
transformers   HF ``generate``, batched, left padding, peft adapters      (core deps)
llama.cpp      llama-cpp-python on a ``.gguf``, GGUF LoRA adapters        ``[llama]``
openai         any OpenAI-compatible server (vLLM, SGLang, llama.cpp)     ``[openai]`` (httpx)
vllm           in-process ``vllm.LLM``, LoRA via ``LoRARequest``          ``[vllm]``
=============  =========================================================  ===================

Registering is cheap: each backend module (and its engine) is imported only when created.
"""

from __future__ import annotations

import importlib
from typing import Any

from ssb.hookspecs import hookimpl
from ssb.types import ADAPTER_GGUF, ADAPTER_PEFT, BackendFactory, BackendOption

__version__ = "0.1.0"

O = BackendOption
# A torch device string: checked when -B is parsed, so `device=banana` is one line, not a traceback.
DEVICE = r"cpu|mps|(cuda|xpu|npu)(:[0-9]+)?"

# Each backend's -B options, typed, declared once (the modules' OPTIONS and the constructors'
# defaults must agree: tests/test_options.py::test_backend_options_are_declared_once).  volatile: speed or plumbing only (left out of a run's resume
# identity); secret: never written to a file or a log.
_BACKENDS: dict[str, dict[str, Any]] = {
    "transformers": dict(
        module="ssb_backends.transformers",
        description="HF transformers generate (batched, left padding, CPU/CUDA, peft adapters)",
        adapter_formats=frozenset({ADAPTER_PEFT}), loads_hf_dirs=True, loads_gguf=True,
        options=(O("device", str, None, "cpu, cuda, cuda:1 ... (default: cuda if available)",
                   volatile=True, values=DEVICE),
                 O("dtype", str, "auto", "auto, float32, bfloat16, float16",
                   values="auto|float32|fp32|bfloat16|bf16|float16|fp16"),
                 O("batch_size", int, 8, "conversations per generate call", volatile=True,
                   ge=1),
                 O("merge_adapter", bool, True, "fold the LoRA into the weights before "
                   "generating (faster; same math)"))),
    "llama.cpp": dict(
        module="ssb_backends.llama_cpp",
        description="llama-cpp-python on a GGUF model (CPU/GPU, GGUF LoRA adapters)",
        adapter_formats=frozenset({ADAPTER_GGUF}), loads_hf_dirs=False, loads_gguf=True,
        options=(O("n_threads", int, None, "CPU threads (default: llama.cpp's)", volatile=True),
                 O("n_ctx", int, 4096, "context window per sequence"),
                 O("n_gpu_layers", int, 0, "layers offloaded to the GPU", volatile=True),
                 O("n_batch", int, 512, "prompt tokens per decode call", volatile=True),
                 O("lora_scale", float, 1.0, "scale of the GGUF LoRA adapter"),
                 # Not volatile: above 3 rows llama.cpp uses other kernels (float rounding), so
                 # a resumed run keeps it to reproduce its texts exactly.
                 # 8, not the sweep's fastest 32 (1.94x one-at-a-time vs 1.54x at 8, on 2 cores,
                 # every slot busy): a step decodes every slot, busy or not, so at 32 a call with
                 # few sequences (generate -n 8, a small eval batch) costs 4x what it does at 8.
                 # Large jobs set it: studies/gsm8k.toml uses -B n_parallel=32.
                 O("n_parallel", int, 8, "sequences decoded together per llama_decode "
                   "(1: one at a time)"))),
    "openai": dict(
        module="ssb_backends.openai_compat",
        description="an OpenAI-compatible server (vllm serve, SGLang, llama_cpp.server, ...)",
        adapter_formats=frozenset(), loads_hf_dirs=True, loads_gguf=True,
        options=(O("base_url", str, None, "server URL(s), comma-separated (round-robin)",
                   volatile=True),
                 O("api_key", str, None, "API key (prefer api_key_env)", volatile=True,
                   secret=True),
                 O("api_key_env", str, None, "environment variable holding the API key",
                   volatile=True),
                 O("concurrency", int, 8, "requests in flight", volatile=True),
                 O("timeout", float, 600.0, "seconds per request", volatile=True),
                 O("max_retries", int, 5, "retries of a failed request", volatile=True),
                 O("backoff", float, 1.0, "first retry delay in seconds", volatile=True),
                 O("server", str, "auto", "auto, llama.cpp, vllm, sglang, openai "
                   "(which sampling fields the server takes)", volatile=True))),
    "vllm": dict(
        module="ssb_backends.vllm", description="in-process vLLM (tensor parallel, LoRA adapters)",
        adapter_formats=frozenset({ADAPTER_PEFT}), loads_hf_dirs=True, loads_gguf=True,
        options=(O("tensor_parallel_size", int, 1, "GPUs per model", volatile=True),
                 O("gpu_memory_utilization", float, 0.9, "share of GPU memory (not used on "
                   "CPU)", volatile=True),
                 O("max_lora_rank", int, 64, "must be >= the adapter's rank", volatile=True),
                 O("max_model_len", int, None, "context length"),
                 O("dtype", str, "auto", "auto, bfloat16, float16, float32"),
                 O("enforce_eager", bool, False, "disable CUDA graphs", volatile=True),
                 O("chunk_size", int, 512, "conversations per vLLM call", volatile=True),
                 O("kv_cache_space", int, None, "KV cache GiB (CPU default: "
                   "$VLLM_CPU_KVCACHE_SPACE or 4; GPU default: from gpu_memory_utilization)",
                   volatile=True),
                 O("log_file", str, None, "where vLLM's own output goes (default: "
                   "<ssb cache>/logs/vllm-*.log; 'stderr')", volatile=True),
                 O("cpu_adapter", str, "merge", "on a CPU, serve an adapter merged into the "
                   "base (merge: vLLM's CPU LoRA path stalls on large batches) or via LoRA "
                   "(lora)", values="merge|lora"))),
}


def option_names(backend: str) -> tuple[str, ...]:
    """The ``-B`` option names of ``backend``, read from the schema above (each backend
    module's ``OPTIONS``): every option is declared once, here.  A test checks that each
    backend's constructor takes exactly these, with these defaults."""
    return tuple(o.name for o in _BACKENDS[backend]["options"])


def _lazy_create(module_name: str):
    def create(model: str, adapter: str | None = None, **options: Any):
        return importlib.import_module(module_name).create(model, adapter=adapter, **options)

    create.__doc__ = f"Load the backend implemented in {module_name}."
    return create


@hookimpl
def register_backends(register):
    for name, spec in _BACKENDS.items():
        register(BackendFactory(name=name, create=_lazy_create(spec["module"]),
                                description=spec["description"], options=spec["options"],
                                adapter_formats=spec["adapter_formats"],
                                loads_hf_dirs=spec["loads_hf_dirs"],
                                loads_gguf=spec["loads_gguf"]))
