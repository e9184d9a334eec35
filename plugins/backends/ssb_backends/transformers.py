"""The transformers backend: batched ``generate`` with left padding on CPU or CUDA.

Prompts are rendered with the tokenizer's own chat template, sorted by length so each batch
pads little, and the completions are returned in the caller's order.  A ``.gguf`` model goes
through :func:`ssb.models.hf_dir` (converted once into a cached HF directory).

Reproducibility: every batch is seeded with ``torch.manual_seed`` from the sampling seed and the
batch index, so the same conversations, ``batch_size`` and seed give the same completions on the
same device.  (Batched sampling shares one random stream per batch, so changing the batch
composition changes the samples; the llama.cpp and OpenAI backends seed per conversation.)
"""

from __future__ import annotations

from typing import Any, Sequence

from ssb.errors import SsbError
from ssb.records import Completion, Message, SamplingParams
from ssb.types import ProgressCallback

from ssb_backends.common import (check_conversations, check_options, check_params, cut_at_stop,
                                 derive_seed, repeat_greedy)

from ssb_backends import option_names  # noqa: E402

OPTIONS = option_names("transformers")  # declared once, in the schema of ssb_backends


class TransformersBackend:
    """A loaded HF causal LM (+ optional peft adapter) and its tokenizer."""

    name = "transformers"

    def __init__(self, model: str, adapter: str | None = None, *, device: str | None = None,
                 dtype: str = "auto", batch_size: int = 8, merge_adapter: bool = True):
        import torch
        from ssb import models

        if int(batch_size) < 1:
            raise SsbError(f"batch_size must be >= 1, got {batch_size}")
        self.batch_size = int(batch_size)
        self.device = device or models.default_device()
        ref = models.resolve(model)
        path = models.hf_dir(ref)
        self.tokenizer = models.load_tokenizer(path)
        if self.tokenizer.chat_template is None:
            raise SsbError(f"{model}: the tokenizer has no chat template; ssb needs an "
                           "instruct/chat model")
        self.tokenizer.padding_side = "left"
        lm = models.load_causal_lm(path, dtype=dtype, device=self.device)
        if adapter:
            lm = _with_adapter(lm, adapter, merge=bool(merge_adapter))
        lm.eval()
        self.model = lm
        self._torch = torch
        gen_cfg = getattr(lm, "generation_config", None)
        eos: set[int] = set()
        for source in (getattr(gen_cfg, "eos_token_id", None), self.tokenizer.eos_token_id):
            if isinstance(source, int):
                eos.add(source)
            elif source:
                eos.update(int(t) for t in source)
        if not eos:
            raise SsbError(f"{model}: no end-of-sequence token in tokenizer or generation config")
        self.eos_ids = sorted(eos)
        pad = self.tokenizer.pad_token_id
        if pad is None:
            pad = getattr(gen_cfg, "pad_token_id", None)
        self.pad_id = int(pad) if pad is not None else self.eos_ids[0]

    # -- the contract ------------------------------------------------------------------------
    def generate(self, conversations: Sequence[Sequence[Message]], params: SamplingParams,
                 progress: ProgressCallback | None = None) -> list[list[Completion]]:
        self.check_params(params)
        check_conversations(conversations)
        prompts = [self._prompt_ids(conv) for conv in conversations]
        greedy = params.temperature == 0
        samples_per_prompt = 1 if greedy else params.n
        per_batch = max(1, self.batch_size // samples_per_prompt)
        # Longest first: similar lengths share a batch (little padding), and an out-of-memory
        # error shows up on the first batch rather than the last.
        order = sorted(range(len(prompts)), key=lambda i: -len(prompts[i]))
        results: list[list[Completion] | None] = [None] * len(prompts)
        for b, start in enumerate(range(0, len(order), per_batch)):
            idx = order[start:start + per_batch]
            outs = self._generate_batch([prompts[i] for i in idx], params, samples_per_prompt,
                                        seed=derive_seed(params.seed, "batch", b))
            for k, i in enumerate(idx):
                got = outs[k * samples_per_prompt:(k + 1) * samples_per_prompt]
                results[i] = repeat_greedy(got[0], params.n) if greedy else got
            if progress is not None:
                progress(len(idx) * params.n)
        return [r for r in results if r is not None]

    def check_params(self, params: SamplingParams) -> None:
        """Refuse what this model cannot honour (stages call it before starting work): more new
        tokens than its context, a top_k above its vocabulary, NaN, ..."""
        config = self.model.config
        check_params(params, context=getattr(config, "max_position_embeddings", None),
                     vocab=getattr(config, "vocab_size", None))

    def close(self) -> None:
        self.model = None
        if self._torch.cuda.is_available():
            self._torch.cuda.empty_cache()

    # -- internals ---------------------------------------------------------------------------
    def _prompt_ids(self, conversation: Sequence[Message]) -> list[int]:
        text = self.tokenizer.apply_chat_template(list(conversation), tokenize=False,
                                                  add_generation_prompt=True)
        # The template already wrote every special token; adding BOS again would change the prompt.
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def _generate_batch(self, prompts: list[list[int]], params: SamplingParams, samples: int,
                        seed: int) -> list[Completion]:
        torch = self._torch
        from transformers import GenerationConfig

        width = max(len(p) for p in prompts)
        input_ids = torch.full((len(prompts), width), self.pad_id, dtype=torch.long)
        attention = torch.zeros((len(prompts), width), dtype=torch.long)
        for r, p in enumerate(prompts):
            input_ids[r, width - len(p):] = torch.tensor(p, dtype=torch.long)
            attention[r, width - len(p):] = 1
        sample = params.temperature > 0
        # Every sampling knob is set explicitly: `generate` fills a None from the model's
        # generation_config (Qwen ships top_k=20, repetition_penalty=1.05, ...) and then from
        # global defaults (top_k=50), so "off" must be spelled 0 / 1.0, never None.
        cfg = GenerationConfig(
            max_new_tokens=params.max_new_tokens, do_sample=sample,
            num_return_sequences=samples, eos_token_id=self.eos_ids, pad_token_id=self.pad_id,
            temperature=params.temperature if sample else 1.0,
            top_p=params.top_p if sample else 1.0,
            # 0 = off; greedy ignores top_k, and any value but transformers' default (50) there
            # prints a "generation flags are not valid" warning on every run
            top_k=params.top_k if sample else 50,
            typical_p=1.0, repetition_penalty=1.0, no_repeat_ngram_size=0,
        )
        if getattr(self.model.generation_config, "min_p", None) is not None:
            cfg.min_p = 0.0  # neutral, rather than inherit the model's
        kwargs: dict[str, Any] = {}
        if params.stop:
            cfg.stop_strings = list(params.stop)
            kwargs["tokenizer"] = self.tokenizer  # generate needs it to match stop strings
        torch.manual_seed(seed)
        with torch.inference_mode():
            out = self.model.generate(
                input_ids=input_ids.to(self.model.device),
                attention_mask=attention.to(self.model.device),
                generation_config=cfg, **kwargs,
            )
        new = out[:, width:].tolist()
        return [self._completion(row, params) for row in new]

    def _completion(self, row: list[int], params: SamplingParams) -> Completion:
        """Text, token count and an honest finish reason for one generated row."""
        eos = set(self.eos_ids)
        end = next((t for t, tok in enumerate(row) if tok in eos), None)
        tokens = row if end is None else row[:end]
        text = self.tokenizer.decode(tokens, skip_special_tokens=True)
        if params.stop:
            cut, found = cut_at_stop(text, params.stop)
            if found:
                # Count only the tokens up to the one that completed the stop string (the row
                # may continue with padding after generate stopped it).
                n = _first_prefix_containing(self.tokenizer, tokens, params.stop)
                return Completion(cut, n, "stop")
        if end is not None:
            return Completion(text, end, "stop")
        return Completion(text, len(tokens), "length" if len(tokens) >= params.max_new_tokens
                          else "stop")


def _first_prefix_containing(tokenizer, tokens: list[int], stop: Sequence[str]) -> int:
    """The smallest t such that decode(tokens[:t]) contains a stop string (binary search: once
    a prefix contains one, every longer prefix does)."""
    lo, hi = 1, len(tokens)
    while lo < hi:
        mid = (lo + hi) // 2
        if cut_at_stop(tokenizer.decode(tokens[:mid], skip_special_tokens=True), stop)[1]:
            hi = mid
        else:
            lo = mid + 1
    return lo


def _with_adapter(lm, adapter: str, merge: bool):
    from pathlib import Path

    try:
        from peft import PeftModel
    except ImportError:
        from ssb.errors import MissingDependency

        raise MissingDependency("loading an adapter needs peft: pip install peft") from None
    path = Path(adapter).expanduser()
    if not (path / "adapter_config.json").is_file():
        raise SsbError(f"adapter {adapter}: not a peft adapter directory "
                       "(no adapter_config.json)")
    peft_model = PeftModel.from_pretrained(lm, str(path), is_trainable=False)
    # Merging LoRA weights makes generation as fast as the base model; adapters that cannot
    # merge stay wrapped.
    if merge and hasattr(peft_model, "merge_and_unload"):
        try:
            return peft_model.merge_and_unload()
        except Exception:  # noqa: BLE001 - fall back to the wrapped model
            return peft_model
    return peft_model


def create(model: str, adapter: str | None = None, **options: Any) -> TransformersBackend:
    check_options("transformers", options, OPTIONS)
    return TransformersBackend(model, adapter, **options)
