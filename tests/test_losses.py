"""Each distillation loss against a plain float64 reference, the top-k binning, the loss spec
parser and a plugin loss registered through a real entry point."""

from __future__ import annotations

import math
import textwrap

import pytest
import torch

from ssb.errors import SsbError
from ssb.losses import LossInputs, TopKTeacher, cross_entropy, forward_kl, jsd, \
    parse_loss_spec, reverse_kl


# -- plain float64 references (python floats, one row at a time) ------------------------------

def ref_log_softmax(row: list[float], T: float) -> list[float]:
    z = [x / T for x in row]
    m = max(z)
    log_norm = m + math.log(sum(math.exp(x - m) for x in z))
    return [x - log_norm for x in z]


def ref_kl(p_log: list[float], q_log: list[float]) -> float:
    return sum(math.exp(a) * (a - b) for a, b in zip(p_log, q_log) if a > -math.inf)


def ref_rows(s_logits, t_logits, T):
    return ([ref_log_softmax(r, T) for r in s_logits.tolist()],
            [ref_log_softmax(r, T) for r in t_logits.tolist()])


def ref_forward_kl(s_logits, t_logits, T):
    s, t = ref_rows(s_logits, t_logits, T)
    return sum(ref_kl(tr, sr) for sr, tr in zip(s, t)) / len(s) * T * T


def ref_reverse_kl(s_logits, t_logits, T):
    s, t = ref_rows(s_logits, t_logits, T)
    return sum(ref_kl(sr, tr) for sr, tr in zip(s, t)) / len(s) * T * T


def ref_jsd(s_logits, t_logits, T, beta):
    s, t = ref_rows(s_logits, t_logits, T)
    total = 0.0
    for sr, tr in zip(s, t):
        m = [math.log(beta * math.exp(a) + (1 - beta) * math.exp(b)) for a, b in zip(tr, sr)]
        total += beta * ref_kl(tr, m) + (1 - beta) * ref_kl(sr, m)
    return total / len(s) * T * T


def ref_ce(s_logits, targets):
    rows = [ref_log_softmax(r, 1.0) for r in s_logits.tolist()]
    return -sum(r[y] for r, y in zip(rows, targets.tolist())) / len(rows)


def ref_topk_forward_kl(s_logits, t_logits, T, k):
    """KL over k+1 bins: the teacher's top k tokens and one bin for everything else."""
    s, t = ref_rows(s_logits, t_logits, T)
    total = 0.0
    for sr, tr in zip(s, t):
        top = sorted(range(len(tr)), key=lambda i: -tr[i])[:k]
        rest = [i for i in range(len(tr)) if i not in set(top)]
        tb = [tr[i] for i in top] + [math.log(sum(math.exp(tr[i]) for i in rest))]
        sb = [sr[i] for i in top] + [math.log(sum(math.exp(sr[i]) for i in rest))]
        total += ref_kl(tb, sb)
    return total / len(s) * T * T


@pytest.fixture
def logits():
    g = torch.Generator().manual_seed(0)
    s = torch.randn(6, 40, generator=g, dtype=torch.float64) * 3
    t = torch.randn(6, 40, generator=g, dtype=torch.float64) * 3
    y = torch.randint(0, 40, (6,), generator=g)
    return s, t, y


@pytest.mark.parametrize("T", [1.0, 2.0, 0.7])
@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-10), (torch.float32, 2e-5)])
def test_losses_match_float64_reference(logits, T, dtype, tol):
    s, t, y = logits
    inputs = LossInputs(student_logits=s.to(dtype), target_ids=y, teacher_logits=t.to(dtype),
                        temperature=T)
    assert forward_kl(inputs).item() == pytest.approx(ref_forward_kl(s, t, T), rel=tol, abs=tol)
    assert reverse_kl(inputs).item() == pytest.approx(ref_reverse_kl(s, t, T), rel=tol, abs=tol)
    for beta in (0.5, 0.1, 0.9):
        assert jsd(inputs, beta=beta).item() == pytest.approx(ref_jsd(s, t, T, beta), rel=tol,
                                                              abs=tol)
    # Cross-entropy is at temperature 1 whatever T is (it is the SFT term).
    assert cross_entropy(inputs).item() == pytest.approx(ref_ce(s, y), rel=tol, abs=tol)


