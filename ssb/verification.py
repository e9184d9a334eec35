"""Time-bounded answer verification, safe in any thread and in worker processes.

Why not math-verify's own timeout: it uses ``signal.alarm``, which only works in the main thread
and cannot interrupt long C-level work (``9^{9^{9}}`` spends its time inside one big-int power).
So the expensive step (sympy parsing + comparison) runs in a small pool of persistent helper
processes that the caller can kill:

* :func:`run_bounded` sends one call (JSON in, JSON out; never pickle) to an idle helper and waits
  at most ``timeout`` seconds; a helper that overruns is killed and replaced and the call raises
  :class:`VerificationTimeout`.  Inside a helper, nested calls run inline (the outer deadline
  already bounds them).
* :func:`check_complexity` is a cheap in-process guard that rejects pathological answers (huge,
  deeply nested, giant exponent towers or factorials) before any sympy work.
* :func:`verify_batch` verifies ``(response, gold)`` pairs for a domain, each item with its own
  deadline: by default on one thread per core here, the sympy steps spread over as many
  helpers; or one at a time (``workers=0``); or whole verifications in ``workers`` helpers.

Helpers die with the process that started them (``PR_SET_PDEATHSIG`` on Linux, and a watch of
the parent pid everywhere), so a SIGKILLed ``ssb`` leaves no helper spinning under PID 1.

Model text is never evaluated: math-verify parses LaTeX into sympy objects without ``eval``.
"""

from __future__ import annotations

import atexit
import importlib
import inspect
import json
import logging
import math
import os
import queue
import re
import select
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Sequence

from ssb.records import Verdict

_WORKER_ENV = "SSB_VERIFY_WORKER"
_PARENT_ENV = "SSB_VERIFY_PARENT"  # pid the helper must outlive no longer than
# Set to "0" to skip prctl(PR_SET_PDEATHSIG) in helpers (tests use it to exercise the fallback).
_PDEATHSIG_ENV = "SSB_VERIFY_PDEATHSIG"
# argv[1] of every helper, so that `ps`/tests can tell verification helpers apart.
HELPER_MARKER = "ssb-verify-helper"
DEFAULT_TIMEOUT = 5.0
STARTUP_TIMEOUT = float(os.environ.get("SSB_VERIFY_STARTUP_TIMEOUT", "120"))
# Address-space cap of a helper (MiB): a hostile answer gets MemoryError, not the machine's RAM.
WORKER_MEMORY_MB = int(os.environ.get("SSB_VERIFY_MEMORY_MB", "4096"))

# Limits of check_complexity (legit final answers are far below all of them; see there).
MAX_ANSWER_CHARS = 1_000
MAX_NESTING = 8
MAX_RESULT_DIGITS = 100_000
MAX_FACTORIAL = 5_000
MAX_LITERAL_DIGITS = 300
MAX_SYMBOLIC_EXPONENT = 50
MAX_FUNCTION_ARG_DIGITS = 100

log = logging.getLogger(__name__)


class VerificationTimeout(Exception):
    """A bounded call overran its deadline (its helper process was killed)."""


class WorkerError(Exception):
    """A helper process died or answered with an error."""


def in_worker() -> bool:
    """True inside a verification helper process."""
    return os.environ.get(_WORKER_ENV) == "1"


# ---------------------------------------------------------------------------------------------
# Cheap in-process guard
#
# Why a small parser and not regexes: the hostile answers that cost sympy minutes come in many
# spellings ((10^{9})!, 10^{9}!, 9!!!!, (9^9)^{9^9}, 2^{-10^{9}}, \binom{10^{9}}{10^{8}},
# \Gamma(10^{9}), \sin(10^{99999}), (x+1)^{1000}, ...) and a regex per spelling always misses
# the next one.  The parser reads the answer once (linear time, depth-bounded), estimating for
# every exact-number subexpression an upper bound on the digits of its exact value, and rejects
# as soon as one estimate passes a limit.  It over-estimates (never under): the worst case is
# a wrong, absurdly large answer that is rejected instead of compared.


class _TooComplex(Exception):
    """Raised inside the estimator; the message is the reason given to the caller."""


class _Val:
    """What the estimator knows about a subexpression.

    ``exact``: a number sympy computes exactly (integers, fractions, decimals, radicals of
    them), of at most ``digits`` digits (numerator and denominator together);
    ``mag``: upper bound on log10 of its magnitude when it is a number at all (exact, or made
    of constants such as e and pi and functions of numbers), None when it has free symbols;
    ``integer``: known to be an integer; ``atom``: a single symbol or constant (a power of it
    stays one cheap sympy Pow, while a power of a sum or a function of x gets expanded or
    simplified term by term).  Tuples and relations are not numbers; their ``digits`` add up
    their exact items' (a bound for gcd/max of them).
    """

    __slots__ = ("exact", "digits", "mag", "integer", "atom")

    def __init__(self, exact: bool = False, digits: float = 0.0, mag: float | None = None,
                 integer: bool = False, atom: bool = False):
        self.exact, self.digits, self.integer, self.atom = exact, digits, integer, atom
        self.mag = digits if exact else mag


_COMPOUND = _Val()           # a symbolic expression
_SYMBOL = _Val(atom=True)    # x, \alpha, \infty
_LOG10_2 = math.log10(2)
_LOG10_E = math.log10(math.e)
_CONSTANTS = {"e": _LOG10_E, "\\pi": math.log10(math.pi)}  # what math-verify reads as numbers

