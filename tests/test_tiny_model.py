"""The test kit itself: the tiny model builds offline, reloads, and speaks ChatML."""

from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast


def test_tiny_model_reloads_and_generates(tiny_model_dir):
    tok = PreTrainedTokenizerFast.from_pretrained(str(tiny_model_dir))
    model = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir))
    text = tok.apply_chat_template(
        [{"role": "system", "content": "s"}, {"role": "user", "content": "2+2?"}],
        tokenize=False, add_generation_prompt=True,
    )
    assert text.endswith("<|im_start|>assistant\n")
    ids = tok(text, return_tensors="pt").input_ids
    out = model.generate(ids, max_new_tokens=5, do_sample=False)
    assert out.shape[1] > ids.shape[1]
    assert tok.convert_tokens_to_ids("<|im_end|>") == model.config.eos_token_id