def test_kl_terms_scale_with_temperature_squared(logits):
    s, t, y = logits
    base = forward_kl(LossInputs(s, y, teacher_logits=t, temperature=1.0)).item()
    # Scaling both logits by 2 and using T = 2 gives the same distributions, hence KL x 4.
    scaled = forward_kl(LossInputs(2 * s, y, teacher_logits=2 * t, temperature=2.0)).item()
    assert scaled == pytest.approx(4 * base, rel=1e-10)


@pytest.mark.parametrize("k", [1, 5, 39])
@pytest.mark.parametrize("T", [1.0, 2.0])
def test_topk_binned_kl_matches_reference_and_lower_bounds_full(logits, k, T):
    from ssb.stages.distill.teacher import topk_from_logits

    s, t, y = logits
    rows = topk_from_logits(t, k, T)
    top = TopKTeacher(rows.indices, rows.log_probs.double(), rows.tail_log_mass.double(), T)
    value = forward_kl(LossInputs(s, y, teacher_topk=top, temperature=T)).item()
    assert value == pytest.approx(ref_topk_forward_kl(s, t, T, k), rel=1e-6, abs=1e-9)
    assert value <= ref_forward_kl(s, t, T) + 1e-9  # data-processing inequality


def test_topk_over_whole_vocabulary_equals_dense_for_every_loss(logits):
    from ssb.stages.distill.teacher import topk_from_logits

    s, t, y = logits
    rows = topk_from_logits(t, 40, 2.0)
    top = TopKTeacher(rows.indices, rows.log_probs.double(), rows.tail_log_mass.double(), 2.0)
    dense = LossInputs(s, y, teacher_logits=t, temperature=2.0)
    sparse = LossInputs(s.clone().requires_grad_(), y, teacher_topk=top, temperature=2.0)
    for fn in (forward_kl, reverse_kl, jsd):
        assert fn(sparse).item() == pytest.approx(fn(dense).item(), rel=1e-9)
    forward_kl(sparse).backward()
    assert torch.isfinite(sparse.student_logits.grad).all()


def test_topk_student_tail_is_exact_when_top_holds_almost_all_mass():
    # Student puts 1 - 1e-12 on token 0: log(1 - sum p_top) would round to log(0) in float32.
    s = torch.full((1, 50), -30.0)
    s[0, 0] = 0.0
    t = torch.zeros(1, 50)
    t[0, 0] = 1.0  # the teacher's top-1 is token 0 too; its tail holds ~95% of the mass
    from ssb.stages.distill.teacher import topk_from_logits

    rows = topk_from_logits(t, 1, 1.0)
    top = TopKTeacher(rows.indices, rows.log_probs, rows.tail_log_mass, 1.0)
    s_leaf = s.clone().requires_grad_()
    value = forward_kl(LossInputs(s_leaf, torch.zeros(1, dtype=torch.long), teacher_topk=top))
    expected = ref_topk_forward_kl(s.double(), t.double(), 1.0, 1)
    assert value.item() == pytest.approx(expected, rel=1e-5)
    value.backward()
    assert torch.isfinite(s_leaf.grad).all()


def test_store_temperature_must_match_loss_temperature(logits):
    from ssb.stages.distill.teacher import topk_from_logits

    s, t, y = logits
    rows = topk_from_logits(t, 5, 1.0)
    top = TopKTeacher(rows.indices, rows.log_probs, rows.tail_log_mass, 1.0)
    with pytest.raises(SsbError, match="temperature"):
        forward_kl(LossInputs(s, y, teacher_topk=top, temperature=2.0))


def test_jsd_rejects_degenerate_beta(logits):
    s, t, y = logits
    with pytest.raises(SsbError, match="beta"):
        jsd(LossInputs(s, y, teacher_logits=t), beta=0.0)


def test_parse_loss_spec():
    assert parse_loss_spec("kl=1,ce=0") == [("kl", 1.0, {}), ("ce", 0.0, {})]
    assert parse_loss_spec(" jsd = 0.5 , jsd.beta=0.3, ce") == [
        ("jsd", 0.5, {"beta": 0.3}), ("ce", 1.0, {})]
    for bad in ("", "kl=x", "kl=1,kl=2", "kl=-1", "jsd.beta=0.3", "kl=nan"):
        with pytest.raises(SsbError):
            parse_loss_spec(bad)