# Commands whose value sympy computes exactly from exact arguments (bounded by their arguments).
_INT_FUNCS = {"gcd", "lcm", "max", "min", "mod", "bmod", "pmod", "abs", "sgn", "det", "deg",
              "operatorname"}
# Functions sympy evaluates numerically at a precision that grows with the size of the
# argument (sin(10^{99999}) needs ~10^5 digits); exp and the hyperbolic ones also grow.
_TRANSCENDENTAL = {"sin", "cos", "tan", "cot", "sec", "csc", "arcsin", "arccos", "arctan",
                   "arccot", "arcsec", "arccsc", "sinh", "cosh", "tanh", "coth", "ln", "log",
                   "lg", "exp", "erf", "zeta"}
_EXPONENTIAL = {"exp", "sinh", "cosh"}
_TEXT_COMMANDS = {"text", "textbf", "textit", "textrm", "textsf", "texttt", "mathrm", "mathbf",
                  "mathit", "mathsf", "mathbb", "mathcal", "mbox", "hbox", "begin", "end",
                  "label", "tag", "color", "textcolor", "unit", "si"}
_SEPARATORS = {",", ";", "=", "<", ">", "&", ":", "\\\\", "\\le", "\\leq", "\\ge", "\\geq",
               "\\ne", "\\neq", "\\approx", "\\equiv", "\\sim", "\\cong", "\\in", "\\notin",
               "\\to", "\\rightarrow", "\\Rightarrow", "\\implies", "\\iff", "\\cup", "\\cap",
               "\\setminus", "\\subset", "\\subseteq", "\\lt", "\\gt", "\\leqslant",
               "\\geqslant", "\\mid", "\\vee", "\\wedge", "\\land", "\\lor", "\\choose",
               "\\over", "\\colon", "\\propto"}
_ADDITIVE = {"+", "-", "\\pm", "\\mp"}
_MULTIPLICATIVE = {"*", "\\cdot", "\\times", "/", "\\div", "\\ast"}
_CLOSERS = {"}", ")", "]", "\\}", "\\rfloor", "\\rceil", "\\rangle", "\\rvert", "\\rVert"}
# opener -> the tokens that close it (intervals mix them: (1,2], [1,2))
_OPENERS = {"{": ("}",), "(": (")", "]"), "[": ("]", ")"), "\\{": ("\\}",),
            "\\lfloor": ("\\rfloor",), "\\lceil": ("\\rceil",), "\\langle": ("\\rangle",),
            "\\lvert": ("\\rvert",), "\\lVert": ("\\rVert",)}

_DROP = re.compile(r"\s+|~|\\[,;:! ]|"
                   r"\\(?:left|right|[bB]igg?[lrm]?|displaystyle|textstyle|quad|qquad)(?![A-Za-z])")
_DIGIT_GROUP = re.compile(r"(?<=\d)(?:\{,\}|,)(?=\d{3}(?!\d))")
_TOKEN = re.compile(r"\d+(?:\.\d+)?|\.\d+|\\[A-Za-z]+|\\.|.", re.S)
_MAX_TOWER = 16  # un-braced a^b^c^... levels
_MAX_PARSE_DEPTH = 60  # parser frames: binds un-braced chains (\sqrt\sqrt..., 2^-2^-2^-...)


def _literal(tok: str) -> _Val:
    digits = tok.replace(".", "")
    if len(digits) > MAX_LITERAL_DIGITS:
        raise _TooComplex(f"number has too many digits ({len(digits)} > {MAX_LITERAL_DIGITS})")
    if "." in tok:  # p / 10^q: digits of p plus those of the denominator
        return _Val(True, float(len(digits.lstrip("0")) + len(tok) - tok.index(".")))
    value = int(digits)
    return _Val(True, math.log10(value) if value > 1 else 0.0, integer=True)


def _bound(digits: float) -> float:
    """Upper bound on a value of ``digits`` digits (inf when huge); rounded down a hair so that
    10^log10(1000) is not taken for more than 1000."""
    return 10.0 ** digits * (1 - 1e-9) if digits < 300 else math.inf


