"""Alignment of the teacher and student views on the tiny model, property by property."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ssb.records import CuratedRecord, Rollout

SYSTEM = "You are a helpful math tutor. Reason step by step and put the final answer in \\boxed{}."


def make_record(i: int, *, same_views: bool = False, solution: str | None = None) -> CuratedRecord:
    """A curated record whose teacher view carries a hint the student view lacks."""
    question = f"Natalia sold {10 + i} clips in April and half as many in May. How many clips?"
    sol = solution or (f"In May she sold {(10 + i) // 2} clips. Altogether {10 + i} + "
                       f"{(10 + i) // 2} = {10 + i + (10 + i) // 2}. "
                       f"The answer is \\boxed{{{10 + i + (10 + i) // 2}}}.")
    student = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": question}]
    hinted = (f"{question}\nHere is a correct response: {sol}\n"
              "And an attempt marked wrong by a checker: The answer is \\boxed{13}.")
    teacher = student if same_views else [{"role": "system", "content": SYSTEM},
                                          {"role": "user", "content": hinted}]
    rollout = Rollout(text=sol, num_tokens=10, finish_reason="stop", extracted="1", correct=True)
    wrong = Rollout(text="13", num_tokens=1, finish_reason="stop", extracted="13", correct=False)
    return CuratedRecord(id=f"p{i}", question=question, gold=str(10 + i + (10 + i) // 2),
                         dataset="toy", domain="gsm8k", template="test@1",
                         student_messages=[dict(m) for m in student],
                         teacher_messages=[dict(m) for m in teacher], solution=sol,
                         correct_rollout=rollout, wrong_rollout=wrong,
                         rollout_answers=["1", "13"], rollout_correct=[True, False])


def write_curated(directory: Path, records: list[CuratedRecord]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "curated.jsonl").write_text(
        "".join(json.dumps(r.to_dict()) + "\n" for r in records), encoding="utf-8")
    return directory


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    from ssb.models import load_tokenizer

    return load_tokenizer(str(tiny_model_dir))


def test_end_of_turn_is_derived_from_the_template(tokenizer):
    from ssb.stages.distill.alignment import end_of_turn_id

    assert end_of_turn_id(tokenizer) == tokenizer.convert_tokens_to_ids("<|im_end|>")


def test_solution_ids_identical_in_both_views_and_closed_by_end_of_turn(tokenizer):
    from ssb.stages.distill.alignment import align_records, end_of_turn_id

    records = [make_record(i) for i in range(4)]
    examples, report = align_records(tokenizer, records)
    eot = end_of_turn_id(tokenizer)
    assert report.kept == 4 and not report.dropped and not report.truncated
    for rec, ex in zip(records, examples):
        assert ex.teacher_ids[ex.teacher_prompt_len:] == ex.solution_ids
        assert ex.student_ids[ex.student_prompt_len:] == ex.solution_ids
        assert ex.solution_ids[-1] == eot
        assert list(ex.solution_ids[:-1]) == tokenizer(rec.solution, add_special_tokens=False)[
            "input_ids"]
        assert ex.teacher_prompt_len > ex.student_prompt_len  # the hint is in the teacher view
        # Both prompts are the chat template with the generation prompt.
        for ids, plen, msgs in ((ex.student_ids, ex.student_prompt_len, rec.student_messages),
                                (ex.teacher_ids, ex.teacher_prompt_len, rec.teacher_messages)):
            text = tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
            assert tokenizer.decode(ids[:plen]) == text
            # prompt + solution is exactly the conversation with the assistant turn rendered.
            full = tokenizer.apply_chat_template(
                msgs + [{"role": "assistant", "content": rec.solution}], tokenize=False)
            assert full.startswith(tokenizer.decode(ids))
            assert full[len(tokenizer.decode(ids)):].strip() == ""


def test_positions_masks_and_padding_sides(tokenizer):
    from ssb.stages.distill.alignment import align_records
    from ssb.stages.distill.batching import pad_view

    examples, _ = align_records(tokenizer, [make_record(i, solution="x" * (i + 1) + " = 1.")
                                            for i in range(3)])
    seqs = [e.student_ids for e in examples]
    plens = [e.student_prompt_len for e in examples]
    pad = tokenizer.pad_token_id
    for side in ("right", "left"):
        view = pad_view(seqs, plens, pad, side)
        ids, mask, pred = view["input_ids"], view["attention_mask"], view["pred_index"]
        width = ids.shape[1]
        flat_ids, flat_mask = ids.reshape(-1), mask.reshape(-1)
        # logits at p-1 predict token p: the token after each predicting position is the target.
        targets = [t for e in examples for t in e.solution_ids]
        assert flat_ids[pred + 1].tolist() == targets
        assert bool(flat_mask[pred].all()) and bool(flat_mask[pred + 1].all())
        # No prompt-predicting and no padding position is used.
        for b, e in enumerate(examples):
            rows = [p - b * width for p in pred.tolist() if b * width <= p < (b + 1) * width]
            offset = width - len(e.student_ids) if side == "left" else 0
            assert rows == list(range(offset + e.student_prompt_len - 1,
                                      offset + len(e.student_ids) - 1))
        # Position ids restart at 0 at the first real token on either side (the exact list
        # below; a ">= 0" check would hold after any clamp).
        for b, e in enumerate(examples):
            real = view["position_ids"][b][mask[b].bool()]
            assert real.tolist() == list(range(len(e.student_ids)))


def test_solution_position_logits_equal_dense_logits_either_padding(tiny_model_dir, tokenizer):
    import torch
    from transformers import AutoModelForCausalLM

    from ssb.stages.distill.alignment import align_records
    from ssb.stages.distill.batching import pad_view
    from ssb.stages.distill.forward import body_hidden_at

    model = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir), dtype=torch.float32).eval()
    examples, _ = align_records(tokenizer, [make_record(i) for i in range(3)])
    outs = {}
    with torch.no_grad():
        for side in ("right", "left"):
            view = pad_view([e.teacher_ids for e in examples],
                            [e.teacher_prompt_len for e in examples], tokenizer.pad_token_id, side)
            hidden = body_hidden_at(model, view["input_ids"], view["attention_mask"],
                                    view["position_ids"], view["pred_index"])
            ours = model.lm_head(hidden)
            dense = model(input_ids=view["input_ids"], attention_mask=view["attention_mask"],
                          position_ids=view["position_ids"]).logits
            dense_rows = dense.reshape(-1, dense.shape[-1])[view["pred_index"]]
            torch.testing.assert_close(ours, dense_rows, rtol=1e-5, atol=1e-5)
            outs[side] = ours
        # Each example alone (no padding at all) gives the same rows.
        alone = []
        for e in examples:
            ids = torch.tensor([e.teacher_ids])
            logits = model(input_ids=ids).logits[0]
            alone.append(logits[e.teacher_prompt_len - 1:len(e.teacher_ids) - 1])
    torch.testing.assert_close(outs["left"], outs["right"], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(outs["right"], torch.cat(alone), rtol=1e-4, atol=1e-4)


def _fresh_student(tiny_model_dir):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir), dtype=torch.float32)
    return get_peft_model(base, LoraConfig(r=4, lora_alpha=8, lora_dropout=0.1,
                                           target_modules=["q_proj", "v_proj", "gate_proj"],
                                           task_type="CAUSAL_LM"))


@pytest.mark.parametrize("loss", ["kl=1", "rkl=1", "jsd=1"])
def test_initial_loss_is_zero_when_views_are_equal(tiny_model_dir, tokenizer, loss):
    import torch

    from ssb.stages.distill.alignment import align_records
    from ssb.stages.distill.batching import DistillCollator
    from ssb.stages.distill.step import distill_step, resolve_loss_terms

    model = _fresh_student(tiny_model_dir)
    model.train()  # LoRA dropout active: with B = 0 the adapter still adds exactly nothing
    terms = resolve_loss_terms(loss)
    collate = DistillCollator(tokenizer.pad_token_id, teacher="online")
    same, _ = align_records(tokenizer, [make_record(i, same_views=True) for i in range(3)])
    result = distill_step(model, collate(same), terms, temperature=2.0, teacher="online",
                          logit_chunk=7)
    assert abs(result.loss.item()) < 1e-6
    different, _ = align_records(tokenizer, [make_record(i) for i in range(3)])
    result = distill_step(model, collate(different), terms, temperature=2.0, teacher="online")
    assert result.loss.item() > 1e-6
    result.loss.backward()
    grads = [p.grad for n, p in model.named_parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


def test_chunked_loss_and_gradients_equal_unchunked(tiny_model_dir, tokenizer):
    import torch

    from ssb.stages.distill.alignment import align_records
    from ssb.stages.distill.batching import DistillCollator
    from ssb.stages.distill.step import distill_step, resolve_loss_terms

    model = _fresh_student(tiny_model_dir)
    with torch.no_grad():  # a non-zero adapter so the student differs from the teacher
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.05)
    model.eval()
    terms = resolve_loss_terms("kl=1,ce=0.3,rkl=0.5")
    batch = DistillCollator(tokenizer.pad_token_id)(align_records(
        tokenizer, [make_record(i) for i in range(3)])[0])
    results = {}
    for chunk in (10_000, 13):
        model.zero_grad()
        r = distill_step(model, batch, terms, temperature=2.0, teacher="online", logit_chunk=chunk)
        r.loss.backward()
        grads = torch.cat([p.grad.reshape(-1) for p in model.parameters() if p.grad is not None])
        results[chunk] = (r.loss.detach(), grads, r.parts)
    torch.testing.assert_close(results[13][0], results[10_000][0], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(results[13][1], results[10_000][1], rtol=1e-4, atol=1e-7)
    assert results[13][2].keys() == {"kl", "ce", "rkl"}


def test_max_length_truncates_both_views_identically_or_drops(tokenizer):
    from ssb.stages.distill.alignment import align_records

    records = [make_record(i) for i in range(3)]
    full, _ = align_records(tokenizer, records)
    longest_prompt = max(full[0].teacher_prompt_len, full[0].student_prompt_len)
    limit = longest_prompt + 5
    cut, report = align_records(tokenizer, records, max_length=limit, overlong="truncate",
                                min_solution_tokens=3)
    assert len(report.truncated) == 3 and not report.dropped
    for ex, orig in zip(cut, full):
        assert len(ex.teacher_ids) <= limit and len(ex.student_ids) <= limit
        assert ex.solution_ids == orig.solution_ids[:len(ex.solution_ids)]
        assert ex.teacher_ids[ex.teacher_prompt_len:] == ex.student_ids[ex.student_prompt_len:]
        assert ex.truncated
    dropped, report = align_records(tokenizer, records, max_length=limit, overlong="drop")
    assert dropped == [] and report.dropped == ["p0", "p1", "p2"]
    # No room for a minimal solution: dropped even in truncate mode.
    none, report = align_records(tokenizer, records, max_length=longest_prompt + 1)
    assert none == [] and len(report.dropped) == 3


def test_bad_curated_line_names_file_and_line(tmp_path):
    from ssb.stages.distill.alignment import load_curated
    from ssb.errors import DataError

    d = write_curated(tmp_path / "c", [make_record(0)])
    with open(d / "curated.jsonl", "a") as f:
        f.write(json.dumps({"id": "x"}) + "\n")
    with pytest.raises(DataError) as err:
        load_curated(d)
    assert "curated.jsonl:2" in str(err.value) and "question" in str(err.value)
