"""Regular expressions from files, matched in bounded time with Python's (peft's) semantics.

adapter_config.json's target_modules, layers_pattern and exclude_modules are regular expressions that peft
matches with Python's `re` against module names. `re` backtracks: "(.*)*(.*)*x" takes minutes on a module name.
Here a pattern is parsed by Python's own parser (so it means exactly what it means to `re` and to peft), then

- with the optional package google-re2 installed (pip install lyricnn[re2]), translated into RE2's syntax and
  run by RE2, a linear-time engine;
- without it, run by the Pike VM below: a breadth-first NFA simulation, time O(len(program) * len(name)),
  with the submatch priorities of a backtracking engine (the first match `re` would find).

Both need a known, finite alphabet: the subjects are module names, ASCII by construction. Every
single-character atom (a literal, a class, ".", with its flags: (?i), (?a), (?s)) is turned into the set of
ASCII characters it matches by asking `re` itself, so classes, categories (\\d, \\w, \\s) and case folding keep
`re`'s meaning exactly. What is not regular is refused, naming the construct: backreferences, lookahead and
lookbehind, conditionals, atomic groups and possessive repeats (RE2 has none of them either). A pattern longer
than MAX_PATTERN characters, or whose program (after expanding counted repeats such as a{500}) has more than
MAX_PROGRAM steps, is refused too: each keeps the work per module name bounded.
"""
import functools
import re

try:  # Python >= 3.11
    from re import _constants as _C
    from re import _parser as _P
except ImportError:  # pragma: no cover - Python 3.9 / 3.10
    import sre_constants as _C
    import sre_parse as _P

try:
    import re2 as _re2
except ImportError:  # the optional dependency (pip install google-re2)
    _re2 = None

__all__ = ["compile_untrusted", "PatternError", "MAX_PATTERN", "MAX_PROGRAM", "engine"]

MAX_PATTERN = 2000   # characters
MAX_PROGRAM = 1000   # VM steps after expanding repeats
_RE2_MAX_REPEAT = 1000  # RE2's limit on a counted repeat: beyond it the Pike VM runs the pattern
_ASCII = [chr(c) for c in range(128)]

_REFUSED = {
    "GROUPREF": "a backreference (\\1 or (?P=name))",
    "GROUPREF_EXISTS": "a conditional group ((?(1)...|...))",
    "ASSERT": "a lookahead or lookbehind ((?=...), (?<=...))",
    "ASSERT_NOT": "a negative lookahead or lookbehind ((?!...), (?<!...))",
    "ATOMIC_GROUP": "an atomic group ((?>...))",
    "POSSESSIVE_REPEAT": "a possessive repeat (*+, ++, ?+, {m,n}+)",
}


class PatternError(ValueError):
    """A pattern that is not a valid regular expression, or one lyricnn does not run (see the module doc)."""


def engine():
    """'re2' when google-re2 is installed, else 'pike-vm'."""
    return "re2" if _re2 is not None else "pike-vm"


def _hint(what):
    return ("%s is matched with a linear-time engine (RE2's syntax: no lookaround, backreferences, conditionals or "
            "atomic groups), so that a pattern read from a file cannot hang the process; list the module names "
            "instead" % what)


# ------------------------------------------------------------------------------------ atoms

def _esc(c):
    return "\\x%02x" % c if c < 0x100 else "\\u%04x" % c if c < 0x10000 else "\\U%08x" % c


_CATEGORY = {"CATEGORY_DIGIT": "\\d", "CATEGORY_NOT_DIGIT": "\\D", "CATEGORY_SPACE": "\\s",
             "CATEGORY_NOT_SPACE": "\\S", "CATEGORY_WORD": "\\w", "CATEGORY_NOT_WORD": "\\W"}


def _atom_text(op, av):
    """The pattern text of a one-character atom of the parse tree (Python's syntax)."""
    name = str(op)
    if name == "LITERAL":
        return _esc(av)
    if name == "NOT_LITERAL":
        return "[^%s]" % _esc(av)
    if name == "ANY":
        return "."
    items = []
    for iop, iav in av:  # IN
        iname = str(iop)
        if iname == "NEGATE":
            items.insert(0, "^")
        elif iname == "LITERAL":
            items.append(_esc(iav))
        elif iname == "RANGE":
            items.append("%s-%s" % (_esc(iav[0]), _esc(iav[1])))
        elif iname == "CATEGORY":
            items.append(_CATEGORY[str(iav)])
        else:  # pragma: no cover - the parser emits nothing else inside a class
            raise PatternError("unsupported character class item %s" % iname)
    return "[%s]" % "".join(items)