class _Estimator:
    def __init__(self, latex: str):
        s = _DROP.sub("", latex)
        s = s.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")
        s = s.replace("\\dbinom", "\\binom").replace("\\tbinom", "\\binom")
        s = _DIGIT_GROUP.sub("", s)  # 1{,}000 and 1,000 are one number to math-verify
        self.toks = _TOKEN.findall(s)
        self.i = 0
        self.depth = 0

    # -- token helpers ---------------------------------------------------------------------

    def peek(self) -> str | None:
        return self.toks[self.i] if self.i < len(self.toks) else None

    def take(self) -> str | None:
        tok = self.peek()
        if tok is not None:
            self.i += 1
        return tok

    def enter(self) -> None:
        self.depth += 1
        if self.depth > _MAX_PARSE_DEPTH:
            raise _TooComplex("answer nested too deeply")

    def skip_group(self) -> None:
        """Skip a raw ``{...}`` (the argument of \\text and friends)."""
        if self.peek() != "{":
            self.take()
            return
        level = 0
        while (tok := self.take()) is not None:
            if tok == "{":
                level += 1
            elif tok == "}":
                level -= 1
                if level == 0:
                    return

    @staticmethod
    def starts_atom(tok: str | None) -> bool:
        if tok is None or tok in _CLOSERS or tok in _SEPARATORS or tok in _ADDITIVE:
            return False
        return tok not in _MULTIPLICATIVE and tok not in ("^", "_", "!", "'", "|")

    # -- grammar ---------------------------------------------------------------------------

    def run(self) -> None:
        while self.peek() is not None:
            self.seq(stop=())
            self.take()  # a stray closer or operator: step over it, keep checking the rest

    def seq(self, stop: tuple[str, ...]) -> _Val:
        """Comma/relation-separated items up to a token in ``stop`` (not consumed)."""
        items = [self.sum(stop)]
        choose = False
        while (tok := self.peek()) is not None and tok not in stop and tok in _SEPARATORS:
            self.take()
            choose = choose or tok == "\\choose"
            items.append(self.sum(stop))
        if choose and len(items) == 2:
            return self.binomial(items[0], items[1])
        if len(items) == 1:
            return items[0]
        exact = all(v.exact for v in items)
        return _Val(digits=sum(v.digits for v in items) if exact else 0.0)

    def sum(self, stop) -> _Val:
        acc = self.product(stop)
        while (tok := self.peek()) in _ADDITIVE and tok not in stop:
            self.take()
            rhs = self.product(stop)
            if acc.exact and rhs.exact:
                both_int = acc.integer and rhs.integer
                digits = (max(acc.digits, rhs.digits) + _LOG10_2 if both_int
                          else acc.digits + rhs.digits)
                acc = _Val(True, digits, integer=both_int)
            elif acc.mag is not None and rhs.mag is not None:
                acc = _Val(mag=max(acc.mag, rhs.mag) + _LOG10_2)
            else:
                acc = _COMPOUND
        return acc

    def product(self, stop) -> _Val:
        acc = self.unary(stop)
        while True:
            tok = self.peek()
            if tok is None or tok in stop:
                break
            if tok in _MULTIPLICATIVE:
                self.take()
                divide = tok in ("/", "\\div")
            elif self.starts_atom(tok):
                divide = False  # juxtaposition: 2x, 3\sqrt{2}
            else:
                break
            acc = self.multiply(acc, self.unary(stop), divide)
        return acc

    def unary(self, stop) -> _Val:
        while self.peek() in _ADDITIVE and self.peek() not in stop:
            self.take()
        return self.postfix(stop)

    def postfix(self, stop) -> _Val:
        value = self.atom(stop)
        chain: list[_Val] = []  # a^b^c: math-verify reads (a^b)^c, a reader a^(b^c): check both
        while (tok := self.peek()) is not None and tok not in stop:
            if tok == "!":
                self.take()
                value = self.factorial(value)
                chain = []
            elif tok == "^":
                self.take()
                exponent = self.script(stop)
                chain = (chain or [value]) + [exponent]
                if len(chain) > _MAX_TOWER:
                    raise _TooComplex(f"power tower too tall (> {_MAX_TOWER} levels)")
                value = self.power(value, exponent)
                if len(chain) > 2:
                    right = chain[-1]
                    for v in reversed(chain[:-1]):
                        right = self.power(v, right)
            elif tok == "_":
                self.take()
                self.script(stop)  # a subscript names a symbol (a_{10}); its value is unused
                value, chain = _SYMBOL, []
            elif tok == "'":
                self.take()
            else:
                break
        return value

    def script(self, stop) -> _Val:
        """The argument of ``^`` or ``_``: a group, a whole number (math-verify reads 2^10 as
        2**10), a command, a signed term, or one character."""
        self.enter()
        try:
            if self.peek() in _ADDITIVE:
                return self.unary(stop)
            return self.atom(stop)
        finally:
            self.depth -= 1

    def argument(self) -> _Val:
        """A macro argument (\\frac, \\sqrt, \\binom): a group or a single character."""
        tok = self.peek()
        if tok is not None and tok[0].isdigit() and len(tok) > 1:
            self.toks[self.i] = tok[1:]  # \frac12: the 1, then the 2 is the next argument
            return _literal(tok[0])
        return self.atom(stop=())

    def atom(self, stop) -> _Val:
        self.enter()
        try:
            return self._atom(stop)
        finally:
            self.depth -= 1

    def _atom(self, stop) -> _Val:
        tok = self.peek()
        if tok is None or tok in stop or tok in _CLOSERS:
            return _SYMBOL
        self.take()
        if tok[0].isdigit() or tok[0] == ".":
            return _literal(tok)
        if tok in _CONSTANTS:
            return _Val(mag=_CONSTANTS[tok], atom=True)
        if tok in _OPENERS:
            closers = _OPENERS[tok]
            inner = self.seq(stop=closers)
            if self.peek() in closers:
                self.take()
            if tok in ("\\lfloor", "\\lceil") and inner.exact:
                return _Val(True, inner.digits, integer=True)
            return inner
        if tok == "|":
            inner = self.seq(stop=("|",))
            if self.peek() == "|":
                self.take()
            return inner
        if not tok.startswith("\\"):
            return _SYMBOL  # a letter or stray character: a symbol to sympy
        name = tok[1:]
        if name == "frac":
            num = self.argument()
            return self.multiply(num, self.argument(), divide=True)
        if name == "sqrt":
            if self.peek() == "[":  # \sqrt[n]{x}: the index only makes the root smaller
                self.take()
                self.seq(stop=("]",))
                if self.peek() == "]":
                    self.take()
            return self.root(self.argument())
        if name == "binom":
            n = self.argument()
            return self.binomial(n, self.argument())
        if name == "Gamma":
            return self.factorial(self.function_argument())
        if name in _TEXT_COMMANDS:
            self.skip_group()  # \begin{pmatrix}: the entries that follow are parsed as items
            return _SYMBOL
        if name in _TRANSCENDENTAL:
            power = self.function_scripts()
            arg = self.function_argument()
            if arg.mag is None:
                value = _COMPOUND  # sin(x): trig simplification, not a cheap atom
            elif arg.mag > MAX_FUNCTION_ARG_DIGITS:
                raise _TooComplex(f"argument of \\{name} too large (about 10^{arg.mag:.0f})")
            elif name in _EXPONENTIAL:
                value = _Val(mag=_LOG10_E * _bound(arg.mag), atom=True)
            else:
                value = _Val(mag=max(arg.mag, 1.0), atom=True)
            return value if power is None else self.power(value, power)
        if name in _INT_FUNCS:
            if name == "operatorname":
                self.skip_group()
            self.function_scripts()
            arg = self.function_argument()  # gcd(a, b) is a tuple: its digits bound the value
            if arg.exact or arg.digits:
                return _Val(True, arg.digits, integer=True)
            return _Val(mag=arg.mag)
        return _SYMBOL  # \alpha, \infty, \circ, \%, unknown commands

    def function_scripts(self) -> _Val | None:
        """``\\sin^{2}``, ``\\log_{2}``: returns the power, if any."""
        power = None
        while self.peek() in ("^", "_"):
            tok = self.take()
            value = self.script(stop=())
            if tok == "^":
                power = value
        return power

    def function_argument(self) -> _Val:
        """``\\sin(x)``, ``\\sin x``, ``\\ln\\ln x``: the value the function is applied to."""
        if not self.starts_atom(self.peek()):
            return _SYMBOL
        if self.peek() == "(":  # \sin(x)^{2} is sin(x)**2: the power is the caller's
            return self.atom(stop=())
        self.enter()
        try:
            return self.postfix(stop=())
        finally:
            self.depth -= 1

    # -- arithmetic on estimates -----------------------------------------------------------

    @staticmethod
    def multiply(a: _Val, b: _Val, divide: bool) -> _Val:
        if a.exact and b.exact:
            return _Val(True, a.digits + b.digits, integer=a.integer and b.integer and not divide)
        if a.mag is not None and b.mag is not None:
            return _Val(mag=a.mag + b.mag)
        return _COMPOUND

    def power(self, base: _Val, exponent: _Val) -> _Val:
        if exponent.mag is None:
            return _COMPOUND  # 2^x stays symbolic in sympy
        if not exponent.exact:  # e^{e^{10}}: a number whose size is known only roughly
            if exponent.mag > MAX_FUNCTION_ARG_DIGITS:
                raise _TooComplex(f"exponent too large (about 10^{exponent.mag:.0f})")
            if base.mag is None:
                return _COMPOUND
            return _Val(mag=max(base.mag, 1.0) * _bound(exponent.mag))
        bound = _bound(exponent.digits)  # |exponent| <= bound
        if base.exact:
            if base.digits == 0:
                return base  # 0, 1, -1 to any power
            digits = base.digits * bound
            if digits > MAX_RESULT_DIGITS:
                raise _TooComplex(f"number too large (power with more than "
                                  f"{MAX_RESULT_DIGITS} digits)")
            if not exponent.integer and base.digits > MAX_LITERAL_DIGITS:
                raise _TooComplex("root of a number with too many digits")
            return _Val(True, digits, integer=base.integer and exponent.integer)
        if base.atom:  # x^{10^9} and pi^{10^9} are cheap; e^{10^{200}} is not
            if exponent.digits > MAX_FUNCTION_ARG_DIGITS:
                raise _TooComplex(f"exponent too large (about 10^{exponent.digits:.0f})")
        elif bound > MAX_SYMBOLIC_EXPONENT:
            raise _TooComplex(f"exponent too large for a compound base "
                              f"(> {MAX_SYMBOLIC_EXPONENT})")
        return _COMPOUND if base.mag is None else _Val(mag=base.mag * bound)

    @staticmethod
    def root(radicand: _Val) -> _Val:
        if radicand.exact:
            if radicand.digits > MAX_LITERAL_DIGITS:
                # sympy factors the radicand to pull out perfect powers
                raise _TooComplex("root of a number with too many digits")
            return _Val(True, radicand.digits)
        return _Val(mag=radicand.mag) if radicand.mag is not None else _COMPOUND

    @staticmethod
    def factorial(value: _Val) -> _Val:
        if value.mag is None:
            return _COMPOUND  # n!, (2n)!: symbolic
        n = _bound(value.mag)
        if n > MAX_FACTORIAL:
            raise _TooComplex(f"number too large (factorial of more than {MAX_FACTORIAL})")
        digits = n * math.log10(max(n, 2.0))
        return _Val(True, digits, integer=True) if value.exact else _Val(mag=digits)

    @staticmethod
    def binomial(n: _Val, k: _Val) -> _Val:
        if not (n.exact and k.exact):
            return _COMPOUND
        digits = min(_bound(n.digits) * _LOG10_2, _bound(k.digits) * max(n.digits, 1.0))
        if digits > MAX_RESULT_DIGITS:
            raise _TooComplex(f"number too large (binomial with more than "
                              f"{MAX_RESULT_DIGITS} digits)")
        return _Val(True, digits, integer=True)


