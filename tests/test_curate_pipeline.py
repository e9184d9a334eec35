"""``ssb curate`` end to end.

Fast tests replay recorded real outputs of the small model (tests/data, see README there) through
the test-only ``replay`` backend plugin; the ``llama`` test runs the real small model with the
llama.cpp backend.  Both check the same invariants with :func:`check_curated_run`.
"""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import pytest

from ssb.stages.curate import CURATED, JOURNAL, STATS, CurateConfig, answer_key, curate
from ssb.records import CuratedRecord

DATA = Path(__file__).parent / "data"
RECORDING = DATA / "recorded_rollouts_gsm8k.jsonl"
RECORDED_PROBLEMS = 8  # the first 8 GSM8K train problems, captured with --seed 0
ARITH_RECORDING = DATA / "recorded_rollouts_arithmetic.jsonl"
ARITH_PROBLEMS = 8  # generated train problems 0-7, captured with --seed 0
# The recordings hold the hinted prompts of the templates they were captured with: replayed runs
# pin those versions (a newer default template asks different teacher prompts).
GSM8K_TEMPLATE = "gsm8k-tutor@1"
ARITH_TEMPLATE = "arithmetic-tutor@1"


def check_curated_run(out: Path, domain: str, problems, rollouts: int,
                      template_name: str | None = None) -> dict:
    """Every invariant of a finished curate run in ``out`` (made with the domain's default
    template, or ``template_name``); returns its stats."""
    from ssb.plugins import get_registry
    from ssb.verification import verify_batch

    template = get_registry().template(domain, template_name)
    by_id = {p.id: p for p in problems}
    records = [CuratedRecord.from_dict(json.loads(line))
               for line in (out / CURATED).read_text(encoding="utf-8").splitlines()]
    ids = [r.id for r in records]
    assert len(ids) == len(set(ids)), "a record was duplicated"

    # Every kept solution verifies against the gold; chosen rollouts are what they claim.
    checks = []
    for r in records:
        gold = by_id[r.id].gold
        assert r.gold == gold and r.question == by_id[r.id].question
        checks += [(r.solution, gold), (r.correct_rollout.text, gold), (r.wrong_rollout.text, gold)]
    verdicts = verify_batch(domain, checks)
    strict = verify_batch(domain, [(r.solution, by_id[r.id].gold) for r in records], strict=True)
    for i, r in enumerate(records):
        solution_ok, correct_ok, wrong_ok = (v.correct for v in verdicts[3 * i: 3 * i + 3])
        assert solution_ok and strict[i].correct, f"{r.id}: kept solution does not verify"
        assert r.metadata["solution_finish_reason"] == "stop", f"{r.id}: truncated solution"
        assert correct_ok and r.correct_rollout.correct, f"{r.id}: correct rollout is not correct"
        assert not wrong_ok and not r.wrong_rollout.correct, f"{r.id}: wrong rollout is correct"

    for r in records:
        # Both views end before the solution; the teacher view holds the two hints.
        assert r.student_messages == template.student_messages(r.question)
        assert r.teacher_messages == template.teacher_messages(
            r.question, r.correct_rollout.text, r.wrong_rollout.text)
        assert r.student_messages[-1]["role"] == r.teacher_messages[-1]["role"] == "user"
        assert r.template == template.id and r.domain == domain
        assert len(r.rollout_answers) == len(r.rollout_correct) == rollouts
        assert 1 <= sum(r.rollout_correct) < rollouts
        # The chosen wrong rollout carries the most common wrong answer.
        wrong = Counter(answer_key(a) for a, ok in zip(r.rollout_answers, r.rollout_correct)
                        if not ok)
        answered = {k: c for k, c in wrong.items() if k is not None}
        chosen = answer_key(r.wrong_rollout.extracted)
        if answered:
            assert chosen is not None and answered[chosen] == max(answered.values()), r.id
        else:
            assert chosen is None
        assert r.rollout_answers[r.metadata["correct_index"]] == r.correct_rollout.extracted
        assert r.rollout_answers[r.metadata["wrong_index"]] == r.wrong_rollout.extracted

    # Stats add up, and agree with the journal and the file.
    stats = json.loads((out / STATS).read_text())
    journal = [json.loads(line) for line in (out / JOURNAL).read_text().splitlines()]
    final = {e["id"]: e for e in journal}
    assert stats["problems_seen"] == len(final)
    assert stats["kept"] == len(records) == sum(e["status"] == "kept" for e in final.values())
    assert stats["kept"] + sum(stats["skipped"].values()) == stats["problems_seen"]
    assert set(stats["skipped"]) == {"all_correct", "all_wrong", "teacher_wrong", "errors"}
    answered_problems = [e for e in final.values() if "rollout_correct" in e]
    assert stats["rollouts"] == rollouts * len(answered_problems)
    n_correct = sum(sum(e["rollout_correct"]) for e in answered_problems)
    assert stats["rollouts_correct"] == n_correct
    if stats["rollouts"]:
        assert stats["rollout_accuracy"] == pytest.approx(n_correct / stats["rollouts"], abs=1e-6)
    for e in final.values():
        if e["status"] in ("all_correct", "all_wrong"):
            assert all(e["rollout_correct"]) == (e["status"] == "all_correct")
            assert any(e["rollout_correct"]) == (e["status"] == "all_correct")
    assert stats["this_run"]["wall_seconds"] > 0 and stats["complete"] is True

    # Loadable with datasets, one row per record.
    import datasets

    if records:  # (datasets cannot load an empty json file)
        loaded = datasets.load_dataset("json", data_files=str(out / CURATED), split="train")
        assert loaded.num_rows == len(records)
        assert loaded[0]["student_messages"] == records[0].student_messages
        assert loaded[0]["solution"] == records[0].solution

    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["command"] == "curate" and manifest["finished"]
    assert manifest["config"]["template"] == template.id
    assert len(manifest["identity"]["input_sha256"]) == 64
    assert manifest["seed"] == manifest["config"]["seed"]
    assert "python" in manifest["versions"]
    return stats


