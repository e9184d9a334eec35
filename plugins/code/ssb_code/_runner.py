"""The sandbox supervisor: runs ONE candidate program and reports what happened as JSON.

Started by :mod:`ssb_code.sandbox` as ``python -I -S _runner.py`` in a new session, with the job
(JSON) on stdin.  Standard library only: it runs without site-packages, and it never imports the
candidate's code.  It writes exactly one JSON object to stdout.

What it does (see ssb_code/sandbox.py for the guarantees and the fallbacks):

1. As root: ``unshare`` new PID, network, mount, IPC and UTS namespaces (each one it can get).
2. ``fork``.  The child is PID 1 of the new PID namespace: when it exits, the kernel kills every
   process left in the namespace -- detached, ``setsid``'d grandchildren included.
3. The child, still root, makes every mount read-only (its own copy, in its mount namespace),
   mounts fresh size-capped tmpfs on /tmp, /var/tmp and /dev/shm (they vanish with the
   namespace), a fresh /proc (it sees only its own processes), and makes the interpreter visible
   at its own path when that path crosses a directory the sandbox user may not enter (/root).
4. The child sets resource limits, drops to the unprivileged uid/gid, sets no_new_privs and a
   parent-death signal (ssb's one helper for that, ``ssb/processes.py``, loaded by its path:
   this process has no site-packages to import ssb from), and execs ``python -I -c HARNESS``
   with a fixed tiny environment.
5. The supervisor feeds the payload on the child's stdin, collects (bounded) output and the
   harness's result line, and kills the child at the wall-clock deadline.  Without a PID
   namespace it also kills the child's process group, and every process of the sandbox uid.
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import select
import signal
import sys
import time

CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 32, 4096, 16384, 1 << 18
PR_SET_NO_NEW_PRIVS = 38
NAMESPACES = {"pid": CLONE_NEWPID, "net": CLONE_NEWNET, "mount": CLONE_NEWNS,
              "ipc": CLONE_NEWIPC, "uts": CLONE_NEWUTS}
# The fresh, private, size-capped file systems a candidate may write to.
SCRATCH = ("/tmp", "/var/tmp", "/dev/shm")

_libc = ctypes.CDLL(None, use_errno=True)
PROCESSES = None  # ssb/processes.py, loaded by supervise()


def _check(ret: int, what: str) -> None:
    if ret != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def unshare(flags: int) -> None:
    _check(_libc.unshare(ctypes.c_int(flags)), "unshare")


def mount(source: str | None, target: str, fstype: str | None, flags: int,
          data: str | None = None) -> None:
    enc = lambda s: None if s is None else s.encode()  # noqa: E731
    _check(_libc.mount(enc(source), enc(target), enc(fstype), ctypes.c_ulong(flags),
                       enc(data)), f"mount {target}")


def load_processes(path: str):
    """ssb's process helpers (``ssb/processes.py``, standard library only) loaded from ``path``,
    the file of ssb's own installation that sandbox.py names in the job."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("_ssb_processes", path)
    if spec is None or spec.loader is None:
        raise OSError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def prctl(option: int, value: int) -> None:
    _check(_libc.prctl(ctypes.c_int(option), ctypes.c_ulong(value), ctypes.c_ulong(0),
                       ctypes.c_ulong(0), ctypes.c_ulong(0)), "prctl")


def get_namespaces(wanted: list[str]) -> list[str]:
    """Unshare the wanted namespaces, all at once or else one by one; the ones obtained."""
    flags = 0
    for name in wanted:
        flags |= NAMESPACES[name]
    if not flags:
        return []
    try:
        unshare(flags)
        return list(wanted)
    except OSError:
        pass
    got = []
    for name in wanted:
        try:
            unshare(NAMESPACES[name])
            got.append(name)
        except OSError:
            pass
    return got


CLONE_NEWUSER = 0x10000000


def get_user_namespaces(wanted: list[str]) -> list[str]:
    """Not root: a user namespace (our uid mapped to itself) makes the other namespaces
    available where the system allows unprivileged user namespaces; otherwise none."""
    flags = CLONE_NEWUSER
    for name in wanted:
        flags |= NAMESPACES[name]
    uid, gid = os.getuid(), os.getgid()
    try:
        unshare(flags)
        with open("/proc/self/setgroups", "w") as f:
            f.write("deny")
        with open("/proc/self/uid_map", "w") as f:
            f.write(f"{uid} {uid} 1")
        with open("/proc/self/gid_map", "w") as f:
            f.write(f"{gid} {gid} 1")
    except OSError:
        return []
    return ["user", *wanted]