def test_builtin_losses_come_from_the_registry():
    from ssb.plugins import get_registry

    reg = get_registry()
    assert {"kl", "rkl", "jsd", "ce"} <= set(reg.losses)
    s = torch.randn(3, 10, dtype=torch.float64)
    t = torch.randn(3, 10, dtype=torch.float64)
    inputs = LossInputs(s, torch.zeros(3, dtype=torch.long), teacher_logits=t, temperature=2.0)
    assert reg.loss("kl").fn(inputs).item() == pytest.approx(ref_forward_kl(s, t, 2.0), rel=1e-10)
    assert reg.loss("jsd").fn(inputs, beta=0.3).item() == pytest.approx(
        ref_jsd(s, t, 2.0, 0.3), rel=1e-10)


PLUGIN_MODULE = textwrap.dedent('''
    """A test plugin offering one loss: the mean squared error between probabilities."""
    from ssb.hookspecs import hookimpl
    from ssb.types import Loss


    def prob_mse(inputs, scale=1.0):
        import torch
        s = torch.softmax(inputs.student_logits.double() / inputs.temperature, -1)
        t = torch.softmax(inputs.teacher_logits.double() / inputs.temperature, -1)
        return ((s - t) ** 2).sum(-1).mean() * scale


    @hookimpl
    def register_losses(register):
        register(Loss(name="prob_mse", fn=prob_mse, description="test plugin loss"))
''')


@pytest.fixture
def loss_plugin(tmp_path, monkeypatch):
    """Install a plugin for real: a module plus a dist-info with an ``ssb`` entry point."""
    from ssb.plugins import get_registry

    (tmp_path / "ssb_test_loss_plugin.py").write_text(PLUGIN_MODULE)
    dist = tmp_path / "ssb_test_loss_plugin-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: ssb-test-loss-plugin\n"
                                   "Version: 0.1\n")
    (dist / "entry_points.txt").write_text("[ssb]\ntest_loss = ssb_test_loss_plugin\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    from conftest import allowed_env

    monkeypatch.setenv("SSB_LOAD_PLUGINS", allowed_env(tmp_path)["SSB_LOAD_PLUGINS"])
    yield get_registry(refresh=True)
    monkeypatch.undo()
    get_registry(refresh=True)


def test_plugin_loss_is_used_by_name_in_a_distill_step(loss_plugin, tiny_model_dir):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from ssb.stages.distill.alignment import align_records
    from ssb.stages.distill.batching import DistillCollator
    from ssb.stages.distill.step import distill_step, resolve_loss_terms
    from ssb.models import load_tokenizer
    from test_alignment import make_record

    offered = {p["distribution"]: p["registers"]["losses"] for p in loss_plugin.report()["plugins"]}
    assert offered["ssb-test-loss-plugin"] == ["prob_mse"]
    tok = load_tokenizer(str(tiny_model_dir))
    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir), dtype=torch.float32)
    model = get_peft_model(base, LoraConfig(r=2, target_modules=["q_proj"], task_type="CAUSAL_LM"))
    batch = DistillCollator(tok.pad_token_id)(align_records(tok, [make_record(0)])[0])
    terms = resolve_loss_terms("prob_mse=2,prob_mse.scale=3")
    result = distill_step(model, batch, terms, temperature=1.0, teacher="online")
    # The same quantity computed directly from dense logits of both views.
    with torch.no_grad():
        s_logits = base(input_ids=batch["student_input_ids"]).logits.reshape(-1, base.config.vocab_size)
        t_logits = base(input_ids=batch["teacher_input_ids"]).logits.reshape(-1, base.config.vocab_size)
    s = torch.softmax(s_logits[batch["student_pred_index"]].double(), -1)
    t = torch.softmax(t_logits[batch["teacher_pred_index"]].double(), -1)
    expected = ((s - t) ** 2).sum(-1).mean().item() * 3
    assert result.parts["prob_mse"] == pytest.approx(expected, rel=1e-4)
    assert result.loss.item() == pytest.approx(2 * expected, rel=1e-4)