def check_complexity(latex: str) -> str | None:
    """Why ``latex`` is too pathological to hand to sympy, or None when it is fine.

    Cheap (linear in the answer, which is at most :data:`MAX_ANSWER_CHARS` long) and run
    before any symbolic work, so that a hostile batch is decided at once instead of each
    answer waiting for its deadline.  Rejects:

    * more than :data:`MAX_ANSWER_CHARS` characters;
    * brackets nested deeper than :data:`MAX_NESTING` (math-verify's parser slows down
      exponentially with depth: ``((((((1))))))`` already costs about a second);
    * number literals of more than :data:`MAX_LITERAL_DIGITS` digits, and roots of such
      numbers (sympy factors the radicand);
    * any exact subexpression (powers and towers in any bracketing, products, binomials)
      whose value would have more than :data:`MAX_RESULT_DIGITS` digits;
    * factorials (and Gamma) of numbers over :data:`MAX_FACTORIAL`, ``9!!!!`` included;
    * a sum, product or function of a symbol raised to more than
      :data:`MAX_SYMBOLIC_EXPONENT` (``(x+1)^{1000}`` is expanded, ``\\sin(x)^{100}``
      simplified term by term; ``x^{10^9}`` alone is cheap and allowed);
    * functions of numbers, and exponents of constants, over
      ``10^``:data:`MAX_FUNCTION_ARG_DIGITS` (``\\sin(10^{99999})``, ``e^{e^{e^{10}}}``
      need that many digits of precision).

    Legit answers are far below all of these: over MATH-500's golds and the formulas of its
    problems and solutions, bracket depth <= 2 in golds and <= 6 in solutions, literals
    <= 11 digits, factorials up to 42!; none of them is rejected (tests/test_verification.py).
    """
    if len(latex) > MAX_ANSWER_CHARS:
        return f"answer too long ({len(latex)} characters > {MAX_ANSWER_CHARS})"
    depth = 0
    for c in latex:
        if c in "([{":
            depth += 1
            if depth > MAX_NESTING:
                return f"answer nested too deeply (> {MAX_NESTING} brackets)"
        elif c in ")]}":
            depth = max(0, depth - 1)
    try:
        _Estimator(latex).run()
    except _TooComplex as exc:
        return str(exc)
    except RecursionError:
        return "answer nested too deeply"
    return None