def _mountinfo() -> list[tuple[str, set[str]]]:
    """(mount point, per-mount options) of every mount, parents before children."""
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            parts = line.split()
            point = parts[4].encode().decode("unicode_escape")  # \040 for spaces
            out.append((point, set(parts[5].split(","))))
    return out


_KEEP = {"nodev": MS_NODEV, "noexec": MS_NOEXEC, "noatime": 1024, "nodiratime": 2048,
         "relatime": 1 << 21, "strictatime": 1 << 24}


def _remount_flags(options: set[str]) -> int:
    # Keep the flags a user namespace would lock (dropping one there is EPERM); add ro, nosuid.
    flags = MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID
    for name, bit in _KEEP.items():
        if name in options:
            flags |= bit
    return flags


def _blocked_ancestor(path: str) -> str | None:
    """The topmost directory above ``path`` that other users may not enter (e.g. /root)."""
    parts = path.strip("/").split("/")
    current = ""
    for part in parts[:-1]:
        current += "/" + part
        try:
            if not os.stat(current).st_mode & 0o001:
                return current
        except OSError:
            return None
    return None


def prepare_filesystem(job: dict, namespaces: list[str]) -> str:
    """In the child, as root: the mount layout described above; returns the working directory."""
    uid, gid = job["uid"], job["gid"]
    if "mount" not in namespaces:
        # No mount namespace: the caller made a private host directory (removed afterwards).
        return job["host_workdir"]
    mount(None, "/", None, MS_REC | MS_PRIVATE)
    # Everything read-only first (only this namespace's copies of the mounts change) ...
    for point, options in _mountinfo():
        if "ro" in options:
            continue
        try:
            mount(None, point, None, _remount_flags(options))
        except OSError:
            pass  # e.g. a mount point hidden under another mount; the / remount is what counts
    # ... then fresh writable scratch space that dies with the namespace.
    size = f"size={int(job['tmpfs_mb'])}m"
    for point in SCRATCH:
        if os.path.isdir(point):
            mount("tmpfs", point, "tmpfs", MS_NOSUID | MS_NODEV, f"{size},mode=1777")
    if "pid" in namespaces:
        mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    # The interpreter must be reachable by the sandbox user even when it lives under a directory
    # only root may enter (pyenv in /root; its RUNPATH is absolute, so it cannot be moved):
    # cover that directory with an empty tmpfs and bind the interpreter's prefix back at its path.
    prefix = job["python_prefix"]
    blocked = _blocked_ancestor(prefix + "/x") if job["drop_to_uid"] else None
    if blocked is not None:
        stage = "/tmp/.ssb-python"
        os.mkdir(stage, 0o755)
        mount(prefix, stage, None, MS_BIND | MS_REC)
        mount("tmpfs", blocked, "tmpfs", MS_NOSUID | MS_NODEV, "size=1m,mode=0755")
        os.makedirs(prefix, 0o755, exist_ok=True)
        mount(stage, prefix, None, MS_BIND | MS_REC)
        mount(None, prefix, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID)
        mount(None, blocked, None, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)
    work = "/tmp/work"
    os.mkdir(work, 0o700)
    os.chown(work, uid, gid)
    return work


