"""The example third-party plugin (examples/ssb-plugin-arithmetic), through the registry."""

import re

import pytest

from ssb.plugins import get_registry


def test_registered_like_a_third_party_plugin():
    report = get_registry().report()
    entry = next(p for p in report["plugins"] if p["name"] == "arithmetic")
    assert entry["distribution"] == "softboot-arithmetic"
    assert entry["registers"]["datasets"] == ["arithmetic"]
    assert entry["registers"]["verifiers"] == ["arithmetic"]
    assert entry["registers"]["prompts"] == ["arithmetic-tutor@2", "arithmetic-tutor@1", "prose@1",
                                              "plan@1", "example@1"]


def test_generation_is_deterministic_and_split_specific():
    loader = get_registry().dataset("arithmetic")
    a = loader.load(None, "train", filters={"n": 30, "seed": 3}).problems
    b = loader.load(None, "train", filters={"n": 30, "seed": 3}).problems
    c = loader.load(None, "test", filters={"n": 30, "seed": 3}).problems
    assert [p.to_dict() for p in a] == [p.to_dict() for p in b]
    assert [p.question for p in a] != [p.question for p in c]
    assert len(loader.load(None, "train").problems) == 200
    assert len(loader.load(None, "test").problems) == 50
    assert len(loader.load(None, "dev").problems) == 200


def test_start_filter_gives_the_later_problems_of_the_same_stream():
    """``start``: a later bootstrapping round's new problems, the same ids as in the stream."""
    loader = get_registry().dataset("arithmetic")
    stream = loader.load(None, "train", filters={"n": 720}).problems
    later = loader.load(None, "train", filters={"n": 480, "start": 240}).problems
    assert len(later) == 480 and later[0].id == "arithmetic/train/240"
    assert [p.to_dict() for p in later] == [p.to_dict() for p in stream[240:]]
    assert later[-1].to_dict() == stream[719].to_dict()
    with pytest.raises(Exception, match="start must be >= 0"):
        loader.load(None, "train", filters={"start": -1})


def test_dev_split_shares_no_problem_with_train_or_test():
    """Settings are tuned on dev: a dev question that also sits in test would leak."""
    loader = get_registry().dataset("arithmetic")
    questions = {split: {p.question for p in loader.load(None, split, filters={"n": n}).problems}
                 for split, n in (("train", 1000), ("test", 1000), ("dev", 400))}
    assert len(questions["dev"]) == 400
    assert not questions["dev"] & questions["test"]
    assert not questions["dev"] & questions["train"]


def _replay(question: str) -> int:
    """Recompute a generated problem's answer from its text alone (an independent check)."""
    value = int(re.match(r"\w+ has (\d+)", question).group(1))
    for sentence in re.split(r"(?<=\.) ", question)[1:-1]:
        if m := re.search(r"gets (\d+) .* with (\d+) ", sentence):
            value += int(m.group(1)) * int(m.group(2))
        elif m := re.search(r"gives (\d+)", sentence):
            value -= int(m.group(1))
        elif "doubles" in sentence:
            value *= 2
        elif "triples" in sentence:
            value *= 3
        elif m := re.search(r"into (\d+) equal groups", sentence):
            assert value % int(m.group(1)) == 0
            value //= int(m.group(1))
        elif m := re.search(r"finds (\d+) more", sentence):
            value += int(m.group(1))
        else:
            raise AssertionError(f"unknown step: {sentence}")
    return value


def test_answers_match_the_text_and_steps():
    problems = get_registry().dataset("arithmetic").load(None, "train").problems
    for p in problems:
        assert 2 <= p.metadata["steps"] <= 3
        assert int(p.gold) > 0
        assert _replay(p.question) == int(p.gold), p.question


@pytest.mark.parametrize("response, gold, correct", [
    (r"So she has \boxed{173} shells.", "173", True),
    ("12 * 5 = 60, 60 + 113 = 173", "173", True),
    (r"\boxed{172}", "173", False),
    ("The answer is 1,730.", "1730", True),
    ("I don't know", "3", False),
])
def test_verifier(response, gold, correct):
    assert get_registry().verifier("arithmetic").verify(response, gold).correct is correct


def test_local_file_source(tmp_path):
    path = tmp_path / "a.jsonl"
    path.write_text('{"question": "2+2?", "answer": 4}\n{"question": "x", "answer": "2.5"}\n')
    from ssb.errors import DataError

    with pytest.raises(DataError) as err:
        get_registry().dataset("arithmetic").load(str(path), "train")
    assert err.value.line == 2 and err.value.field == "answer"