# ---------------------------------------------------------------------------------------------
# Helper processes


def worker_function(fn: Callable) -> Callable:
    """Mark a module-level function as callable in a helper via :func:`run_bounded`."""
    fn.__ssb_worker__ = True  # type: ignore[attr-defined]
    return fn


class _Spawner:
    """Starts helper processes from one long-lived thread.

    Why a thread of its own: Linux sends the parent-death signal (set by each helper, see
    :func:`_die_with_parent`) when the *thread* that forked the helper exits, not the process,
    and :func:`verify_batch` calls the pool from short-lived executor threads: a helper forked
    there would be killed at the end of every batch.
    """

    def __init__(self) -> None:
        self.pid = os.getpid()
        self._requests: queue.SimpleQueue = queue.SimpleQueue()
        threading.Thread(target=self._serve, name="ssb-verify-spawner", daemon=True).start()

    def _serve(self) -> None:
        while True:
            make, box, done = self._requests.get()
            try:
                box.append((True, make()))
            except BaseException as exc:  # noqa: BLE001 - handed back to the caller
                box.append((False, exc))
            done.set()

    def run(self, make: Callable[[], Any]) -> Any:
        box: list = []
        done = threading.Event()
        self._requests.put((make, box, done))
        done.wait()
        ok, value = box[0]
        if not ok:
            raise value
        return value


_SPAWNER: _Spawner | None = None
_SPAWNER_LOCK = threading.Lock()


def _spawn(make: Callable[[], Any]) -> Any:
    """``make()`` (which starts a process) on the spawner thread (a fresh one after ``fork``)."""
    global _SPAWNER
    with _SPAWNER_LOCK:
        if _SPAWNER is None or _SPAWNER.pid != os.getpid():
            _SPAWNER = _Spawner()
        spawner = _SPAWNER
    return spawner.run(make)


