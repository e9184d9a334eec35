"""The vllm backend: vLLM cannot be installed next to ssb's CPU stack (it pins another torch), so
these tests cover what runs without it: the one-line missing-dependency error, option checking,
and the translation of ssb's sampling settings and vLLM's outputs.  A CUDA machine with vLLM
installed also runs the real generation test (marked gpu)."""

from __future__ import annotations

import sys
from types import SimpleNamespace

import pytest

from ssb.errors import MissingDependency, SsbError
from ssb.plugins import get_registry
from ssb.records import SamplingParams


def test_missing_vllm_is_one_clear_line(monkeypatch, tiny_model_dir):
    monkeypatch.setitem(sys.modules, "vllm", None)  # `import vllm` raises ImportError
    with pytest.raises(MissingDependency) as err:
        get_registry().backend("vllm").create(str(tiny_model_dir))
    message = str(err.value)
    assert "pip install 'ssb-backends[vllm]'" in message and "\n" not in message


def test_missing_vllm_through_the_cli(monkeypatch, ssb_cli, tiny_model_dir):
    monkeypatch.setitem(sys.modules, "vllm", None)
    code, _, err = ssb_cli("generate", "--backend", "vllm", "--model", str(tiny_model_dir),
                           "--prompt", "hi")
    assert code == 2 and "ssb-backends[vllm]" in err


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


def test_completion_counts_exclude_eos():
    from ssb_backends.vllm import completion_of

    eos = completion_of(SimpleNamespace(text="42", token_ids=[5, 6, 7], finish_reason="stop",
                                        stop_reason=None))
    assert (eos.num_tokens, eos.finish_reason) == (2, "stop")
    by_string = completion_of(SimpleNamespace(text="4", token_ids=[5, 6],
                                              finish_reason="stop", stop_reason="\n\n"))
    assert by_string.num_tokens == 2
    budget = completion_of(SimpleNamespace(text="...", token_ids=[1] * 8,
                                           finish_reason="length", stop_reason=None))
    assert (budget.num_tokens, budget.finish_reason) == (8, "length")


@pytest.mark.gpu
def test_vllm_generates_on_a_gpu(tiny_model_dir):
    pytest.importorskip("vllm")
    b = get_registry().backend("vllm").create(str(tiny_model_dir), gpu_memory_utilization=0.3,
                                              enforce_eager=True)
    conv = [{"role": "user", "content": "2+2?"}]
    params = SamplingParams(n=3, temperature=1.0, max_new_tokens=8, seed=3)
    first = b.generate([conv, conv], params)
    again = b.generate([conv], params)
    assert len(first) == 2 and all(len(per) == 3 for per in first)
    assert [c.text for c in again[0]] == [c.text for c in first[0]]
    b.close()
