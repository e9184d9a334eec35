"""scripts/study_snapshot.py: the committed copy of a study run keeps each finished evaluation's
per-problem verdicts (reply texts left out), so a snapshot pairs with later runs problem by
problem through `ssb eval compare`; an evaluation still running is not copied."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "study_snapshot.py"


def test_snapshot_keeps_per_problem_verdicts_without_texts(tiny_model_dir, tmp_path, ssb_cli):
    run = tmp_path / "run"
    done = run / "eval" / "arithmetic" / "base"
    code, _, err = ssb_cli("eval", "--dataset", "arithmetic", "--split", "test", "--filter",
                           "n=6", "--backend", "transformers", "--model", str(tiny_model_dir),
                           "--max-tokens", "8", "--no-progress", "--out", str(done))
    assert code == 0, err
    running = run / "eval" / "arithmetic" / "ssb"  # results so far, no summary: not finished
    running.mkdir(parents=True)
    (running / "results.jsonl").write_text((done / "results.jsonl").read_text())
    beside = run / "repro" / "ssb"  # an evaluation run beside the study, finished
    shutil.copytree(done, beside)
    dest = tmp_path / "snapshot"
    proc = subprocess.run([sys.executable, str(SCRIPT), str(run), str(dest)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr

    original = [json.loads(x) for x in (done / "results.jsonl").read_text().splitlines()]
    copied = [json.loads(x) for x in
              (dest / "eval/arithmetic/base/results.jsonl").read_text().splitlines()]
    assert len(copied) == len(original) == 6
    assert all(s["text"] for row in original for s in row["samples"])
    for a, b in zip(original, copied):
        assert [{k: v for k, v in s.items() if k != "text"} for s in a["samples"]] == \
            b["samples"]
        assert {k: v for k, v in a.items() if k != "samples"} == \
            {k: v for k, v in b.items() if k != "samples"}
    assert (dest / "eval/arithmetic/base/summary.json").is_file()
    # The texts apart, compressed, byte-identical when snapshotted again.
    import gzip

    texts = dest / "eval/arithmetic/base/texts.jsonl.gz"
    kept = [json.loads(x) for x in gzip.decompress(texts.read_bytes()).decode().splitlines()]
    assert kept == [{"id": r["id"], "texts": [s["text"] for s in r["samples"]]}
                    for r in original]
    first = texts.read_bytes()
    subprocess.run([sys.executable, str(SCRIPT), str(run), str(dest)], check=True,
                   capture_output=True, timeout=60)
    assert texts.read_bytes() == first
    # The analysis reads them back where the results have none.
    analysis = SCRIPT.parent / "study_analysis.py"
    proc = subprocess.run([sys.executable, str(analysis), str(dest), "--json",
                           str(tmp_path / "a.json")], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    behaviour = json.loads((tmp_path / "a.json").read_text())["eval"]["arithmetic"]["base"]
    code = re.compile(r"```|\bprint\(")  # what the analysis counts as code
    assert behaviour["with_code"] == sum(bool(code.search(r["samples"][0]["text"]))
                                         for r in original)
    texts.unlink()
    proc = subprocess.run([sys.executable, str(analysis), str(dest), "--json",
                           str(tmp_path / "b.json")], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert json.loads((tmp_path / "b.json").read_text())["eval"]["arithmetic"]["base"][
        "with_code"] is None  # no texts: not counted, rather than counted as none
    assert not (dest / "eval/arithmetic/ssb").exists()
    assert (dest / "repro/ssb/results.jsonl").read_text() == \
        (dest / "eval/arithmetic/base/results.jsonl").read_text()
    assert (dest / "repro/ssb/summary.json").is_file()

    code, stdout, err = ssb_cli("eval", "compare", str(done), str(dest / "eval/arithmetic/base"),
                                "--json")
    assert code == 0, err
    report = json.loads(stdout)
    assert report["shared_problems"] == 6
    (c,) = report["comparisons"]
    assert c["diff"] == 0 and (c["a_only"], c["b_only"]) == (0, 0)


RESTORE = SCRIPT.parent / "study_restore.py"


def test_restore_on_a_fresh_machine_resumes_an_unfinished_evaluation(tiny_model_dir, tmp_path,
                                                                      ssb_cli):
    """A machine that lasts one session: the snapshot keeps an evaluation still running (its
    journal, under partial/), study_restore.py puts it and the finished ones back into a new run
    directory, the finished one is skipped by its marker and the unfinished one resumes from its
    journal (the journaled problems are not generated again) to the same results."""
    args = ["eval", "--dataset", "arithmetic", "--split", "test", "--filter", "n=6",
            "--backend", "transformers", "--model", str(tiny_model_dir), "--max-tokens", "8",
            "--no-progress"]
    run = tmp_path / "run"
    full = run / "eval" / "arithmetic" / "base"
    code, _, err = ssb_cli(*args, "--out", str(full))
    assert code == 0, err
    # The same evaluation, killed after three problems: its manifest and a journal of three lines.
    running = run / "eval" / "arithmetic" / "again"
    running.mkdir(parents=True)
    shutil.copyfile(full / "manifest.json", running / "manifest.json")
    journal = (full / "journal.jsonl").read_text().splitlines(keepends=True)
    assert len(journal) == 6
    (running / "journal.jsonl").write_text("".join(journal[:3]))
    (run / "study.json").write_text(json.dumps(
        {"prompts": {"prompt": {"chosen": "plan@1", "candidates": {}}}}))
    (run / "data" / "train").mkdir(parents=True)
    (run / "data" / "train" / "curated.jsonl").write_text('{"id": "r1"}\n')

    dest = tmp_path / "snapshot"
    proc = subprocess.run([sys.executable, str(SCRIPT), str(run), str(dest)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert (dest / "partial/eval/arithmetic/again/journal.jsonl").read_text() == \
        "".join(journal[:3])
    assert not (dest / "partial/eval/arithmetic/base").exists()  # finished: results instead

    fresh = tmp_path / "fresh"  # the next session's machine
    proc = subprocess.run([sys.executable, str(RESTORE), str(dest), str(fresh)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert json.loads((fresh / "select/prompt/choice.json").read_text())["chosen"] == "plan@1"
    assert (fresh / "data/train/curated.jsonl").read_text() == '{"id": "r1"}\n'
    assert (fresh / "eval/arithmetic/base/summary.json").read_text() == \
        (full / "summary.json").read_text()
    assert not (fresh / "study.json").exists()  # rewritten by the study, not restored

    resumed = fresh / "eval" / "arithmetic" / "again"
    code, _, err = ssb_cli(*args, "--out", str(resumed))
    assert code == 0, err
    lines = (resumed / "journal.jsonl").read_text().splitlines(keepends=True)
    assert lines[:3] == journal[:3] and len(lines) == 6  # three restored, three generated
    strip = [json.loads(x) for x in (full / "results.jsonl").read_text().splitlines()]
    again = [json.loads(x) for x in (resumed / "results.jsonl").read_text().splitlines()]
    assert again == strip  # greedy on the same tiny model: the same verdicts and texts

    # Once finished, the next snapshot drops the partial copy and keeps the results.
    proc = subprocess.run([sys.executable, str(SCRIPT), str(fresh), str(dest)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert not (dest / "partial/eval/arithmetic/again").exists()
    assert (dest / "eval/arithmetic/again/summary.json").is_file()
    # A second restore leaves what the run directory already has alone.
    (fresh / "data/train/curated.jsonl").write_text('{"id": "newer"}\n')
    subprocess.run([sys.executable, str(RESTORE), str(dest), str(fresh)], check=True,
                   capture_output=True, timeout=60)
    assert (fresh / "data/train/curated.jsonl").read_text() == '{"id": "newer"}\n'


def test_an_unfinished_curation_resumes_from_its_committed_journal(replay_plugin, shared_data,
                                                                  tmp_path):
    """The curation of a study still running when the machine goes: its journal, manifest and
    stats are kept under partial/curate, restored into a fresh run directory, and curate resumes
    from them (the journaled problems are not curated again) to the records an uninterrupted run
    keeps.  Real `ssb curate` processes on recorded real model outputs (the replay backend)."""
    import os

    recording = Path(__file__).parent / "data" / "recorded_rollouts_gsm8k.jsonl"
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(replay_plugin), env.get("PYTHONPATH", "")])

    def curate(out: Path) -> None:
        proc = subprocess.run(
            [sys.executable, "-m", "ssb", "curate", "--domain", "gsm8k", "--backend", "replay",
             "--model", str(recording), "--source", str(shared_data / "gsm8k" / "train.jsonl"),
             "--limit", "8", "--seed", "0", "--batch-size", "1", "--template", "gsm8k-tutor@1",
             "--no-progress", "--out", str(out)], env=env, capture_output=True, text=True,
            timeout=300)
        assert proc.returncode == 0, proc.stderr

    reference = tmp_path / "reference"
    curate(reference)
    kept = sorted((reference / "curated.jsonl").read_text().splitlines())
    assert kept, "the recording must keep records for this test to mean anything"
    journal = (reference / "journal.jsonl").read_text().splitlines(keepends=True)
    assert len(journal) == 8

    run = tmp_path / "run"  # the study's curation, stopped after four problems
    (run / "curate").mkdir(parents=True)
    shutil.copyfile(reference / "manifest.json", run / "curate" / "manifest.json")
    (run / "curate" / "journal.jsonl").write_text("".join(journal[:4]))
    dest = tmp_path / "snapshot"
    subprocess.run([sys.executable, str(SCRIPT), str(run), str(dest)], check=True,
                   capture_output=True, timeout=60)
    assert (dest / "partial/curate/journal.jsonl").read_text() == "".join(journal[:4])

    fresh = tmp_path / "fresh"
    subprocess.run([sys.executable, str(RESTORE), str(dest), str(fresh)], check=True,
                   capture_output=True, timeout=60)
    curate(fresh / "curate")
    lines = (fresh / "curate" / "journal.jsonl").read_text().splitlines(keepends=True)
    assert lines[:4] == journal[:4] and len(lines) == 8
    assert sorted((fresh / "curate" / "curated.jsonl").read_text().splitlines()) == kept
