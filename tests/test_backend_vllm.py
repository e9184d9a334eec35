"""The vllm backend without its engine: the one-line missing-dependency error, option checking
and the translation of ssb's sampling settings.  Everything the engine does (generation, counts
and finish reasons, seeds, adapters, curate with a resume, `vllm serve`) is tested against the
real vLLM in tests/vllm_engine/ (run under .venv-vllm; skipped with the reason elsewhere)."""

from __future__ import annotations

import sys

import pytest

from ssb.errors import MissingDependency, SsbError
from ssb.plugins import get_registry
from ssb.records import SamplingParams


def test_missing_vllm_is_one_clear_line(monkeypatch, tiny_model_dir):
    monkeypatch.setitem(sys.modules, "vllm", None)  # `import vllm` raises ImportError
    with pytest.raises(MissingDependency) as err:
        get_registry().backend("vllm").create(str(tiny_model_dir))
    message = str(err.value)
    assert "pip install 'softboot-backends[vllm]'" in message and "\n" not in message


def test_missing_vllm_through_the_cli(monkeypatch, ssb_cli, tiny_model_dir):
    monkeypatch.setitem(sys.modules, "vllm", None)
    code, _, err = ssb_cli("generate", "--backend", "vllm", "--model", str(tiny_model_dir),
                           "--prompt", "hi")
    assert code == 2 and "softboot-backends[vllm]" in err


def test_unknown_option_is_refused_before_importing_vllm(tiny_model_dir):
    with pytest.raises(SsbError, match="unknown option.*n_threads"):
        get_registry().backend("vllm").create(str(tiny_model_dir), n_threads=4)


def test_sampling_translation():
    from ssb_backends.vllm import sampling_kwargs

    p = SamplingParams(n=4, temperature=0.8, top_p=0.9, top_k=0, max_new_tokens=100,
                       stop=["\n\n"], seed=1)
    kw = sampling_kwargs(p, 1234)
    assert kw["n"] == 4 and kw["top_k"] == -1 and kw["seed"] == 1234
    assert kw["max_tokens"] == 100 and kw["stop"] == ["\n\n"] and kw["top_p"] == 0.9
    assert kw["repetition_penalty"] == 1.0 and kw["min_p"] == 0.0
    greedy = sampling_kwargs(SamplingParams(n=4, temperature=0.0, top_k=20), 1)
    assert greedy["n"] == 1 and greedy["top_k"] == 20 and greedy["stop"] is None


def test_bad_kv_cache_space_is_refused_before_importing_vllm(tiny_model_dir):
    with pytest.raises(SsbError, match="kv_cache_space must be >= 1"):
        get_registry().backend("vllm").create(str(tiny_model_dir), kv_cache_space=0)


def test_bad_cpu_adapter_is_refused_when_the_option_is_parsed(monkeypatch, tiny_model_dir):
    """`-B cpu_adapter=...` is checked against its declared values (merge|lora) when the options
    are parsed, before any engine or model loads, and by the constructor for direct callers."""
    factory = get_registry().backend("vllm")
    assert factory.parse_options({"cpu_adapter": "lora"})["cpu_adapter"] == "lora"
    with pytest.raises(SsbError, match="cpu_adapter"):
        factory.parse_options({"cpu_adapter": "merged"})
    monkeypatch.setitem(sys.modules, "vllm", None)
    with pytest.raises(SsbError, match="cpu_adapter must be merge or lora"):
        from ssb_backends.vllm import VLLMBackend

        VLLMBackend(str(tiny_model_dir), cpu_adapter="merged")
