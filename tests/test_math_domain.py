"""MATH-style plugin: loaders on the real files, golds, filters, bad rows, 500/500 golds."""

import json

import pytest

from ssb.errors import DataError, SsbError
from ssb.plugins import get_registry
from ssb.verification import verify_batch


def load(name, source, **kw):
    return get_registry().dataset(name).load(str(source), "test", **kw)


def test_math500(shared_data):
    res = load("math500", shared_data / "math500" / "test.jsonl")
    assert len(res.problems) == 500
    first = res.problems[0]
    assert first.gold == r"\left( 3, \frac{\pi}{2} \right)"
    assert first.id == "math500/test/precalculus/807.json"
    assert first.metadata["level"] == 2 and first.metadata["subject"] == "Precalculus"


def test_math500_golds_verify_500_of_500(shared_data):
    problems = load("math500", shared_data / "math500" / "test.jsonl").problems
    items = [(f"The final answer is $\\boxed{{{p.gold}}}$.", p.gold) for p in problems]
    verdicts = verify_batch("math", items, workers=2, timeout=10)
    assert sum(v.correct for v in verdicts) == 500, [
        (p.gold, v) for p, v in zip(problems, verdicts) if not v.correct]


def test_math500_golds_through_math_verify_itself(shared_data):
    """Not just string equality: every gold also parses and self-verifies in math-verify."""
    from ssb.verification import latex_equal

    problems = load("math500", shared_data / "math500" / "test.jsonl").problems
    failed = [p.gold for p in problems if not latex_equal(p.gold, p.gold, timeout=10).correct]
    assert failed == []


def test_aime24_and_amc23(shared_data):
    aime = load("aime24", shared_data / "aime24")
    assert len(aime.problems) == 30
    golds = [p.gold for p in aime.problems]
    assert "25" in golds and "025" not in golds
    assert all(g == str(int(g)) for g in golds)
    padded = next(p for p in aime.problems if p.gold == "25")
    assert padded.metadata["raw_answer"] == "025"
    assert verify_batch("math", [(r"\boxed{025}", "25"), (r"\boxed{25}", "25")])[1].correct

    amc = load("amc23", shared_data / "amc23" / "test.jsonl")
    assert len(amc.problems) == 40
    assert amc.problems[0].gold == "27" and "-1" in [p.gold for p in amc.problems]


def test_math_filters_and_solution_fallback(shared_data, tmp_path):
    src = shared_data / "math500" / "test.jsonl"
    algebra = get_registry().dataset("math").load(str(src), "test",
                                                  filters={"subject": "algebra", "level": "5"})
    assert algebra.problems and all(p.metadata["subject"] == "Algebra" and
                                    p.metadata["level"] == 5 for p in algebra.problems)
    assert len(get_registry().dataset("math").load(str(src), "test",
                                                   filters={"level": "1,2"}).problems) == 133
    with pytest.raises(SsbError, match="unknown filter"):
        get_registry().dataset("math").load(str(src), "test", filters={"colour": "red"})
    # Hendrycks layout: no answer field, level "Level 3", type; gold from the last box
    rows = [{"problem": "p", "solution": r"so $\boxed{1}$ then $\boxed{\frac{1}{2}}$.",
             "level": "Level 3", "type": "Algebra"}]
    path = tmp_path / "hendrycks.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    res = get_registry().dataset("math").load(str(path), "test", filters={"level": 3})
    assert [p.gold for p in res.problems] == [r"\frac{1}{2}"]


def test_bad_rows(tmp_path):
    rows = ['{"problem": "ok", "answer": "1"}',
            '{"problem": "no answer", "solution": "nothing boxed"}',
            '{"answer": "2"}']
    path = tmp_path / "m.jsonl"
    path.write_text("\n".join(rows) + "\n")
    with pytest.raises(DataError) as err:
        load("math500", path)
    assert err.value.line == 2 and err.value.field == "solution"
    res = load("math500", path, skip_bad=True)
    assert len(res.problems) == 1 and [b.line for b in res.skipped] == [2, 3]
    assert res.skipped[1].field == "problem"

    path.write_text('{"problem": "p", "answer": "x"}\n')
    with pytest.raises(DataError, match="integer"):
        load("aime24", path)


def test_hub_failure_is_clear(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    with pytest.raises(SsbError, match="--source"):
        get_registry().dataset("math500").load(None, "test")


def test_unreachable_hub_is_asked_once_then_the_local_cache_only(monkeypatch):
    """Not in offline mode, but the hub cannot be reached (here: a closed loopback port): one
    short connection attempt, then the local datasets cache only, and one line naming the
    cause and --source (datasets' own retries took ~20 s per load here)."""
    import datasets
    from huggingface_hub import constants

    for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")
    with pytest.raises(SsbError, match=r"hub cannot be reached \(.*\).*\n.*--source"):
        get_registry().dataset("math500").load(None, "test")
    assert constants.HF_HUB_OFFLINE is False and datasets.config.HF_HUB_OFFLINE is False


def test_template_registered():
    t = get_registry().template("math", "math-tutor@1")
    assert t.domain == "math"
    text = t.teacher_messages("Q", "C", "W")[1]["content"]
    assert "never mention" in text and "\\boxed{}" in text