def _gsm8k_problems(shared_data: Path, n: int):
    from ssb.plugins import get_registry

    source = str(shared_data / "gsm8k" / "train.jsonl")
    return get_registry().dataset("gsm8k").load(source, "train").problems[:n]


def _replay_args(shared_data: Path, out: Path, recording: Path = RECORDING, *extra: str):
    return ["curate", "--domain", "gsm8k", "--backend", "replay", "--model", str(recording),
            "--source", str(shared_data / "gsm8k" / "train.jsonl"),
            "--limit", str(RECORDED_PROBLEMS), "--seed", "0", "--template", GSM8K_TEMPLATE,
            "--no-progress", "--out", str(out), *extra]


def test_replayed_pipeline_keeps_every_invariant(replay_plugin, shared_data, tmp_path, ssb_cli):
    out = tmp_path / "run"
    code, stdout, err = ssb_cli(*_replay_args(shared_data, out, RECORDING, "--batch-size", "3"))
    assert code == 0, err
    printed = json.loads(stdout.strip().splitlines()[-1])
    stats = check_curated_run(out, "gsm8k", _gsm8k_problems(shared_data, RECORDED_PROBLEMS), 4,
                              GSM8K_TEMPLATE)
    assert printed["kept"] == stats["kept"] >= 1
    assert stats["problems_seen"] == RECORDED_PROBLEMS and stats["skipped"]["errors"] == 0
    # Recorded fact: problem 0's hinted solution boxed the right answer but hit --max-tokens;
    # a truncated solution is never kept.
    journal = {e["id"]: e for e in map(json.loads, (out / JOURNAL).read_text().splitlines())}
    first = journal["gsm8k/train/0"]
    assert first["status"] == "teacher_wrong" and first["teacher_finish_reason"] == "length"
    assert first["teacher_extracted"] == "72"
    # Rerunning the finished command does nothing and changes nothing.
    before = (out / CURATED).read_bytes(), (out / JOURNAL).read_bytes()
    code, _, err = ssb_cli(*_replay_args(shared_data, out, RECORDING, "--batch-size", "3"))
    assert code == 0, err
    assert ((out / CURATED).read_bytes(), (out / JOURNAL).read_bytes()) == before
    assert json.loads((out / STATS).read_text())["this_run"]["problems"] == 0


