"""The code sandbox's guarantees, one hostile candidate each, run for real (no mocks).

Every test checks three things: the candidate is judged incorrect, it left no trace on the
system (no file in a world-writable directory, none where it aimed), and no process of it is
left (no process of the sandbox uid range, none with the test's marker in its command line).
Each candidate is built so that it would be judged *correct* if the guarantee were broken.
"""

from __future__ import annotations

import errno
import os
import secrets
import socket
import threading
import time
from pathlib import Path

import pytest

from ssb_code import CodeVerifier
from ssb_code.sandbox import SLOTS, UID_BASE, Limits, isolation, run_many, run_tests

ROOT = os.geteuid() == 0
WORLD_WRITABLE = ("/tmp", "/var/tmp", "/dev/shm", "/run/lock")
SANDBOX_UIDS = range(UID_BASE, UID_BASE + SLOTS)
FAST = Limits(timeout=5)


def _proc_uid(pid: str) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("Uid:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _leftover_processes(marker: str) -> list[str]:
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if marker in cmdline or (ROOT and _proc_uid(pid) in SANDBOX_UIDS):
            found.append(f"{pid}: {cmdline[:120]}")
    return found


def _traces(marker: str) -> list[str]:
    """Files named after the marker, or owned by a sandbox uid, in world-writable places."""
    out = []
    for root in WORLD_WRITABLE:
        try:
            entries = list(os.scandir(root))
        except OSError:
            continue
        for entry in entries:
            try:
                uid = entry.stat(follow_symlinks=False).st_uid
            except OSError:
                continue
            if marker in entry.name or (ROOT and uid in SANDBOX_UIDS):
                out.append(entry.path)
    return out


@pytest.fixture
def marker():
    """A unique name; asserts after the test that nothing carrying it, or run by the sandbox
    uids, is left anywhere."""
    name = f"ssbprobe{secrets.token_hex(6)}"
    yield name
    # The kernel reaps a PID namespace before its init's exit is reported; the short wait only
    # covers the fallback sweeps of a machine without one.
    deadline = time.monotonic() + 3
    while _leftover_processes(name) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _leftover_processes(name) == []
    assert _traces(name) == []


def judge(solution: str, tests: str, limits: Limits = FAST):
    result = run_tests(solution, tests, limits)
    assert result.status != "error", result.detail
    assert not result.passed, result
    return result


@pytest.mark.skipif(not ROOT, reason="namespaces and the uid switch need root")
def test_root_gets_every_namespace_and_an_unprivileged_uid():
    info = isolation()
    assert info["status"] == "passed", info
    assert set(info["namespaces"]) >= {"pid", "net", "mount", "ipc", "uts"}, info
    assert info["uid"] in SANDBOX_UIDS
    result = run_tests("import os\ndef ids(): return os.getuid(), os.getgid(), os.getgroups()",
                       "u, g, groups = ids()\n"
                       "assert u == g == RUN_UID and groups == [], ids()\n".replace(
                           "RUN_UID", "__import__('os').getuid()"), FAST)
    assert result.passed, result.detail
    assert result.uid in SANDBOX_UIDS and result.uid != 0


def test_passing_and_failing_programs_say_why():
    ok = run_tests("def add(a, b):\n    return a + b\n", "assert add(2, 3) == 5\n", FAST)
    assert ok.passed and ok.detail == "passed"
    bad = run_tests("def add(a, b):\n    return a - b\n", "assert add(2, 3) == 5\n", FAST)
    assert bad.status == "failed"
    assert bad.detail == "failed: AssertionError | tests line 1: assert add(2, 3) == 5 (got: -1)"
    multi = run_tests("def add(a, b):\n    return [a]\n",
                      "def check(f):\n    assert f(2, 3) == [\n        5,\n    ]\ncheck(add)\n", FAST)
    assert multi.detail == ("failed: AssertionError | tests line 2: assert f(2, 3) == [ 5, ] "
                            "(got: [2])")
    boom = run_tests("def add(a, b):\n    return a / 0\n", "assert add(2, 3) == 5\n", FAST)
    assert boom.detail.startswith("failed: ZeroDivisionError: division by zero")
    assert "solution line 2: return a / 0" in boom.detail


def test_writes_outside_its_directory_fail_and_leave_nothing(marker, tmp_path):
    # A world-writable directory of the host, to be sure permissions alone are not what stops it.
    open_dir = tmp_path / "open"
    open_dir.mkdir()
    open_dir.chmod(0o777)
    tmp_path.chmod(0o755)
    targets = [f"/tmp/{marker}", f"/var/tmp/{marker}", f"/dev/shm/{marker}",
               f"/run/lock/{marker}", f"../{marker}", f"{open_dir}/{marker}",
               f"{Path.cwd()}/{marker}"]
    solution = f"""
import os
def written():
    done = []
    for path in {targets!r}:
        try:
            with open(path, "w") as f:
                f.write("x")
            done.append(os.path.abspath(path))
        except OSError:
            pass
    return done
"""
    # Passes only if some write outside the sandbox's own directory reached the host; inside
    # the sandbox, /tmp, /var/tmp and /dev/shm are private tmpfs, so those writes succeed
    # there and are checked on the host instead.
    tests = ("reached = [p for p in written() if not p.startswith(('/tmp/', '/var/tmp/', "
             "'/dev/shm/'))]\nassert reached, 'nothing written outside'\n")
    judge(solution, tests)
    for target in targets:
        assert not (Path.cwd() / target).exists(), target
    assert not list(open_dir.iterdir())


def test_infinite_loop_times_out(marker):
    start = time.monotonic()
    result = judge(f"def spin():\n    while True:\n        pass  # {marker}\n",
                   "assert spin() == 1\n", Limits(timeout=2))
    assert result.status == "timeout" and result.detail.startswith("timeout:")
    assert time.monotonic() - start < 20  # the deadline held (generous: a busy 2-core box)


def test_fork_bomb_is_capped_and_reaped(marker):
    solution = f"""
import os, time
def forks():
    n = 0
    try:
        for _ in range(200):
            if os.fork() == 0:
                time.sleep(60)  # {marker}
                os._exit(0)
            n += 1
    except OSError:
        pass
    return n
"""
    result = judge(solution, "n = forks()\nassert n >= 200, n\n")
    assert result.status == "failed"
    assert "AssertionError: " in result.detail  # the count it reached, below the cap
    reached = int(result.detail.split("AssertionError: ")[1].split()[0])
    assert reached < Limits().nproc


def test_endless_fork_bomb_ends_at_the_deadline(marker):
    solution = f"import os\n# {marker}\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n"
    result = judge(solution, "assert True\n", Limits(timeout=2))
    assert result.status in ("timeout", "crashed")


def test_huge_allocation_fails(marker):
    result = judge(f"def big():\n    # {marker}\n    return len(bytearray(64 * 1024 ** 3))\n",
                   "assert big() == 64 * 1024 ** 3\n")
    assert result.detail.startswith("failed: MemoryError")


def test_detached_background_process_does_not_survive(marker):
    # Double fork + setsid: leaves the process group; the grandchild also keeps the output pipe
    # open, so a supervisor that waited for end-of-file would hang.
    solution = f"""
import os, sys, time
def spawn():
    if os.fork() == 0:
        os.setsid()
        if os.fork() == 0:
            os.execv(sys.executable, [sys.executable, "-c", "import time; time.sleep(120)", "{marker}"])
        os._exit(0)
    time.sleep(0.3)
    return -1
"""
    start = time.monotonic()
    result = judge(solution, "assert spawn() == 0\n")
    assert result.status == "failed"
    assert time.monotonic() - start < 20
    # the marker fixture checks that the sleeper is gone


@pytest.mark.parametrize("exit_code", ["import sys\nsys.exit(0)\n", "import os\nos._exit(0)\n",
                                       "raise SystemExit\n"])
def test_exit_before_the_tests_is_not_a_pass(marker, exit_code):
    result = judge(f"# {marker}\n" + exit_code, "assert False, 'the tests ran'\n")
    assert result.status in ("failed", "crashed")
    assert "the tests ran" not in result.detail


def test_environment_secrets_are_invisible(marker, monkeypatch):
    secret = secrets.token_hex(16)
    monkeypatch.setenv("SSB_TEST_SECRET", secret)
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.invalid:3128")
    solution = f"""
import os
def leaked():
    # {marker}
    found = [k for k, v in os.environ.items() if "{secret}" in v or "proxy" in k.lower()]
    for pid in os.listdir("/proc"):  # other processes' environments (ssb's included)
        try:
            if b"{secret}" in open(f"/proc/{{pid}}/environ", "rb").read():
                found.append(pid)
        except OSError:
            pass
    return found
"""
    result = judge(solution, "assert leaked(), 'no secret'\n")
    assert result.detail.startswith("failed: AssertionError: no secret")


def test_network_is_unreachable(marker):
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(5)
    listener.settimeout(0.2)
    port = listener.getsockname()[1]
    accepted = []
    stop = threading.Event()

    def accept():
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except (socket.timeout, OSError):
                continue
            accepted.append(conn.recv(100))
            conn.close()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    solution = f"""
import socket
def talk():
    # {marker}
    with socket.create_connection(("127.0.0.1", {port}), timeout=2) as s:
        s.sendall(b"hello from the sandbox")
    return True
"""
    try:
        result = judge(solution, "assert talk() is True\n")
        time.sleep(0.3)
    finally:
        stop.set()
        thread.join(2)
        listener.close()
    assert accepted == []
    # No interface at all in the sandbox's network namespace, not even loopback: ENETUNREACH.
    unreachable = f"[Errno {errno.ENETUNREACH}] {os.strerror(errno.ENETUNREACH)}"
    assert result.detail.split(" | ")[0] == f"failed: OSError: {unreachable}"


def test_parallel_runs_overlap_and_keep_their_order(marker):
    slow = "import time\nprint('start', time.time())\ntime.sleep(1)\nprint('end', time.time())\n"
    items = [(slow + f"X = {i}\n", f"assert X == {i}\n") for i in range(2)]
    items.append(("X = 1\n", "assert X == 2\n"))
    results = run_many(items, FAST, workers=3)
    assert [r.status for r in results] == ["passed", "passed", "failed"]
    spans = []
    for r in results[:2]:
        words = r.output.split()
        spans.append((float(words[1]), float(words[3])))
    assert spans[0][0] < spans[1][1] and spans[1][0] < spans[0][1], spans  # ran concurrently
    if ROOT:
        assert len({r.uid for r in results}) == 3


def test_a_fork_bomb_does_not_starve_a_neighbour(marker):
    bomb = f"import os\n# {marker}\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n"
    good = "import subprocess, sys\nout = subprocess.run([sys.executable, '-c', 'print(7)'], capture_output=True, text=True).stdout\n"
    results = run_many([(bomb, "pass"), (good, "assert out.strip() == '7', out")],
                       Limits(timeout=4), workers=2)
    assert not results[0].passed
    assert results[1].passed, results[1].detail


@pytest.mark.skipif(not ROOT, reason="the uid sweeps are the root fallback")
def test_fallback_without_namespaces_still_cleans_up(marker, monkeypatch):
    """What happens where the system refuses namespaces: the uid sweep kills the detached
    process and the file sweep removes what it wrote to /tmp (the interpreter must then be one
    the sandbox uid can run)."""
    python = "/usr/bin/python3"
    if not os.access(python, os.X_OK):
        pytest.skip("no /usr/bin/python3 for the sandbox uid")
    monkeypatch.setenv("SSB_CODE_PYTHON", python)
    solution = f"""
import os, sys, time
def spawn():
    open("/tmp/{marker}", "w").write("x")
    if os.fork() == 0:
        os.setsid()
        if os.fork() == 0:
            os.execv(sys.executable, [sys.executable, "-c", "import time; time.sleep(120)", "{marker}"])
        os._exit(0)
    time.sleep(0.3)
    return -1
"""
    result = judge(solution, "assert spawn() == 0\n", Limits(timeout=5, namespaces=()))
    assert result.namespaces == [] and result.status == "failed", result


def test_verifier_batch_matches_single_verdicts():
    verifier = CodeVerifier()
    gold = "assert sq(3) == 9\n"
    responses = ["```python\ndef sq(x):\n    return x * x\n```",
                 "```python\ndef sq(x):\n    return x + x\n```",
                 "I don't know."]
    batch = verifier.verify_many([(r, gold) for r in responses], timeout=5)
    single = [verifier.verify(r, gold, timeout=5) for r in responses]
    assert [v.correct for v in batch] == [v.correct for v in single] == [True, False, False]
    assert [v.detail for v in batch] == [v.detail for v in single]
    assert batch[2].detail == "no code found" and batch[2].extracted is None


def _ppid(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("PPid:"):
                return int(line.split()[1])
    raise AssertionError(f"no PPid for {pid}")


def test_killing_the_supervisor_kills_everything_it_ran(marker):
    """ssb (or the supervisor) dying mid-run must not leave the candidate behind."""
    solution = f"""
import subprocess, sys, time
subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)", "{marker}"])
time.sleep(120)
"""
    results = []
    thread = threading.Thread(target=lambda: results.append(
        run_tests(solution, "pass", Limits(timeout=60))))
    thread.start()
    deadline = time.monotonic() + 30
    sleeper = None
    while sleeper is None and time.monotonic() < deadline:
        for pid in os.listdir("/proc"):
            try:
                if pid.isdigit() and marker in Path(f"/proc/{pid}/cmdline").read_bytes().decode(
                        errors="replace"):
                    sleeper = int(pid)
            except OSError:
                pass
        time.sleep(0.05)
    assert sleeper is not None, "the candidate never started"
    candidate = _ppid(sleeper)
    supervisor = _ppid(candidate)
    assert "_runner.py" in Path(f"/proc/{supervisor}/cmdline").read_bytes().decode()
    os.kill(supervisor, 9)
    thread.join(30)
    assert results and results[0].status == "error" and not results[0].passed
    # the marker fixture checks that the sleeper and the candidate are gone