@functools.lru_cache(maxsize=4096)
def _ascii_set(text, flags):
    """The ASCII characters the atom matches under flags, as `re` decides."""
    if flags & re.ASCII:
        flags &= ~re.UNICODE
    r = re.compile(text, flags & (re.IGNORECASE | re.ASCII | re.DOTALL | re.UNICODE))
    return frozenset(c for c in _ASCII if r.fullmatch(c))


# ------------------------------------------------------------------------------------ the program

class _Prog:
    """Pike VM instructions: ("char", set), ("split", x, y) (x first), ("jmp", x), ("save", slot),
    ("assert", kind), ("match",). Built from the parse tree with a step budget."""

    def __init__(self, budget):
        self.code, self.budget = [], budget

    def emit(self, *ins):
        if len(self.code) >= self.budget:
            raise _TooLarge()
        self.code.append(list(ins))
        return len(self.code) - 1


class _TooLarge(Exception):
    pass


def _compile_seq(prog, seq, flags):
    for op, av in seq:
        _compile_node(prog, op, av, flags)


def _compile_node(prog, op, av, flags):
    name = str(op)
    if name in ("LITERAL", "NOT_LITERAL", "ANY", "IN"):
        prog.emit("char", _ascii_set(_atom_text(op, av), flags))
    elif name == "BRANCH":
        alts = av[1]
        jumps = []
        for k, alt in enumerate(alts):
            if k < len(alts) - 1:
                split = prog.emit("split", None, None)
                prog.code[split][1] = len(prog.code)
                _compile_seq(prog, alt, flags)
                jumps.append(prog.emit("jmp", None))
                prog.code[split][2] = len(prog.code)
            else:
                _compile_seq(prog, alt, flags)
        for j in jumps:
            prog.code[j][1] = len(prog.code)
    elif name == "SUBPATTERN":
        group, add, delete, p = av
        inner = (flags | add) & ~delete
        if group is not None:
            prog.emit("save", 2 * group)
        _compile_seq(prog, p, inner)
        if group is not None:
            prog.emit("save", 2 * group + 1)
    elif name in ("MAX_REPEAT", "MIN_REPEAT"):
        lo, hi, item = av
        greedy = name == "MAX_REPEAT"
        for _ in range(lo):
            _compile_seq(prog, item, flags)
        if hi == _C.MAXREPEAT:
            loop = prog.emit("split", None, None)
            _compile_seq(prog, item, flags)
            prog.emit("jmp", loop)
            body, out = loop + 1, len(prog.code)
            prog.code[loop][1:] = [body, out] if greedy else [out, body]
        else:
            splits = []
            for _ in range(hi - lo):  # nested optional copies: x(x(x)?)?)?
                s = prog.emit("split", None, None)
                splits.append(s)
                _compile_seq(prog, item, flags)
            out = len(prog.code)
            for s in splits:
                prog.code[s][1:] = [s + 1, out] if greedy else [out, s + 1]
    elif name == "AT":
        prog.emit("assert", str(av))
    else:  # pragma: no cover - refused by _check before
        raise PatternError("unsupported construct %s" % name)


def _check(seq, what, shown):
    """Refuse what is not regular, by name (the program's size is bounded while compiling)."""
    for op, av in seq:
        name = str(op)
        if name in _REFUSED:
            raise PatternError("%s %s uses %s, which lyricnn does not support: %s"
                               % (what, shown, _REFUSED[name], _hint(what)))
        if name == "BRANCH":
            for alt in av[1]:
                _check(alt, what, shown)
        elif name == "SUBPATTERN":
            _check(av[3], what, shown)
        elif name in ("MAX_REPEAT", "MIN_REPEAT"):
            _check(av[2], what, shown)


# ------------------------------------------------------------------------------------ the Pike VM

def _is_word(c):
    return c is not None and c.isascii() and (c.isalnum() or c == "_")


def _where(s, i):
    """What the assertions see at position i: (at start, at end, word char before, word char after)."""
    return (i == 0, i == len(s), _is_word(s[i - 1]) if i > 0 else False, _is_word(s[i]) if i < len(s) else False)


def _holds(kind, where):
    start, end, before, after = where
    if kind in ("AT_BEGINNING", "AT_BEGINNING_STRING", "AT_BEGINNING_LINE"):
        return start
    if kind in ("AT_END", "AT_END_STRING", "AT_END_LINE"):  # the subjects hold no newline
        return end
    return (before != after) if kind == "AT_BOUNDARY" else (before == after)


