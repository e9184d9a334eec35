"""The ``science`` verifier on a labelled set of replies (tests/science/data/replies.jsonl),
through the Python API, the verification helpers and `ssb verify`; hostile input in bounded
time."""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path

import pytest

from ssb_science.verifier import ScienceVerifier, encode_gold, parse_gold

DATA = Path(__file__).parent / "data" / "replies.jsonl"
ROWS = [json.loads(line) for line in DATA.read_text(encoding="utf-8").splitlines() if line.strip()]
GOLD = encode_gold("C", {"A": "fog", "B": "rain", "C": "drought", "D": "tornado"})


def test_the_labelled_set_is_large_and_hostile_enough():
    kinds = Counter(r["kind"] for r in ROWS)
    assert len(ROWS) >= 60 and kinds["hostile"] >= 20
    notes = " | ".join(r["note"] for r in ROWS)
    for case in ("every letter listed", "not A", "inside a word", "choices quoted"):
        assert case in notes
    # both verdicts occur under both modes, and strict differs from lenient somewhere
    assert {r["expect_correct"] for r in ROWS} == {True, False}
    assert any(r["expect_correct"] and not r["expect_strict_correct"] for r in ROWS)


@pytest.mark.parametrize("row", ROWS, ids=[f"{i + 1}-{r['note'][:40]}" for i, r in enumerate(ROWS)])
def test_labelled_reply(row):
    v = ScienceVerifier()
    verdict = v.verify(row["response"], row["gold"])
    assert (verdict.extracted, verdict.correct) == (row["expect_extracted"], row["expect_correct"])
    assert verdict.error is None
    if not verdict.correct and verdict.extracted is None:
        assert verdict.detail  # no choice, or two: the verdict says why
    strict = v.verify(row["response"], row["gold"], strict=True)
    assert strict.correct == row["expect_strict_correct"]


def test_reasons_name_what_is_wrong():
    v = ScienceVerifier()
    assert v.verify("\\boxed{A} or \\boxed{C}", GOLD).detail == (
        "names 2 different choices (A, C) as its final answer")
    assert "not one of the choices (A, B, C, D)" in v.verify("\\boxed{E}", GOLD).detail
    assert "list of choices" in v.verify("A. fog\nB. rain\nC. drought\nD. tornado", GOLD).detail
    assert v.verify("It is not A.", GOLD).detail.startswith("no choice found")
    assert v.verify("So C.", GOLD, strict=True).detail.startswith("no explicit choice")
    assert v.verify("\\boxed{C}", GOLD).detail is None  # a clear verdict needs no reason


def test_extract_reads_letters_without_the_gold():
    v = ScienceVerifier()
    assert v.extract("The answer is (b).") == "B"
    assert v.extract("so C.") == "C" and v.extract("so C.", strict=True) is None
    assert v.extract("\\boxed{A} or \\boxed{B}") is None
    assert v.extract("Answer: Carbon") is None


def test_gold_forms():
    assert parse_gold(GOLD).choices["C"] == "drought"
    assert parse_gold(" (c) ").answer == "C" and parse_gold("B").choices == {}
    v = ScienceVerifier()
    for bad in ("{bad", '{"answer": "E", "choices": {"A": "x", "B": "y"}}', "drought",
                '{"answer": "A", "choices": []}'):
        verdict = v.verify("\\boxed{A}", bad)
        assert not verdict.correct and verdict.error.startswith("bad gold: ")


HOSTILE = [
    "(" * 200_000, "A " * 200_000, "\\boxed{" * 50_000, "the answer is " * 20_000,
    "Answer: A, " * 20_000, "not " * 50_000 + "A", "\n" * 200_000, "drought " * 50_000,
    "\\boxed{" * 5_000 + "C" + "}" * 5_000, "A is correct " * 20_000, "A. fog\n" * 30_000,
    "é" * 300_000 + "\\boxed{C}",
    # the next-line marker, list negation and the restated-choice list
    "Answer:\n" * 100_000, "**Answer**:\n\n" * 50_000, "not A, " * 50_000 + "C",
    "A, B or " * 50_000, "cannot be A or " * 40_000, "Answer:\nA. fog\n" * 40_000,
    "A) fog\nB) rain\nC) drought\nD) tornado\n" * 20_000 + "C) drought", "+1 -1 " * 100_000,
]


@pytest.mark.parametrize("reply", HOSTILE, ids=range(len(HOSTILE)))
def test_hostile_input_is_judged_in_bounded_time(reply):
    v = ScienceVerifier()
    start = time.process_time()  # CPU time: the bound holds on a busy machine too
    for strict in (False, True):
        v.verify(reply, GOLD, strict=strict)
    # measured 1-70 ms per verdict on a 2-core box; a bound with room, not a benchmark
    assert time.process_time() - start < 2.0


def test_verify_batch_in_helper_processes_matches_in_process():
    from ssb.verification import verify_batch

    items = [(r["response"], r["gold"]) for r in ROWS]
    helpers = verify_batch("science", items, workers=2)
    threads = verify_batch("science", items)
    expected = [(r["expect_extracted"], r["expect_correct"]) for r in ROWS]
    assert [(v.extracted, v.correct) for v in helpers] == expected
    assert [(v.extracted, v.correct) for v in threads] == expected


def test_ssb_verify_passes_the_labelled_set(ssb_cli, tmp_path):
    code, stdout, err = ssb_cli("verify", "--domain", "science", "--input", str(DATA),
                                "--workers", "0")
    assert code == 0, err
    out = [json.loads(line) for line in stdout.splitlines() if line.strip()]
    assert len(out) == len(ROWS)
    for row in out:
        assert (row["extracted"], row["correct"]) == (row["expect_extracted"],
                                                       row["expect_correct"]), row["note"]
    code, stdout, _ = ssb_cli("verify", "--domain", "science", "--gold", GOLD,
                              "--response", "Answer: (C) drought")
    assert code == 0 and json.loads(stdout)["correct"] is True
    code, stdout, _ = ssb_cli("verify", "--domain", "science", "--gold", "C",
                              "--response", "So C.", "--strict")
    assert code == 1 and json.loads(stdout)["extracted"] is None
