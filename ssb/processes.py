"""The processes ssb starts: each dies with its parent, and how many cores they may use.

One mechanism for every child ssb starts (verification helpers, ``ssb run``'s stage children,
torchrun workers of a distributed distill, the code sandbox's candidate), so that a SIGKILLed
``ssb`` leaves nothing computing under PID 1:

* :func:`die_with_parent`, called first thing in the child: on Linux the kernel SIGKILLs it when
  its parent dies (``PR_SET_PDEATHSIG``), even in the middle of C-level work that holds the
  GIL; where the parent's pid was handed down (:func:`child_env`), a parent that died before the
  signal was armed is caught at once, and an optional thread watches the parent pid everywhere
  (runs whenever the GIL is free).
* ``python -m ssb.processes COMMAND ...`` arms the same signal and then execs COMMAND, for
  programs that are not ssb's own (a launcher such as ``accelerate launch``): the signal
  survives ``exec``.

The parent-death signal fires when the *thread* that started the child exits, not the process:
start children from a thread that outlives them (or waits for them).

Standard library only, and no import of the rest of ssb: the code sandbox's supervisor, which
runs without site-packages, loads this file by its path.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time

#: The variable that carries the parent's pid to a child (see :func:`child_env`).
PARENT_ENV = "SSB_PARENT_PID"
#: Set to ``0`` to skip the kernel's parent-death signal (tests use it to exercise the
#: parent-pid watch alone).  ``SSB_VERIFY_PDEATHSIG`` is the older spelling, still read.
PDEATHSIG_ENV = "SSB_PDEATHSIG"
_PDEATHSIG_ENVS = (PDEATHSIG_ENV, "SSB_VERIFY_PDEATHSIG")
_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


def usable_cores() -> int:
    """CPU cores this process may run on: its affinity mask where the OS has one (a container
    or ``taskset`` limit), else every core of the machine."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def set_parent_death_signal(sig: int = signal.SIGKILL) -> bool:
    """Ask Linux to send ``sig`` to this process when its parent (thread) exits.

    False where it cannot (not Linux, prctl refused, or disabled by ``SSB_PDEATHSIG=0``).  A
    later ``setuid`` clears it: arm it after any change of user.
    """
    if not sys.platform.startswith("linux"):
        return False
    if any(os.environ.get(name) == "0" for name in _PDEATHSIG_ENVS):
        return False
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0) == 0
    except (OSError, AttributeError, ValueError):
        return False


def child_env(env: dict[str, str] | None = None, var: str = PARENT_ENV) -> dict[str, str]:
    """A copy of ``env`` (default: this process's) that tells a child this process's pid, so the
    child's :func:`die_with_parent` can tell whether its parent already died."""
    out = dict(os.environ if env is None else env)
    out[var] = str(os.getpid())
    return out


def die_with_parent(var: str | None = PARENT_ENV, *, watch: bool = False,
                    name: str = "ssb-parent-watch") -> bool:
    """Make sure this process does not outlive its parent; call it first thing in a child.

    Arms the kernel's parent-death signal (Linux).  When ``var`` names an environment variable
    set by :func:`child_env`, its value is the parent this process was started by: the variable
    is removed (so this process's own children do not mistake it for theirs), and if the parent
    already died (before the signal was armed, so it will never come) the process exits now;
    with ``watch``, a daemon thread exits the process when the parent changes (the fallback
    where there is no such signal).  Without the variable (started by a launcher, say), only
    the signal is armed.  Returns whether the kernel's signal is armed.
    """
    armed = set_parent_death_signal()
    parent = 0
    if var:
        try:
            parent = int(os.environ.pop(var, "0") or 0)
        except ValueError:
            parent = 0
    if not parent:
        return armed
    if os.getppid() != parent:
        os._exit(1)
    if watch:
        def watch_parent() -> None:
            while True:
                time.sleep(0.5)
                if os.getppid() != parent:
                    os._exit(1)

        threading.Thread(target=watch_parent, name=name, daemon=True).start()
    return armed


def exec_command(argv: list[str]) -> None:
    """Arm :func:`die_with_parent` and replace this process with ``argv`` (PATH searched)."""
    die_with_parent()
    os.execvp(argv[0], argv)


def wrap_command(argv: list[str]) -> list[str]:
    """``argv`` run through ``python -m ssb.processes``: it dies with the process that starts it
    (start it with :func:`child_env`'s environment)."""
    return [sys.executable, "-m", "ssb.processes", *argv]


if __name__ == "__main__":
    if len(sys.argv) < 2:
        print("usage: python -m ssb.processes COMMAND [ARG ...]", file=sys.stderr)
        sys.exit(2)
    try:
        exec_command(sys.argv[1:])
    except OSError as exc:
        print(f"error: cannot run {sys.argv[1]}: {exc.strerror or exc}", file=sys.stderr)
        sys.exit(127)


__all__ = ["PARENT_ENV", "PDEATHSIG_ENV", "child_env", "die_with_parent", "exec_command",
           "set_parent_death_signal", "usable_cores", "wrap_command"]