def _add(code, lst, seen, pc, saves, where, i, slots):
    """Follow the epsilon moves from pc in priority order (a backtracking engine's order) and append the
    threads that wait on a character or match. Only the saves of `slots` are recorded."""
    stack = [(pc, saves)]
    while stack:
        pc, saves = stack.pop()
        if pc in seen:
            continue
        seen.add(pc)
        ins = code[pc]
        op = ins[0]
        if op == "jmp":
            stack.append((ins[1], saves))
        elif op == "split":
            stack.append((ins[2], saves))
            stack.append((ins[1], saves))
        elif op == "save":
            if ins[1] in slots:
                saves = dict(saves)
                saves[ins[1]] = i
            stack.append((pc + 1, saves))
        elif op == "assert":
            if _holds(ins[1], where):
                stack.append((pc + 1, saves))
        else:
            lst.append((pc, saves))


def _pike(code, s, slots):
    """{slot: position} of the first match (a backtracking engine's) of code anchored at 0, or None."""
    clist = []
    _add(code, clist, set(), 0, {}, _where(s, 0), 0, slots)
    matched = None
    for i in range(len(s) + 1):
        nlist, seen = [], set()
        c = s[i] if i < len(s) else None
        where = _where(s, i + 1) if c is not None else None
        for pc, saves in clist:
            ins = code[pc]
            if ins[0] == "match":
                matched = saves
                break  # the threads after this one have lower priority
            if c is not None and c in ins[1]:
                _add(code, nlist, seen, pc + 1, saves, where, i + 1, slots)
        clist = nlist
        if not clist:
            break
    return matched


class _Dfa:
    """Whether code matches, by a lazily built DFA over the Pike VM's thread sets: the transitions are
    memoized, so module names that share a prefix share the work; a new transition costs one pass over the
    program (O(len(code)))."""

    def __init__(self, code):
        self.code = code
        kinds = {ins[1] for ins in code if ins[0] == "assert"}
        # the parts of _where() the assertions read (the others would only split the memo)
        self.mask = (any("BEGINNING" in k for k in kinds), any("END" in k for k in kinds),
                     any("BOUNDARY" in k for k in kinds), any("BOUNDARY" in k for k in kinds))
        self.steps = {}

    def _where(self, s, i):
        return tuple(v and m for v, m in zip(_where(s, i), self.mask))

    def _follow(self, pcs, where):
        lst, seen = [], set()
        for pc in pcs:
            _add(self.code, lst, seen, pc, None, where, 0, ())
        return frozenset(p for p, _ in lst)

    def matches(self, s):
        code = self.code
        state = self._follow([0], self._where(s, 0))
        for i, c in enumerate(s):
            where = self._where(s, i + 1)
            key = (state, c, where)
            nxt = self.steps.get(key)
            if nxt is None:
                nxt = self._follow(sorted(pc + 1 for pc in state if code[pc][0] == "char" and c in code[pc][1]),
                                   where)
                if len(self.steps) > 100000:
                    self.steps.clear()
                self.steps[key] = nxt
            state = nxt
            if not state:
                return False
        return any(code[pc][0] == "match" for pc in state)


# ------------------------------------------------------------------------------------ RE2

def _re2_class(chars):
    if not chars:
        return "[^\\x00-\\x{10FFFF}]"
    cs = sorted(ord(c) for c in chars)
    parts, start, prev = [], cs[0], cs[0]
    for c in cs[1:] + [None]:
        if c is not None and c == prev + 1:
            prev = c
            continue
        parts.append("\\x{%x}" % start if start == prev else "\\x{%x}-\\x{%x}" % (start, prev))
        if c is not None:
            start = prev = c
    return "[%s]" % "".join(parts)


_RE2_AT = {"AT_BEGINNING": "\\A", "AT_BEGINNING_STRING": "\\A", "AT_END": "\\z", "AT_END_STRING": "\\z",
           "AT_BOUNDARY": "\\b", "AT_NON_BOUNDARY": "\\B"}


class _NoRe2(Exception):
    pass


def _re2_seq(seq, flags):
    return "".join(_re2_node(op, av, flags) for op, av in seq)


