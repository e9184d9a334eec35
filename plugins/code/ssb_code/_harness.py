"""The in-sandbox harness: runs the candidate, then the tests, then reports with a sentinel.

Executed as ``python -I -c <this file's text>`` by the sandbox supervisor, as the unprivileged
sandbox user.  Standard library only.  Reads one JSON object from stdin::

    {"sentinel": "<random hex>", "solution": "<candidate code>", "tests": "<test program>",
     "lazy_annotations": true}

and, only if it gets that far, writes ``<sentinel> <json>`` on file descriptor 3.  The sentinel
is random per run and never written to a file, argv or the environment, so a candidate that
exits early (``sys.exit(0)``, ``os._exit(0)``) cannot produce a passing verdict; the supervisor's
caller accepts only a line that starts with it.  (A candidate written to dig the sentinel out of
this interpreter's frames could forge a pass: the harness guards against accidents and cheap
tricks, the process boundary is what guards the machine.)
"""

import __future__
import ast
import json
import os
import sys

MAX_DETAIL = 600
MAX_MESSAGE = 240
MAX_LINE = 160


def _short(text, limit):
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _safe_str(exc):
    try:
        return str(exc)
    except BaseException:  # noqa: BLE001 - a candidate's exception may have a broken __str__
        return "<unprintable>"


def _line(sources, filename, lineno):
    lines = sources.get(filename, "").splitlines()
    if lineno and 0 < lineno <= len(lines):
        return lines[lineno - 1].strip()
    return ""


def _statement(source, lineno):
    """The innermost statement of ``source`` that spans ``lineno`` (an assert over several
    lines is reported whole), or None."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return None
    best = None
    for node in ast.walk(tree):
        if isinstance(node, ast.stmt) and node.lineno <= lineno <= (node.end_lineno or node.lineno):
            span = (node.end_lineno or node.lineno) - node.lineno
            if best is None or span <= (best.end_lineno or best.lineno) - best.lineno:
                best = node
    return best


def _got_value(node, frame):
    """For ``assert X == Y`` (or ``!=``/``<``/...), the repr of X re-evaluated in the failing
    frame -- the value the candidate returned, which is the useful part of the hint."""
    if not isinstance(node, ast.Assert) or not isinstance(node.test, ast.Compare):
        return None
    left = node.test.left
    import signal

    def overrun(signum, frame):
        raise TimeoutError

    try:  # bounded: a second call of the candidate must not eat the run's deadline
        signal.signal(signal.SIGALRM, overrun)
        signal.setitimer(signal.ITIMER_REAL, 0.5)
        code = compile(ast.Expression(left), "<tests>", "eval")
        value = eval(code, frame.f_globals, frame.f_locals)  # noqa: S307 - inside the sandbox
        return _short(repr(value), MAX_LINE)
    except BaseException:  # noqa: BLE001
        return None
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)


def describe(exc, sources):
    """``Kind: message | tests line N: <src> (got: ...) | solution line M: <src>``."""
    kind = type(exc).__name__
    if isinstance(exc, SystemExit):
        message = f"exit({_short(repr(exc.code), 40)}) before the tests finished"
    else:
        message = _short(_safe_str(exc), MAX_MESSAGE)
    parts = [f"{kind}: {message}" if message else kind]
    if isinstance(exc, SyntaxError) and exc.filename in sources:
        where = "solution" if exc.filename == "<solution>" else "tests"
        parts.append(f"{where} line {exc.lineno}: {_short(exc.text or '', MAX_LINE)}")
        return " | ".join(parts)[:MAX_DETAIL]
    test_frame = sol_frame = None
    tb = exc.__traceback__
    while tb is not None:
        name = tb.tb_frame.f_code.co_filename
        if name == "<tests>":
            test_frame = (tb.tb_frame, tb.tb_lineno)
        elif name == "<solution>":
            sol_frame = (tb.tb_frame, tb.tb_lineno)
        tb = tb.tb_next
    if test_frame is not None:
        frame, lineno = test_frame
        node = _statement(sources["<tests>"], lineno)
        src = None
        if node is not None and node.end_lineno != node.lineno:
            src = ast.get_source_segment(sources["<tests>"], node)
        src = src or _line(sources, "<tests>", lineno)
        text = f"tests line {lineno}: {_short(src, MAX_LINE)}"
        if isinstance(exc, AssertionError):
            got = _got_value(node, frame)
            if got is not None:
                text += f" (got: {got})"
        parts.append(text)
    if sol_frame is not None:
        frame, lineno = sol_frame
        parts.append(f"solution line {lineno}: {_short(_line(sources, '<solution>', lineno), MAX_LINE)}")
    return " | ".join(parts)[:MAX_DETAIL]


def main():
    job = json.loads(sys.stdin.buffer.read())
    sentinel = job["sentinel"]
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)  # the candidate reads nothing (input() gets EOF)
    os.close(devnull)
    write = os.write  # bound now: a candidate that patches os.write cannot reach this reference
    dumps = json.dumps
    exit_now = os._exit
    sources = {"<solution>": job["solution"], "<tests>": job["tests"]}
    # Annotations are not evaluated (PEP 563): a candidate that omits ``from typing import
    # List`` is not failed over a type hint alone (HumanEval prompts carry those imports).
    flags = __future__.annotations.compiler_flag if job.get("lazy_annotations", True) else 0
    namespace = {"__name__": "__main__", "__builtins__": __builtins__}
    stage = "solution"
    try:
        code = compile(job["solution"], "<solution>", "exec", flags=flags, dont_inherit=True)
        del job
        exec(code, namespace)  # noqa: S102 - this is the sandbox
        stage = "tests"
        code = compile(sources["<tests>"], "<tests>", "exec", dont_inherit=True)
        exec(code, namespace)  # noqa: S102
        result = {"status": "passed"}
    except BaseException as exc:  # noqa: BLE001 - SystemExit too: exiting is not passing
        try:
            detail = describe(exc, sources)
        except BaseException as inner:  # noqa: BLE001
            detail = f"{type(exc).__name__} (detail unavailable: {type(inner).__name__})"
        result = {"status": "failed", "stage": stage, "detail": detail}
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except BaseException:  # noqa: BLE001
        pass
    write(3, (sentinel + " " + dumps(result) + "\n").encode("utf-8", "replace"))
    # Skip interpreter shutdown: the candidate's threads, atexit hooks and __del__ methods do
    # not get to run (or hang) after the verdict.
    exit_now(0)


main()