def child(job: dict, namespaces: list[str], fds: dict[str, int]) -> None:
    """Runs in the forked child; never returns (exec or _exit)."""
    import resource

    try:
        os.setpgid(0, 0)  # its own group: the supervisor kills the group, not itself
        workdir = prepare_filesystem(job, namespaces)
        os.chdir(workdir)
        # Move the pipe ends out of the way first, so no dup2 below clobbers another one.
        import fcntl

        high = {k: fcntl.fcntl(fd, fcntl.F_DUPFD, 100) for k, fd in fds.items()}
        os.dup2(high["stdin"], 0)
        os.dup2(high["out"], 1)
        os.dup2(high["out"], 2)
        os.dup2(high["result"], 3)
        os.dup2(high["error"], 4)
        os.set_inheritable(4, False)  # close-on-exec: EOF on it tells the parent exec worked
        os.closerange(5, 65536)
        limits = job["limits"]
        cpu = int(limits["cpu_s"])
        resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
        mem = int(limits["memory_mb"]) * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (mem, mem))
        fsize = int(limits["fsize_mb"]) * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))
        resource.setrlimit(resource.RLIMIT_NOFILE, (int(limits["nofile"]),) * 2)
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # a core file would be a trace
        if job["drop_to_uid"]:
            # Counted per real uid: each concurrent sandbox has its own uid (see sandbox.py).
            resource.setrlimit(resource.RLIMIT_NPROC, (int(limits["nproc"]),) * 2)
            os.setgroups([])
            os.setgid(job["gid"])
            os.setuid(job["uid"])
        prctl(PR_SET_NO_NEW_PRIVS, 1)  # setuid binaries (su, ping) gain nothing
        # after setuid: a uid change clears it
        if not PROCESSES.set_parent_death_signal(signal.SIGKILL):
            raise OSError("prctl(PR_SET_PDEATHSIG) failed")
        if os.getppid() != job["_supervisor"] and "pid" not in namespaces:
            os._exit(111)  # the supervisor already died
        env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": workdir,
               "TMPDIR": "/tmp", "PYTHONHASHSEED": "0", "PYTHONDONTWRITEBYTECODE": "1",
               # numeric libraries must not start a thread per core (threads count as processes)
               "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        python = job["python"]
        os.execve(python, [python, "-I", "-X", "utf8", "-c", job["harness"]], env)
    except BaseException as exc:  # noqa: BLE001 - report any setup failure to the supervisor
        try:
            os.write(fds["error"], f"{type(exc).__name__}: {exc}".encode()[:2000])
        finally:
            os._exit(112)


def supervise(job: dict) -> dict:
    global PROCESSES
    started = time.monotonic()
    PROCESSES = load_processes(job["processes"])  # before any namespace, fork or mount
    is_root = os.getuid() == 0
    wanted = [n for n in job["namespaces"] if n in NAMESPACES]
    namespaces = get_namespaces(wanted) if is_root else get_user_namespaces(wanted)
    job["_supervisor"] = os.getpid()
    job["drop_to_uid"] = is_root
    if not is_root:
        job["uid"], job["gid"] = os.getuid(), os.getgid()
    host_workdir = None
    if "mount" not in namespaces:
        import tempfile

        host_workdir = job["host_workdir"] = tempfile.mkdtemp(prefix="ssb-code-")
        os.chown(host_workdir, job["uid"], job["gid"])
    stdin_r, stdin_w = os.pipe()
    out_r, out_w = os.pipe()
    res_r, res_w = os.pipe()
    err_r, err_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        for fd in (stdin_w, out_r, res_r, err_r):
            os.close(fd)
        child(job, namespaces, {"stdin": stdin_r, "out": out_w, "result": res_w,
                                "error": err_w})
    for fd in (stdin_r, out_w, res_w, err_w):
        os.close(fd)
    deadline = started + float(job["timeout"])
    max_out = int(job["max_output"])
    payload = job["payload"].encode()
    buffers = {out_r: bytearray(), res_r: bytearray(), err_r: bytearray()}
    caps = {out_r: max_out, res_r: 1 << 16, err_r: 4096}
    truncated = False
    for fd in (stdin_w, *buffers):
        os.set_blocking(fd, False)
    writing = stdin_w
    timed_out = False
    open_fds = set(buffers)
    try:  # readable when the child exits: no polling delay on the common, fast path
        pidfd = os.pidfd_open(pid)
    except (AttributeError, OSError):
        pidfd = None
    while True:
        # WNOWAIT: the child stays a zombie, so its pid (= its process group id) cannot be reused
        # by an unrelated process before we have killed the group below.
        if os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None:
            break
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            timed_out = True
            break
        wfds = [writing] if writing is not None else []
        watch = list(open_fds) + ([pidfd] if pidfd is not None else [])
        rlist, wlist, _ = select.select(watch, wfds, [], min(remaining, 0.05))
        rlist = [fd for fd in rlist if fd != pidfd]
        if wlist:
            try:
                n = os.write(writing, payload)
                payload = payload[n:]
            except (BlockingIOError, InterruptedError):
                pass
            except OSError:  # the child closed its stdin early
                payload = b""
            if not payload:
                os.close(writing)
                writing = None
        truncated |= _drain(rlist, buffers, caps, open_fds)
    if writing is not None:
        os.close(writing)
    # Still unreaped, so both ids are ours.  PID 1 gone takes its namespace with it (the kernel
    # kills and reaps every process in it before the exit is reported); without a PID
    # namespace, this kills the child's process group.
    _kill(pid)
    _, status = os.waitpid(pid, 0)
    if pidfd is not None:
        os.close(pidfd)
    # Output still in the pipes; writers that outlived the child (no PID namespace) are killed
    # by the caller's uid sweep, so wait only briefly for end-of-file.
    grace = time.monotonic() + 0.5
    while open_fds and time.monotonic() < grace:
        rlist, _, _ = select.select(list(open_fds), [], [], 0.05)
        truncated |= _drain(rlist, buffers, caps, open_fds)
    for fd in buffers:
        os.close(fd)
    swept = {}
    if is_root and "pid" not in namespaces:
        swept["processes"] = sweep_processes(job["uid"])
    if host_workdir is not None:
        import shutil

        shutil.rmtree(host_workdir, ignore_errors=True)
        if is_root:
            swept["files"] = sweep_files(job["uid"])
    report = {
        "swept": swept,
        "namespaces": namespaces,
        "timed_out": timed_out,
        "exit_code": os.WEXITSTATUS(status) if os.WIFEXITED(status) else None,
        "signal": os.WTERMSIG(status) if os.WIFSIGNALED(status) else None,
        "output": buffers[out_r].decode("utf-8", "replace"),
        "output_truncated": truncated,
        "result": buffers[res_r].decode("utf-8", "replace"),
        "setup_error": buffers[err_r].decode("utf-8", "replace") or None,
        "seconds": round(time.monotonic() - started, 4),
    }
    return report


