"""`ssb problems` and `ssb verify` through the CLI, including the example plugin."""

import json

import pytest


def test_plugins_json_lists_domain_plugins(ssb_cli):
    code, out, _ = ssb_cli("plugins", "--json")
    assert code == 0
    names = {p["name"]: p for p in json.loads(out)["plugins"]}
    assert {"gsm8k", "math", "arithmetic"} <= set(names)
    assert names["arithmetic"]["distribution"] == "softboot-arithmetic"
    assert set(names["math"]["registers"]["datasets"]) == {"math500", "aime24", "amc23", "math"}


def test_problems_json(ssb_cli, shared_data):
    code, out, _ = ssb_cli("problems", "--dataset", "gsm8k", "--source",
                           str(shared_data / "gsm8k"), "--split", "test", "--limit", "2", "--json")
    assert code == 0
    rows = [json.loads(line) for line in out.splitlines()]
    assert len(rows) == 2 and rows[0]["gold"] == "18" and rows[0]["id"] == "gsm8k/test/0"


def test_problems_table_and_filters(ssb_cli, shared_data):
    code, out, _ = ssb_cli("problems", "--dataset", "math500", "--source",
                           str(shared_data / "math500" / "test.jsonl"), "--filter", "level=1",
                           "--filter", "subject=Geometry", "--json")
    assert code == 0
    assert all(json.loads(l)["metadata"]["level"] == 1 for l in out.splitlines())
    code, out, _ = ssb_cli("problems", "--dataset", "arithmetic", "--split", "test",
                           "--limit", "3")
    assert code == 0 and "arithmetic/test/2" in out and "arithmetic/test/3" not in out


def test_problems_bad_rows(ssb_cli, tmp_path):
    path = tmp_path / "g.jsonl"
    path.write_text('{"question": "q", "answer": "#### 1"}\n{"question": "q", "answer": "2"}\n')
    code, _, err = ssb_cli("problems", "--dataset", "gsm8k", "--source", str(path), "--json")
    assert code == 2 and f"{path}:2" in err and "answer" in err
    code, out, err = ssb_cli("problems", "--dataset", "gsm8k", "--source", str(path), "--json",
                             "--skip-bad")
    assert code == 0 and len(out.splitlines()) == 1 and "skipped 1 bad row" in err


def test_problems_unknown_dataset(ssb_cli):
    code, _, err = ssb_cli("problems", "--dataset", "nope")
    assert code == 2 and "arithmetic" in err


def test_verify_single(ssb_cli):
    code, out, _ = ssb_cli("verify", "--domain", "math", "--gold", r"\frac12", "--response",
                           r"\boxed{0.5}")
    assert code == 0 and json.loads(out)["correct"] is True
    code, out, _ = ssb_cli("verify", "--domain", "math", "--gold", "30", "--response",
                           r"\boxed{3}")
    assert code == 1 and json.loads(out) == {"response": r"\boxed{3}", "gold": "30",
                                             "extracted": "3", "correct": False, "error": None}


@pytest.mark.parametrize("workers", ["0", "2"])
def test_verify_file_keeps_order_and_fields(ssb_cli, tmp_path, workers):
    rows = [{"id": 1, "response": r"\boxed{18}", "gold": "18"},
            {"id": 2, "response": "no idea", "gold": "3"},
            {"id": 3, "response": r"\boxed{9^{9^{9^{9^{9}}}}}", "gold": "5"},
            {"id": 4, "response": "The answer is 1,000.", "gold": 1000.0}]
    path = tmp_path / "in.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    code, out, _ = ssb_cli("verify", "--domain", "math", "--input", str(path),
                           "--workers", workers, "--timeout", "3")
    assert code == 0
    got = [json.loads(l) for l in out.splitlines()]
    assert [g["id"] for g in got] == [1, 2, 3, 4]
    assert [g["correct"] for g in got] == [True, False, False, True]
    assert got[1]["extracted"] is None and got[0]["extracted"] == "18"


def test_verify_bad_input_line(ssb_cli, tmp_path):
    path = tmp_path / "in.jsonl"
    path.write_text('{"response": "a", "gold": "1"}\n\n{"response": "b"}\n')
    code, _, err = ssb_cli("verify", "--domain", "gsm8k", "--input", str(path))
    assert code == 2 and f"{path}:3" in err and "gold" in err
    path.write_text('{"response": "a", "gold": "1"}\nnot json\n')
    code, _, err = ssb_cli("verify", "--domain", "gsm8k", "--input", str(path))
    assert code == 2 and f"{path}:2" in err


def test_arithmetic_plugin_through_cli(ssb_cli, tmp_path):
    code, out, _ = ssb_cli("problems", "--dataset", "arithmetic", "--split", "test",
                           "--limit", "3", "--json")
    assert code == 0
    problems = [json.loads(l) for l in out.splitlines()]
    path = tmp_path / "r.jsonl"
    path.write_text("".join(
        json.dumps({"response": f"So the total is \\boxed{{{int(p['gold']) + k}}}.",
                    "gold": p["gold"]}) + "\n" for k, p in enumerate(problems)))
    code, out, _ = ssb_cli("verify", "--domain", "arithmetic", "--input", str(path))
    assert code == 0
    assert [json.loads(l)["correct"] for l in out.splitlines()] == [True, False, False]


def test_verify_config_file(ssb_cli, tmp_path):
    cfg = tmp_path / "v.toml"
    cfg.write_text('domain = "gsm8k"\ntimeout = 2.0\n')
    code, out, _ = ssb_cli("verify", "--config", str(cfg), "--gold", "18", "--response",
                           "The answer is $18.00.")
    assert code == 0 and json.loads(out)["correct"] is True
