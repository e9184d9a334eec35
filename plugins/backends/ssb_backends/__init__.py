"""ssb-backends: the generation backends behind one contract (see :class:`ssb.types.Backend`).

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
from ssb.types import BackendFactory

__version__ = "0.1.0"

_BACKENDS = {
    "transformers": ("ssb_backends.transformers",
                     "HF transformers generate (batched, left padding, CPU/CUDA, peft adapters)"),
    "llama.cpp": ("ssb_backends.llama_cpp",
                  "llama-cpp-python on a GGUF model (CPU/GPU, GGUF LoRA adapters)"),
    "openai": ("ssb_backends.openai_compat",
               "an OpenAI-compatible server (vllm serve, SGLang, llama_cpp.server, ...)"),
    "vllm": ("ssb_backends.vllm", "in-process vLLM (tensor parallel, LoRA adapters)"),
}


def _lazy_create(module_name: str):
    def create(model: str, adapter: str | None = None, **options: Any):
        return importlib.import_module(module_name).create(model, adapter=adapter, **options)

    create.__doc__ = f"Load the backend implemented in {module_name}."
    return create


@hookimpl
def register_backends(register):
    for name, (module_name, description) in _BACKENDS.items():
        register(BackendFactory(name=name, create=_lazy_create(module_name),
                                description=description))