class _Worker:
    """One helper process speaking JSON lines over its stdin/stdout."""

    def __init__(self) -> None:
        env = dict(os.environ)
        env[_WORKER_ENV] = "1"
        env[_PARENT_ENV] = str(os.getpid())
        env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
        env.setdefault("OMP_NUM_THREADS", "1")
        self._stderr = tempfile.TemporaryFile()
        self.proc = _spawn(lambda: subprocess.Popen(
            [sys.executable, "-c", "from ssb.verification import _worker_main; _worker_main()",
             HELPER_MARKER],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr, env=env,
            close_fds=True,
        ))
        self._buffer = b""
        self._seq = 0
        ready = self._read_message(time.monotonic() + STARTUP_TIMEOUT)
        if ready is None or not ready.get("ready"):
            self.kill()
            raise WorkerError(f"verification helper failed to start: {self.stderr_tail()}")

    def stderr_tail(self) -> str:
        try:
            self._stderr.seek(0)
            return self._stderr.read()[-2000:].decode("utf-8", "replace").strip()
        except (OSError, ValueError):
            return ""

    def call(self, func: str, args: list, timeout: float) -> Any:
        self._seq += 1
        request = json.dumps({"id": self._seq, "func": func, "args": args}) + "\n"
        try:
            assert self.proc.stdin is not None
            self.proc.stdin.write(request.encode("utf-8"))
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError) as exc:
            raise WorkerError(f"verification helper died: {exc}") from None
        reply = self._read_message(time.monotonic() + timeout)
        if reply is None:
            if self.proc.poll() is not None:
                raise WorkerError(f"verification helper died: {self.stderr_tail()[-300:]}")
            raise VerificationTimeout(f"verification exceeded {timeout:g}s")
        if reply.get("id") != self._seq:
            raise WorkerError("verification helper answered out of order")
        if "error" in reply:
            raise WorkerError(reply["error"])
        return reply.get("result")

    def _read_message(self, deadline: float) -> dict | None:
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        while b"\n" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            readable, _, _ = select.select([fd], [], [], remaining)
            if not readable:
                return None
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                return None  # helper exited
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        try:
            return json.loads(line)
        except json.JSONDecodeError:
            return {"error": f"garbled reply from helper: {line[:200]!r}"}

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        try:
            self.proc.kill()
            self.proc.wait(timeout=10)
        except Exception:  # noqa: BLE001 - best effort on a dying process
            pass
        for f in (self.proc.stdin, self.proc.stdout, self._stderr):
            try:
                if f is not None:
                    f.close()
            except Exception:  # noqa: BLE001
                pass

    def close(self) -> None:
        """Ask politely (EOF on stdin), then kill."""
        try:
            if self.proc.stdin is not None:
                self.proc.stdin.close()
            self.proc.wait(timeout=2)
        except Exception:  # noqa: BLE001
            pass
        self.kill()


class WorkerPool:
    """Persistent helpers shared by all threads of a process; grows up to ``capacity``."""

    def __init__(self, capacity: int = 1):
        self.capacity = max(1, capacity)
        self._idle: list[_Worker] = []
        self._busy = 0
        self._cond = threading.Condition()
        self._pid = os.getpid()
        self.started = 0  # helpers started (for tests/benchmarks: replacements after kills)

    def ensure_capacity(self, n: int) -> None:
        with self._cond:
            if n > self.capacity:
                self.capacity = n
                self._cond.notify_all()

    def call(self, func: str, args: list, timeout: float) -> Any:
        with self._cond:
            while self._busy >= self.capacity:
                self._cond.wait()
            self._busy += 1
            worker = self._idle.pop() if self._idle else None
        try:
            if worker is None or not worker.alive():
                if worker is not None:
                    worker.kill()
                worker = _Worker()
                with self._cond:
                    self.started += 1
            try:
                result = worker.call(func, args, timeout)
            except (VerificationTimeout, WorkerError):
                worker.kill()  # its state is unknown: replace it on the next call
                worker = None
                raise
            return result
        finally:
            with self._cond:
                if worker is not None:
                    self._idle.append(worker)
                self._busy -= 1
                self._cond.notify()

    def close(self) -> None:
        with self._cond:
            idle, self._idle = self._idle, []
        for w in idle:
            w.close()


_POOL: WorkerPool | None = None
_POOL_LOCK = threading.Lock()


def get_pool(min_capacity: int = 1) -> WorkerPool:
    """The process-wide helper pool (a fresh one after ``fork``)."""
    global _POOL
    with _POOL_LOCK:
        if _POOL is None or _POOL._pid != os.getpid():
            _POOL = WorkerPool(max(1, min_capacity))
        else:
            _POOL.ensure_capacity(min_capacity)
        return _POOL


def shutdown_pool() -> None:
    """Stop all helper processes (they also stop when this process exits)."""
    global _POOL
    with _POOL_LOCK:
        pool, _POOL = _POOL, None
    if pool is not None and pool._pid == os.getpid():
        pool.close()


atexit.register(shutdown_pool)


def _ref(fn: Callable) -> str:
    if not getattr(fn, "__ssb_worker__", False):
        raise TypeError(f"{fn!r} is not marked with @ssb.verification.worker_function")
    return f"{fn.__module__}:{fn.__qualname__}"


def run_bounded(fn: Callable, *args: Any, timeout: float = DEFAULT_TIMEOUT) -> Any:
    """``fn(*args)`` in a killable helper, at most ``timeout`` seconds (JSON-able args/result).

    Raises :class:`VerificationTimeout` on overrun and :class:`WorkerError` if the helper dies
    or ``fn`` raises.  In a helper (or with ``timeout`` None) it runs inline.
    """
    ref = _ref(fn)
    if in_worker() or timeout is None:
        return fn(*args)
    return get_pool().call(ref, list(args), float(timeout))


_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


def _set_parent_death_signal() -> bool:
    """Ask Linux to SIGKILL this process when its parent (thread) exits; False where it can't."""
    if not sys.platform.startswith("linux") or os.environ.get(_PDEATHSIG_ENV) == "0":
        return False
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) == 0
    except (OSError, AttributeError, ValueError):
        return False


