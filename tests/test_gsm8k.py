"""GSM8K plugin: loader on the real files, bad rows, numeric verification."""

import json

import pytest

from ssb.errors import DataError
from ssb.plugins import get_registry
from ssb.verification import verify_batch


@pytest.fixture(scope="module")
def gsm8k():
    return get_registry().dataset("gsm8k")


def test_real_files(gsm8k, shared_data):
    train = gsm8k.load(str(shared_data / "gsm8k" / "train.jsonl"), "train")
    test = gsm8k.load(str(shared_data / "gsm8k"), "test")  # a folder with {split}.jsonl
    assert len(train.problems) == 7473 and len(test.problems) == 1319
    assert not train.skipped and not test.skipped
    first = test.problems[0]
    assert first.gold == "18" and first.id == "gsm8k/test/0" and first.dataset == "gsm8k"
    assert first.question.startswith("Janet")
    assert train.problems[0].gold == "72"
    assert all("," not in p.gold and p.gold for p in train.problems)
    assert "<<" in train.problems[0].metadata["solution"]


def _write(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return str(path)


def test_bad_rows_name_file_line_field(gsm8k, tmp_path):
    good = {"question": "1+1?", "answer": "1+1=2\n#### 2"}
    cases = [
        ({"question": "q", "answer": "no marker"}, "answer"),
        ({"answer": "#### 3"}, "question"),
        ({"question": "   ", "answer": "#### 3"}, "question"),
        ({"question": "q", "answer": "#### "}, "answer"),
    ]
    for bad, field in cases:
        path = _write(tmp_path / "bad.jsonl", [good, "", bad])  # the blank line still counts
        with pytest.raises(DataError) as err:
            gsm8k.load(path, "train")
        assert err.value.line == 3 and err.value.field == field and err.value.path == path
        assert f"{path}:3" in str(err.value)
        result = gsm8k.load(path, "train", skip_bad=True)
        assert len(result.problems) == 1 and len(result.skipped) == 1
        assert result.skipped[0].line == 3 and result.skipped[0].field == field


def test_malformed_json_line(gsm8k, tmp_path):
    path = _write(tmp_path / "broken.jsonl",
                  [{"question": "q", "answer": "#### 1"}, '{"question": "q", "ans'])
    with pytest.raises(DataError) as err:
        gsm8k.load(path, "train")
    assert err.value.line == 2


def test_json_and_parquet_sources(gsm8k, tmp_path):
    rows = [{"question": "q1", "answer": "#### 1,200"}, {"question": "q2", "answer": "x\n#### 7"}]
    (tmp_path / "d.json").write_text(json.dumps(rows))
    assert [p.gold for p in gsm8k.load(str(tmp_path / "d.json"), "test").problems] == ["1200", "7"]
    import datasets

    datasets.Dataset.from_list(rows).to_parquet(str(tmp_path / "d.parquet"))
    assert len(gsm8k.load(str(tmp_path / "d.parquet"), "test").problems) == 2


@pytest.mark.parametrize("response, gold, correct", [
    (r"\boxed{18}", "18", True),
    (r"\boxed{\$18.00}", "18", True),
    ("She makes $18 every day. The answer is $18.", "18", True),
    ("The answer is 1,000 dollars.", "1000", True),
    (r"\boxed{10\%}", "10", True),
    (r"\boxed{\frac{36}{2}}", "18", True),
    ("16 - 3 - 4 = 9 eggs, 9 * 2 = 18", "18", True),  # last number fallback
    ("#### 72", "72", True),
    (r"\boxed{x = 18}", "18", True),
    (r"\boxed{3}", "30", False),
    (r"\boxed{17.5}", "18", False),
    ("no numbers here", "5", False),
    (r"\boxed{-5}", "5", False),
])
def test_numeric_verification(response, gold, correct):
    assert verify_batch("gsm8k", [(response, gold)])[0].correct is correct


def test_template_registered():
    t = get_registry().template("gsm8k")
    assert t.id == "gsm8k-tutor@2"  # the default: version 2 of the hinted prompt
    msgs = t.teacher_messages("Q?", "right work", "wrong work")
    content = msgs[1]["content"]
    assert "\\boxed{}" in content and "Q?" in content
    # v2 shows the correct attempt first (the small model tends to re-type the first one shown)
    assert content.index("right work") < content.index("wrong work")
    assert "\\boxed{}" in t.system
    v1 = get_registry().template("gsm8k", "gsm8k-tutor@1")  # older runs stay reproducible
    assert v1.student_messages("Q?") == t.student_messages("Q?")
    assert v1.teacher_messages("Q?", "r", "w") != t.teacher_messages("Q?", "r", "w")


def test_rows_filter_takes_a_slice_in_file_order(gsm8k, shared_data):
    source = str(shared_data / "gsm8k" / "train.jsonl")
    dev = gsm8k.load(source, "train", filters={"rows": "7273:7473"}).problems
    assert len(dev) == 200 and dev[0].id == "gsm8k/train/7273" and dev[-1].id == "gsm8k/train/7472"
    assert [p.id for p in gsm8k.load(source, "train", filters={"rows": ":3"}).problems] == [
        "gsm8k/train/0", "gsm8k/train/1", "gsm8k/train/2"]
    assert len(gsm8k.load(source, "train", filters={"rows": "7470:"}).problems) == 3
    for bad in ("5", "9:3", "a:b", "-1:4"):
        with pytest.raises(Exception, match="rows="):
            gsm8k.load(source, "train", filters={"rows": bad})
    with pytest.raises(Exception, match="filters on 'rows' only"):
        gsm8k.load(source, "train", filters={"subject": "x"})


def test_instruction_templates_are_registered_for_every_math_domain():
    registry = get_registry()
    for domain in ("gsm8k", "math", "arithmetic"):
        default = registry.template(domain)
        assert default.name.endswith("-tutor")  # the default is unchanged
        for name in ("prose@1", "plan@1", "example@1"):
            t = registry.template(domain, name)
            messages = t.student_messages("What is 2+2?")
            assert "What is 2+2?" in messages[-1]["content"]
            assert "\\boxed{" in messages[0]["content"] + messages[-1]["content"]
            assert "code" in messages[0]["content"] + messages[-1]["content"]