def test_requests_are_batched_across_problems(replay_plugin, shared_data):
    from ssb.stages.curate import process_chunk
    from ssb.plugins import get_registry

    registry = get_registry()
    backend = registry.backend("replay").create(str(RECORDING))
    problems = _gsm8k_problems(shared_data, RECORDED_PROBLEMS)
    config = CurateConfig(domain="gsm8k", backend="replay", model=str(RECORDING), out=Path("."))
    entries = process_chunk(problems[:5], backend=backend,
                            template=registry.template("gsm8k", GSM8K_TEMPLATE),
                            config=config, dataset="gsm8k")
    assert [e["id"] for e in entries] == [p.id for p in problems[:5]]
    teacher_calls = sum(e["status"] in ("kept", "teacher_wrong") for e in entries)
    # One call with all 5 student prompts, one with every hinted teacher prompt.
    assert backend.calls == ([5, teacher_calls] if teacher_calls else [5])


def _recording_without(recording: Path, question_prefix: str, dest: Path) -> Path:
    """A copy of ``recording`` lacking the student rows of one problem."""
    rows = [json.loads(line) for line in recording.read_text(encoding="utf-8").splitlines()]
    kept = [r for r in rows
            if not (r["params"]["temperature"] == 0.8
                    and r["messages"][-1]["content"].find(question_prefix) >= 0)]
    assert len(kept) == len(rows) - 1
    dest.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in kept))
    return dest


def test_backend_error_is_recorded_counted_and_retried_on_rerun(replay_plugin, shared_data,
                                                               tmp_path, ssb_cli):
    problems = _gsm8k_problems(shared_data, RECORDED_PROBLEMS)
    recording = _recording_without(RECORDING, problems[2].question[:60], tmp_path / "rec.jsonl")
    out = tmp_path / "run"
    code, _, err = ssb_cli(*_replay_args(shared_data, out, recording, "--batch-size", "4"))
    # An incomplete stage exits non-zero (so `ssb run` retries it), everything else is saved.
    assert code == 2 and "1 of 8 problems failed" in err and "Rerun" in err, err
    stats = json.loads((out / STATS).read_text())
    assert stats["skipped"]["errors"] == 1 and stats["complete"] is False
    journal = [json.loads(line) for line in (out / JOURNAL).read_text().splitlines()]
    failed = [e for e in journal if e["status"] == "error"]
    assert [e["id"] for e in failed] == [problems[2].id]
    assert "not in recording" in failed[0]["error"]  # batch-mates were isolated and succeeded
    assert len(journal) == RECORDED_PROBLEMS

    # The engine is fixed; the same command retries only the failed problem.
    shutil.copyfile(RECORDING, recording)
    code, _, err = ssb_cli(*_replay_args(shared_data, out, recording, "--batch-size", "4"))
    assert code == 0, err
    journal = [json.loads(line) for line in (out / JOURNAL).read_text().splitlines()]
    assert len(journal) == RECORDED_PROBLEMS + 1 and journal[-1]["id"] == problems[2].id
    stats = check_curated_run(out, "gsm8k", problems, 4, GSM8K_TEMPLATE)
    assert stats["skipped"]["errors"] == 0 and stats["this_run"]["problems"] == 1

    # The result equals a run that never failed.
    clean = tmp_path / "clean"
    assert ssb_cli(*_replay_args(shared_data, clean, RECORDING, "--batch-size", "4"))[0] == 0
    assert sorted((out / CURATED).read_text().splitlines()) == \
        sorted((clean / CURATED).read_text().splitlines())


def test_too_many_errors_stop_the_run_with_a_clear_message(replay_plugin, shared_data, tmp_path,
                                                           ssb_cli):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    out = tmp_path / "run"
    code, _, err = ssb_cli(*_replay_args(shared_data, out, empty, "--batch-size", "2",
                                         "--max-errors", "3"))
    assert code == 2
    assert "--max-errors 3" in err and "not in recording" in err and "rerun to resume" in err
    journal = [json.loads(line) for line in (out / JOURNAL).read_text().splitlines()]
    assert len(journal) == 4 and all(e["status"] == "error" for e in journal)