def _die_with_parent() -> None:
    """Make sure this helper does not outlive the process that started it.

    A helper busy in sympy would otherwise run on at full CPU, adopted by PID 1, after its
    parent is SIGKILLed (it only notices EOF on stdin between requests).  Two layers:

    * Linux: the kernel SIGKILLs us when the parent dies (``PR_SET_PDEATHSIG``), even in the
      middle of a C-level big-integer power that holds the GIL;
    * everywhere: a daemon thread polls the parent pid and exits the process when it changes
      (runs whenever the GIL is released, i.e. between bytecodes of pure-Python sympy work).

    Checked once right after arming the signal: a parent that died before that moment would
    never send it.
    """
    try:
        parent = int(os.environ.get(_PARENT_ENV, "0"))
    except ValueError:
        parent = 0
    _set_parent_death_signal()
    if not parent:
        return
    if os.getppid() != parent:
        os._exit(1)

    def watch() -> None:
        while True:
            time.sleep(0.5)
            if os.getppid() != parent:
                os._exit(1)

    threading.Thread(target=watch, name="ssb-verify-parent-watch", daemon=True).start()


def _worker_main() -> None:
    """The helper's loop: one JSON request per line on stdin, one JSON reply per line."""
    os.environ[_WORKER_ENV] = "1"
    _die_with_parent()
    try:
        import resource

        limit = WORKER_MEMORY_MB * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    except (ImportError, ValueError, OSError):
        pass
    logging.basicConfig(level=logging.ERROR)
    logging.getLogger("math_verify").setLevel(logging.CRITICAL)
    try:  # pay the sympy import before saying ready, so deadlines measure real work
        import math_verify  # noqa: F401
        import sympy  # noqa: F401
    except ImportError:
        pass
    sys.set_int_max_str_digits(MAX_RESULT_DIGITS * 10) if hasattr(sys, "set_int_max_str_digits") else None
    out = sys.stdout.buffer
    out.write(b'{"ready": true}\n')
    out.flush()
    functions: dict[str, Callable] = {}
    for raw in sys.stdin.buffer:
        try:
            request = json.loads(raw)
            ref = request["func"]
            fn = functions.get(ref)
            if fn is None:
                module, _, qualname = ref.partition(":")
                obj: Any = importlib.import_module(module)
                for part in qualname.split("."):
                    obj = getattr(obj, part)
                if not getattr(obj, "__ssb_worker__", False):
                    raise TypeError(f"{ref} is not a worker function")
                fn = functions[ref] = obj
            reply = {"id": request.get("id"), "result": fn(*request.get("args", []))}
        except BaseException as exc:  # noqa: BLE001 - report, keep serving
            if isinstance(exc, KeyboardInterrupt):
                raise
            reply = {"id": request.get("id") if isinstance(request, dict) else None,
                     "error": f"{type(exc).__name__}: {str(exc)[:500]}"}
        try:
            line = json.dumps(reply)
        except (TypeError, ValueError) as exc:
            line = json.dumps({"id": reply.get("id"), "error": f"unserializable result: {exc}"})
        out.write(line.encode("utf-8") + b"\n")
        out.flush()


# ---------------------------------------------------------------------------------------------
# math-verify, run inside a helper


@worker_function
def math_verify_equal(gold: str, answer: str) -> bool:
    """math-verify equivalence of two LaTeX strings (no timeouts of its own: run it bounded).

    Both are wrapped in ``\\boxed{}`` so that a bare gold such as ``\\frac12`` parses (math-verify
    finds nothing in unwrapped LaTeX and silently says False).  ``gold`` is passed as gold:
    math-verify is asymmetric (``x=5`` answers a gold ``5``).
    """
    from math_verify import LatexExtractionConfig, parse, verify

    config = [LatexExtractionConfig(boxed_match_priority=0)]

    def _parse(s: str) -> list:
        parsed = parse("\\boxed{" + s + "}", extraction_config=config, parsing_timeout=None)
        if not parsed:
            parsed = parse("$" + s + "$", extraction_config=config, parsing_timeout=None)
        return parsed

    g, a = _parse(gold), _parse(answer)
    if not g or not a:
        return False
    return bool(verify(g, a, timeout_seconds=None))


def latex_equal(gold: str, answer: str, *, timeout: float | None = DEFAULT_TIMEOUT) -> Verdict:
    """Bounded math-verify equivalence as a Verdict (``extracted`` = ``answer``).

    Pathological input is rejected in-process (``error`` says why); an overrun gives
    ``error="timeout"``.  Never raises for bad model text.
    """
    reason = check_complexity(answer) or check_complexity(gold)
    if reason is not None:
        return Verdict(extracted=answer, correct=False, error=f"rejected: {reason}")
    try:
        ok = run_bounded(math_verify_equal, gold, answer, timeout=timeout)
    except VerificationTimeout:
        return Verdict(extracted=answer, correct=False, error="timeout")
    except WorkerError as exc:
        return Verdict(extracted=answer, correct=False, error=f"error: {exc}"[:300])
    return Verdict(extracted=answer, correct=bool(ok))


# ---------------------------------------------------------------------------------------------
# Batches


def _verify_kwargs(verifier: Any, timeout: float | None, strict: bool) -> dict[str, Any]:
    """The optional keywords this verifier's ``verify`` accepts (third-party ones may take none)."""
    try:
        params = inspect.signature(verifier.verify).parameters
    except (TypeError, ValueError):
        return {}
    accepts_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    kwargs: dict[str, Any] = {}
    if accepts_any or "timeout" in params:
        kwargs["timeout"] = timeout
    if strict and (accepts_any or "strict" in params):
        kwargs["strict"] = True
    return kwargs


