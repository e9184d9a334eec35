"""ARC loaders: the shared copies offline, folders and parquet, numeric labels, bad rows (one
line naming file:line:field, exit 2) and the hub path without a hub (one clean error line)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter

import pytest

from ssb_science.verifier import parse_gold


def _loader(name):
    from ssb.plugins import get_registry

    return get_registry().dataset(name)


def _write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


ROW = {"id": "X_1", "question": "Which is a gas?",
       "choices": {"text": ["ice", "steam", "iron", "wood"], "label": ["A", "B", "C", "D"]},
       "answerKey": "B"}


@pytest.mark.parametrize("name,file,split,count", [
    ("arc-challenge", "challenge-test.jsonl", "test", 1172),
    ("arc-challenge", "challenge-validation.jsonl", "validation", 299),
    ("arc-easy", "easy-test.jsonl", "test", 2376),
    ("arc-easy", "easy-validation.jsonl", "validation", 570),
])
def test_shared_copies_load_offline(shared_data, name, file, split, count):
    problems = _loader(name).load(str(shared_data / "arc" / file), split).problems
    assert len(problems) == count and len({p.id for p in problems}) == count
    sizes = Counter(len(p.metadata["labels"]) for p in problems)
    assert set(sizes) <= {3, 4, 5} and sizes[4] > 0.99 * count - 10
    for p in problems:
        gold = parse_gold(p.gold)
        assert p.dataset == name and p.id.startswith(f"{name}/")
        assert gold.answer == p.metadata["answer"] and list(gold.choices) == p.metadata["labels"]
        for label, text in gold.choices.items():  # the student sees every lettered choice
            assert f"\n{label}. {text}" in p.question
        assert p.question.startswith(p.metadata["stem"])


def test_folder_source_and_dev_alias(shared_data):
    folder = str(shared_data / "arc")
    dev = _loader("arc-easy").load(folder, "dev").problems
    assert len(dev) == 570 and dev[0].id.startswith("arc-easy/")
    both = _loader("arc").load(folder, "validation").problems
    assert len(both) == 299 + 570 and len({p.id for p in both}) == 869
    assert {p.dataset for p in both} == {"arc-challenge", "arc-easy"}
    assert [p.id for p in both[:299]] == [p.id for p in _loader("arc-challenge").load(
        folder, "dev").problems]


def test_arc_needs_a_folder(shared_data):
    from ssb.errors import SsbError

    with pytest.raises(SsbError, match="folder"):
        _loader("arc").load(str(shared_data / "arc" / "easy-test.jsonl"), "test")


def test_numeric_labels_map_to_letters(tmp_path):
    row = {**ROW, "choices": {"text": ROW["choices"]["text"], "label": ["1", "2", "3", "4"]},
           "answerKey": "2"}
    (p,) = _loader("arc-challenge").load(str(_write_jsonl(tmp_path / "n.jsonl", [row])),
                                         "test").problems
    gold = parse_gold(p.gold)
    assert gold.answer == "B" and gold.choices == {"A": "ice", "B": "steam", "C": "iron",
                                                   "D": "wood"}
    assert p.metadata["raw_labels"] == ["1", "2", "3", "4"] and "\nB. steam" in p.question


def test_parquet_source(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "arc.parquet"
    pq.write_table(pa.Table.from_pylist([ROW, {**ROW, "id": "X_2", "answerKey": "A"}]), path)
    problems = _loader("arc-easy").load(str(path), "test").problems
    assert [parse_gold(p.gold).answer for p in problems] == ["B", "A"]


BAD = [
    ({k: v for k, v in ROW.items() if k != "choices"}, "choices", "missing field 'choices'"),
    ({**ROW, "choices": {"text": [], "label": []}}, "choices", "no choices"),
    ({**ROW, "choices": {"text": ["a", "b"], "label": ["A"]}}, "choices", "2 texts but 1 labels"),
    ({**ROW, "answerKey": "E"}, "answerKey", "answerKey 'E' is not among the labels"),
    ({**ROW, "answerKey": "5"}, "answerKey", "answerKey '5' is not among the labels"),
    ({**ROW, "question": ""}, "question", "field 'question' is empty"),
]


@pytest.mark.parametrize("bad,field,reason", BAD, ids=[b[2][:30] for b in BAD])
def test_bad_row_is_one_line_naming_file_line_field(tmp_path, ssb_cli, bad, field, reason):
    path = _write_jsonl(tmp_path / "bad.jsonl", [ROW, ROW, bad])
    code, _, err = ssb_cli("problems", "--dataset", "arc-challenge", "--source", str(path))
    assert code == 2
    assert err.strip().count("\n") == 0, err
    assert err.startswith(f"{path}:3: ") and field in err and reason in err
    code, stdout, err = ssb_cli("problems", "--dataset", "arc-challenge", "--source", str(path),
                                "--skip-bad", "--json")
    assert code == 0 and len(stdout.strip().splitlines()) == 2


def test_ssb_problems_gives_1172_offline(shared_data, ssb_cli):
    code, stdout, err = ssb_cli("problems", "--dataset", "arc-challenge", "--split", "test",
                                "--source", str(shared_data / "arc" / "challenge-test.jsonl"),
                                "--json")
    assert code == 0, err
    rows = [json.loads(line) for line in stdout.splitlines()]
    assert len(rows) == 1172 and rows[0]["id"] == "arc-challenge/Mercury_7175875"
    assert json.loads(rows[0]["gold"])["answer"] == "C"


def test_hub_path_without_a_hub_is_one_clean_error():
    """The hub path goes through datasets.load_dataset (allenai/ai2_arc, config ARC-Easy); with
    the hub unreachable (HF_HUB_OFFLINE=1 here, so the test means the same on a networked
    machine) the user gets one error line and exit 2, no traceback, no retry chatter."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    proc = subprocess.run([sys.executable, "-m", "ssb", "problems", "--dataset", "arc-easy",
                           "--split", "dev", "--limit", "1"],
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: could not load 'allenai/ai2_arc' (config 'ARC-Easy') "
                               "split 'validation'")
    assert "--source PATH" in lines[0] and "Traceback" not in proc.stderr


def test_ssb_plugins_lists_the_domain(ssb_cli):
    code, stdout, err = ssb_cli("plugins", "--json")
    assert code == 0, err
    (science,) = [p for p in json.loads(stdout)["plugins"] if p["name"] == "science"]
    assert science["distribution"] == "softboot-science"
    assert science["registers"]["datasets"] == ["arc-challenge", "arc-easy", "arc"]
    assert science["registers"]["verifiers"] == ["science"]
    assert science["registers"]["prompts"] == ["science-tutor@1"]