def test_changed_config_is_refused_unless_accepted(replay_plugin, shared_data, tmp_path,
                                                   ssb_cli):
    out = tmp_path / "run"
    base = _replay_args(shared_data, out, RECORDING)
    base[base.index("--limit") + 1] = "2"
    assert ssb_cli(*base)[0] == 0
    code, _, err = ssb_cli(*base, "--temperature", "0.7")
    assert code == 2 and "different config" in err and "temperature" in err
    assert "--restart" in err and "--accept-changed-config" in err
    code, _, err = ssb_cli(*base, "--rollouts", "3", "--preset", "paper")
    assert code == 2 and "rollouts" in err
    # Volatile settings (verification workers, error budget) may change on resume.
    assert ssb_cli(*base, "--workers", "0", "--max-errors", "50")[0] == 0
    code, _, err = ssb_cli(*base, "--temperature", "0.7", "--accept-changed-config")
    assert code == 0, err
    assert json.loads((out / "manifest.json").read_text())["config"]["temperature"] == 0.7
    stats = json.loads((out / STATS).read_text())
    assert stats["this_run"]["resumed"] and stats["this_run"]["already_done"] == 2
    # The old spelling still works, with one warning line naming what it meant here.
    code, _, err = ssb_cli(*base, "--temperature", "0.6", "--force")
    assert code == 0, err
    assert err.count("warning: --force is deprecated; for `ssb curate` it means "
                     "--accept-changed-config") == 1
    # --restart: from nothing, whatever the config was (0.6, now the recording's default); the
    # journal holds only this run's problems.
    (out / "notes.txt").write_text("mine")
    code, _, err = ssb_cli(*base, "--restart")
    assert code == 0, err
    stats = json.loads((out / STATS).read_text())
    assert not stats["this_run"]["resumed"] and stats["this_run"]["already_done"] == 0
    assert len((out / JOURNAL).read_text().splitlines()) == 2
    assert (out / "notes.txt").read_text() == "mine"  # only the stage's own outputs go


def test_bad_flags_are_clear_errors(replay_plugin, shared_data, tmp_path, ssb_cli):
    args = _replay_args(shared_data, tmp_path / "x", RECORDING)
    code, _, err = ssb_cli(*args, "--rollouts", "1")
    assert code == 2 and "--rollouts" in err
    code, _, err = ssb_cli(*args, "--preset", "fast")
    assert code == 2 and "paper" in err
    args[args.index("--domain") + 1] = "nosuchdomain"
    code, _, err = ssb_cli(*args, "--dataset", "gsm8k")
    assert code == 2 and "nosuchdomain" in err


def test_arithmetic_domain_replayed(replay_plugin, tmp_path, ssb_cli):
    from ssb.plugins import get_registry

    out = tmp_path / "arith"
    code, _, err = ssb_cli("curate", "--domain", "arithmetic", "--backend", "replay",
                           "--model", str(ARITH_RECORDING), "--limit", str(ARITH_PROBLEMS),
                           "--seed", "0", "--template", ARITH_TEMPLATE, "--no-progress",
                           "--out", str(out))
    assert code == 0, err
    problems = get_registry().dataset("arithmetic").load(None, "train").problems[:ARITH_PROBLEMS]
    stats = check_curated_run(out, "arithmetic", problems, 4, ARITH_TEMPLATE)
    assert stats["problems_seen"] == ARITH_PROBLEMS and stats["skipped"]["errors"] == 0
    # Recorded facts (400 new tokens, see tests/data/README.md): the 0.5B model gets 13/32
    # rollouts right; problem 4 is all correct and problem 0 all wrong; 6 problems reach the
    # hinted teacher, 3 of whose solutions verify (one is cut off at --max-tokens).
    assert stats["rollouts_correct"] == 13 and stats["teacher_attempts"] == 6
    assert stats["skipped"] == {"all_correct": 1, "all_wrong": 1, "teacher_wrong": 3, "errors": 0}
    assert stats["kept"] == 3
    kept = [json.loads(line)["id"] for line in (out / "curated.jsonl").read_text().splitlines()]
    assert kept == ["arithmetic/train/3", "arithmetic/train/5", "arithmetic/train/6"]