def verify_one(domain: str, response: str, gold: str, *, timeout: float = DEFAULT_TIMEOUT,
               strict: bool = False) -> Verdict:
    """Verify one response in this process (the sympy step bounded in a helper)."""
    from ssb.plugins import get_registry

    verifier = get_registry().verifier(domain)
    try:
        verdict = verifier.verify(response, gold, **_verify_kwargs(verifier, timeout, strict))
    except Exception as exc:  # noqa: BLE001 - a verifier bug must not kill a batch
        return Verdict(extracted=None, correct=False, error=f"error: {type(exc).__name__}: {exc}"[:300])
    if not isinstance(verdict, Verdict):
        verdict = Verdict.from_dict(verdict) if isinstance(verdict, dict) else Verdict(
            extracted=None, correct=bool(verdict))
    return verdict


@worker_function
def _verify_in_worker(domain: str, response: str, gold: str, timeout: float | None,
                      strict: bool) -> dict:
    return verify_one(domain, response, gold, timeout=timeout, strict=strict).to_dict()


def available_cores() -> int:
    """CPU cores this process may run on (its affinity mask where the OS has one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def resolve_workers(workers: int | None, n_items: int) -> int:
    """How many verifications ``verify_batch`` runs at once: ``None`` (auto) is one per
    available core, except for a single item (nothing to overlap); otherwise ``workers``."""
    if workers is None:
        return 0 if n_items <= 1 else available_cores()
    if workers < 0:
        from ssb.errors import SsbError

        raise SsbError(f"--workers must be >= 0, got {workers}")
    return workers


def _verify_threads(domain: str, items: list[tuple[str, str]], threads: int,
                    timeout: float, strict: bool, tick: Callable[[], None]) -> list[Verdict]:
    """``verify_one`` over ``items`` on ``threads`` threads of this process, the sympy steps in
    up to as many helpers.  Each thread takes the next item from a shared counter (one future
    per item would cost more than a GSM8K number comparison)."""
    get_pool(threads)
    out: list[Verdict | None] = [None] * len(items)
    position = iter(range(len(items)))
    lock = threading.Lock()
    failures: list[BaseException] = []

    def lane() -> None:
        try:
            while not failures:
                with lock:
                    i = next(position, None)
                if i is None:
                    return
                out[i] = verify_one(domain, items[i][0], items[i][1], timeout=timeout,
                                    strict=strict)
                tick()
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller below
            failures.append(exc)

    lanes = [threading.Thread(target=lane, name=f"ssb-verify-{k}", daemon=True)
             for k in range(min(threads, len(items)))]
    for t in lanes:
        t.start()
    for t in lanes:
        t.join()
    if failures:
        raise failures[0]
    return out  # type: ignore[return-value]


def verify_batch(domain: str, items: Sequence[tuple[str, str]], *, workers: int | None = None,
                 timeout: float = DEFAULT_TIMEOUT, strict: bool = False,
                 progress: Callable[[int], None] | None = None) -> list[Verdict]:
    """Verdicts for ``(response, gold)`` pairs, in order; each bounded by ``timeout`` seconds.

    ``workers=None`` (default, auto): the domain's verifier runs in this process on one thread
    per available core, and its sympy steps in as many helper processes.  The cheap checks
    (number and string equality, the complexity guard) stay in-process, where they cost
    microseconds, while the symbolic work spreads over every core.  Measured with
    benchmarks/bench_verify.py (benchmarks/results/2026-11-28-verify.json, a shared 2-core box
    at load average 11-13): math costs the same CPU per answer as whole-verification helpers
    (2.8 ms, i.e. up to ~700 answers/s on 2 idle cores), and GSM8K, decided by a number
    comparison, runs at 0.9x the in-process rate where ``workers=2`` gives 0.2x (the round
    trip to a helper dwarfs the comparison).
    ``workers=0``: the verifier runs in this process, one item at a time (its sympy step in a
    helper).
    ``workers=N``: each whole verification runs in one of N helper processes, so a verifier
    that can hang outside sympy is bounded too; an item that overruns gives
    ``Verdict(correct=False, error="timeout")`` and its helper is replaced.
    ``strict``: boxed answers only (no "the answer is"/last-number fallbacks).
    Safe to call from any thread.
    """
    from ssb.plugins import get_registry

    get_registry().verifier(domain)  # unknown domain: fail early with the known ones listed
    items = list(items)
    if not items:
        return []

    auto = workers is None
    workers = resolve_workers(workers, len(items))

    def tick() -> None:
        if progress is not None:
            progress(1)

    if workers == 0:
        out = []
        for response, gold in items:
            out.append(verify_one(domain, response, gold, timeout=timeout, strict=strict))
            tick()
        return out

    if auto:
        return _verify_threads(domain, items, workers, timeout, strict, tick)

    pool = get_pool(workers)

    def one(item: tuple[str, str]) -> Verdict:
        response, gold = item
        try:
            data = pool.call(_ref(_verify_in_worker), [domain, response, gold, timeout, strict],
                             timeout)
            verdict = Verdict.from_dict(data)
        except VerificationTimeout:
            verdict = Verdict(extracted=None, correct=False, error="timeout")
        except WorkerError as exc:
            verdict = Verdict(extracted=None, correct=False, error=f"error: {exc}"[:300])
        tick()
        return verdict

    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ssb-verify") as ex:
        return list(ex.map(one, items))