def _re2_node(op, av, flags):
    name = str(op)
    if name in ("LITERAL", "NOT_LITERAL", "ANY", "IN"):
        return _re2_class(_ascii_set(_atom_text(op, av), flags))
    if name == "BRANCH":
        return "(?:%s)" % "|".join(_re2_seq(alt, flags) for alt in av[1])
    if name == "SUBPATTERN":
        group, add, delete, p = av
        body = _re2_seq(p, (flags | add) & ~delete)
        return "(?:%s)" % body if group is None else "(?P<g%d>%s)" % (group, body)
    if name in ("MAX_REPEAT", "MIN_REPEAT"):
        lo, hi, item = av
        if lo > _RE2_MAX_REPEAT or (hi != _C.MAXREPEAT and hi > _RE2_MAX_REPEAT):
            raise _NoRe2()
        rep = "{%d,}" % lo if hi == _C.MAXREPEAT else "{%d,%d}" % (lo, hi)
        return "(?:%s)%s%s" % (_re2_seq(item, flags), rep, "" if name == "MAX_REPEAT" else "?")
    if name == "AT":
        return _RE2_AT[str(av)]
    raise _NoRe2()  # pragma: no cover


# ------------------------------------------------------------------------------------ the compiled pattern

class Compiled:
    """A checked pattern: fullmatch(name) -> bool and match_group(name, group) -> str or None (re.match's
    group of a prefix match), with `re`'s results, in bounded time."""

    def __init__(self, pattern, tree, code, rx):
        self.pattern, self._code, self._rx = pattern, code, rx
        self._groups = tree.state.groupdict
        self._full = _Dfa(code + [["assert", "AT_END_STRING"], ["match"]])
        self._prefix = code + [["match"]]

    @property
    def engine(self):
        return "re2" if self._rx is not None else "pike-vm"

    @staticmethod
    def _subject(s):
        if not isinstance(s, str) or not s.isascii() or "\n" in s:
            raise ValueError("untrusted patterns are matched against ASCII module names, got %r" % (s,))
        return s

    def fullmatch(self, s):
        s = self._subject(s)
        if self._rx is not None:
            return self._rx.fullmatch(s) is not None
        return self._full.matches(s)

    def match_group(self, s, group):
        s = self._subject(s)
        g = self._groups[group]
        if self._rx is not None:
            m = self._rx.match(s)
            return None if m is None else m.group("g%d" % g)
        saves = _pike(self._prefix, s, (2 * g, 2 * g + 1))
        if saves is None or 2 * g not in saves or 2 * g + 1 not in saves:
            return None
        return s[saves[2 * g]:saves[2 * g + 1]]


@functools.lru_cache(maxsize=256)
def _compile(pattern, what, use_re2, shown):
    shown = repr(pattern) if shown is None else shown
    if len(pattern) > MAX_PATTERN:
        raise PatternError("%s is a pattern of %d characters; at most %d are matched (a file's pattern is matched "
                           "in bounded time); list the module names instead" % (what, len(pattern), MAX_PATTERN))
    try:
        tree = _P.parse(pattern)
    except re.error as e:
        raise PatternError("%s %s is not a valid regular expression: %s; give module names (a list such as "
                           "['q_lin', 'v_lin']) or a regular expression matched against the full module names "
                           "(such as '.*\\.(q_lin|v_lin)')" % (what, shown, e)) from None
    except (RecursionError, OverflowError):
        raise PatternError("%s %s is nested too deeply to be a module-name pattern" % (what, shown)) from None
    _check(list(tree), what, shown)
    prog = _Prog(MAX_PROGRAM)
    try:
        _compile_seq(prog, list(tree), tree.state.flags)
    except _TooLarge:
        raise PatternError("%s %s is too large to match in bounded time: its repeats expand to more than %d steps; "
                           "list the module names instead" % (what, shown, MAX_PROGRAM)) from None
    except RecursionError:
        raise PatternError("%s %s is nested too deeply to be a module-name pattern" % (what, shown)) from None
    rx = None
    if use_re2 and _re2 is not None:
        try:
            text = _re2_seq(list(tree), tree.state.flags)
            opts = _re2.Options()
            opts.log_errors = False
            rx = _re2.compile(text, opts)
        except (_NoRe2, _re2.error):
            rx = None  # counts past RE2's limit: the (bounded) Pike VM runs it
    return Compiled(pattern, tree, prog.code, rx)


def compile_untrusted(pattern, what, use_re2=True, shown=None):
    """A Compiled pattern, or PatternError naming `what` (e.g. "adapter_config.json: target_modules"), the
    pattern (or `shown`, where the pattern was built around a user's text) and the reason. use_re2=False forces
    the Pike VM (tests compare both)."""
    if not isinstance(pattern, str):
        raise PatternError("%s must be a regular expression (a str), got %r" % (what, pattern))
    return _compile(pattern, what, bool(use_re2), shown)
