"""The cheap in-process guard: :func:`check_complexity` rejects pathological LaTeX answers
(huge, deeply nested, giant exponent towers or factorials) before any sympy work, so that a
hostile batch is decided at once instead of each answer waiting for its deadline."""

from __future__ import annotations

import math
import re

# Limits of check_complexity (legit final answers are far below all of them; see there).
MAX_ANSWER_CHARS = 1_000
MAX_NESTING = 8
MAX_RESULT_DIGITS = 100_000
MAX_FACTORIAL = 5_000
MAX_LITERAL_DIGITS = 300
MAX_SYMBOLIC_EXPONENT = 50
MAX_FUNCTION_ARG_DIGITS = 100

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



__all__ = ["MAX_ANSWER_CHARS", "MAX_FACTORIAL", "MAX_FUNCTION_ARG_DIGITS", "MAX_LITERAL_DIGITS",
           "MAX_NESTING", "MAX_RESULT_DIGITS", "MAX_SYMBOLIC_EXPONENT", "check_complexity"]