@pytest.mark.llama
@pytest.mark.slow
def test_full_pipeline_on_the_real_small_model(small_gguf, shared_data, tmp_path):
    """Real model, real llama.cpp backend, the first GSM8K train problems (paper sampling).

    Measured here (2 busy cores, 194-552 s): problem 0 gets 3/4 right and goes to the teacher,
    whose hinted solution hits 400 tokens (teacher_wrong); problems 1-2 are all_wrong.  The
    samples differ from the recording for problems 1-2 although the settings match (llama.cpp's
    prefix cache makes them depend on what was evaluated before), so the kept-record invariants
    are checked on the recorded outputs by the replay tests, and here whenever a record is kept."""
    pytest.importorskip("llama_cpp")
    n = 3
    out = tmp_path / "run"
    config = CurateConfig(
        domain="gsm8k", backend="llama.cpp", model=str(small_gguf), out=out,
        source=str(shared_data / "gsm8k" / "train.jsonl"), limit=n, rollouts=4, seed=0,
        max_tokens=400, batch_size=n,
        backend_options={"n_threads": 1, "n_ctx": 4096})
    stats = curate(config).stats
    checked = check_curated_run(out, "gsm8k", _gsm8k_problems(shared_data, n), 4)
    assert checked["problems_seen"] == stats["problems_seen"] == n
    assert stats["skipped"]["errors"] == 0
    assert stats["rollouts"] == 4 * n and stats["this_run"]["tokens_per_second"] > 0


def test_config_file_supplies_flags_and_flags_win(replay_plugin, shared_data, tmp_path, ssb_cli):
    config = tmp_path / "curate.toml"
    config.write_text(f'domain = "gsm8k"\nbackend = "replay"\nmodel = "{RECORDING}"\n'
                      f'source = "{shared_data / "gsm8k" / "train.jsonl"}"\n'
                      f'template = "{GSM8K_TEMPLATE}"\n'
                      '[curate]\nlimit = 2\nbatch-size = 2\nteacher-temperature = 0.4\n'
                      'max-tokens = 333\n')
    out = tmp_path / "run"
    code, _, err = ssb_cli("curate", "--config", str(config), "--max-tokens", "400",
                           "--no-progress", "--out", str(out))
    assert code == 0, err
    recorded = json.loads((out / "manifest.json").read_text())["config"]
    assert recorded["batch_size"] == 2 and recorded["limit"] == 2
    assert recorded["max_tokens"] == 400 and recorded["rollouts"] == 4
    assert json.loads((out / STATS).read_text())["problems_seen"] == 2
    bad = tmp_path / "bad.toml"
    bad.write_text("rolouts = 4\n")
    code, _, err = ssb_cli("curate", "--config", str(bad), "--out", str(out))
    assert code == 2 and "rolouts" in err


def test_until_kept_stops_after_the_batch_that_reaches_the_target(replay_plugin, shared_data,
                                                                   tmp_path, ssb_cli):
    # The full recorded run keeps problem 2 (checked); stopping at 1 kept must take problems in
    # order, a batch at a time, and stop after the first batch that reaches it.
    full = tmp_path / "full"
    code, _, err = ssb_cli(*_replay_args(shared_data, full, RECORDING, "--batch-size", "2"))
    assert code == 0, err
    journal = [json.loads(x) for x in (full / JOURNAL).read_text().splitlines()]
    kept_order = [i for i, e in enumerate(journal) if e["status"] == "kept"]
    assert kept_order
    first_kept_batch_end = (kept_order[0] // 2 + 1) * 2
    assert first_kept_batch_end < RECORDED_PROBLEMS

    out = tmp_path / "until"
    code, stdout, err = ssb_cli(*_replay_args(shared_data, out, RECORDING, "--batch-size", "2",
                                              "--until-kept", "1"))
    assert code == 0, err
    stats = json.loads((out / STATS).read_text())
    assert stats["complete"] and stats["until_kept"] == 1
    assert stats["problems_seen"] == first_kept_batch_end < RECORDED_PROBLEMS
    assert "--until-kept" in err
    seen = [json.loads(x)["id"] for x in (out / JOURNAL).read_text().splitlines()]
    assert seen == [e["id"] for e in journal[:first_kept_batch_end]]  # a prefix, in order
    # Rerunning the finished command processes nothing more.
    code, _, err = ssb_cli(*_replay_args(shared_data, out, RECORDING, "--batch-size", "2",
                                         "--until-kept", "1"))
    assert code == 0, err
    assert json.loads((out / STATS).read_text())["problems_seen"] == first_kept_batch_end