def sweep_processes(uid: int) -> int:
    """Kill every process of ``uid`` (no PID namespace: the only way to reach ones that left the
    process group).  A forked child becomes ``uid`` and signals -1, i.e. every process it may
    signal, which is exactly that uid's.  The uid is reserved for this sandbox slot."""
    rounds = 0
    pid = os.fork()
    if pid == 0:
        try:
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)
            for rounds in range(1000):  # new ones may be forked while we kill: repeat
                try:
                    os.kill(-1, signal.SIGKILL)
                except ProcessLookupError:
                    os._exit(min(rounds, 255))
                time.sleep(0.001)
        finally:
            os._exit(255)
    _, status = os.waitpid(pid, 0)
    return os.WEXITSTATUS(status) if os.WIFEXITED(status) else -1


WORLD_WRITABLE = ("/tmp", "/var/tmp", "/dev/shm", "/run/lock", "/dev/mqueue")


def sweep_files(uid: int, roots=WORLD_WRITABLE, depth: int = 3) -> int:
    """Remove what ``uid`` created in world-writable directories (no mount namespace)."""
    import shutil

    removed = 0
    for root in roots:
        stack = [(root, 0)]
        while stack:
            path, level = stack.pop()
            try:
                entries = list(os.scandir(path))
            except OSError:
                continue
            for entry in entries:
                try:
                    st = entry.stat(follow_symlinks=False)
                except OSError:
                    continue
                if st.st_uid == uid:
                    try:
                        if entry.is_dir(follow_symlinks=False):
                            shutil.rmtree(entry.path, ignore_errors=True)
                        else:
                            os.unlink(entry.path)
                        removed += 1
                    except OSError:
                        pass
                elif (entry.is_dir(follow_symlinks=False) and st.st_mode & 0o002
                      and level < depth):
                    stack.append((entry.path, level + 1))
    return removed


def _drain(rlist, buffers, caps, open_fds) -> bool:
    """Read what is ready; keep the first ``cap`` bytes of each stream. True if any was cut."""
    cut = False
    for fd in rlist:
        try:
            chunk = os.read(fd, 1 << 16)
        except (BlockingIOError, InterruptedError):
            continue
        if not chunk:
            open_fds.discard(fd)
            continue
        room = caps[fd] - len(buffers[fd])
        if room > 0:
            buffers[fd] += chunk[:room]
        if len(chunk) > max(room, 0):
            cut = True
    return cut


def _kill(pid: int) -> None:
    for kill in (os.kill, os.killpg):
        try:
            kill(pid, signal.SIGKILL)
        except OSError as exc:
            if exc.errno != errno.ESRCH:
                raise


def main() -> None:
    job = json.loads(sys.stdin.buffer.read())
    try:
        report = supervise(job)
    except Exception as exc:  # noqa: BLE001 - the parent turns this into a sandbox error
        report = {"supervisor_error": f"{type(exc).__name__}: {exc}"[:2000]}
    sys.stdout.write(json.dumps(report))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
