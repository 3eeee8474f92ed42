"""Asterisk's dialplan as Asterisk reads, matches and runs it, for tests of ``extensions_dialguard.conf``.

Transcribed from the source (github.com/asterisk/asterisk), where it matters to us:

- ``main/config.c``, ``config_text_file_load()``: a file is read line by line. ``;`` starts a comment
  unless written ``\\;`` (the backslash is dropped, the ``;`` kept); ``;--`` opens a block comment and
  ``--;`` closes it (they nest). What is left is stripped; ``process_text_line()`` then reads
  ``[name]`` (a category), ``#include``/``#tryinclude`` (a file, relative to the configuration
  directory, read into the same configuration: its lines join the category in force, and the
  including file's own lines after it stay in the category they were in), and ``name = value`` or
  ``name => value``, split at the *first* ``=``.
- ``pbx/pbx_config.c``, ``pbx_load_config()``: ``[general]`` and ``[globals]`` are not contexts;
  ``[globals]`` values are set in order with ``${...}`` substituted from the globals set before them.
  ``exten => EXT,PRI[(label)],App(data)``: EXT up to the first ``,`` outside ``[...]``, ``${...}``
  substituted; PRI is a number, ``n``/``next`` (the context's last priority + 1), ``s``/``same``,
  ``hint`` or a label; App is what precedes the first ``(`` and data runs to the *last* ``)`` — a
  line without one is still loaded, with the warning "No closing parenthesis found?" (what a ``;``
  inside the arguments causes). ``same => ...`` continues the last ``exten`` of the category.
  ``include => ctx`` appends an include.
- ``main/pbx.c``: ``ast_add_extension2_lockopt()`` keeps a context's extensions sorted by
  ``ext_cmp()``: every plain extension before every pattern; patterns compared position by position,
  the smaller character set first (``X`` after ``N`` after a single digit; ``.`` after any set and
  ``!`` after ``.``); ``add_priority()`` refuses a priority already in use.
  ``pbx_find_extension()`` (the default, ``extenpatternmatchnew = no``) walks that sorted list and
  takes the first extension that matches *and* has the priority asked for; only then does it try the
  context's includes, in the order they were written, skipping a context already searched.
  ``_extension_match_core()``: a plain extension matches only itself (``-`` ignored); in a pattern
  (``_``) ``X`` is 0-9, ``Z`` 1-9, ``N`` 2-9, ``[...]`` a set with ``a-b`` ranges, ``.`` one or more
  characters more, ``!`` zero or more, anything else itself.
- Running a call: ``main/pbx_variables.c`` (``${VAR}``, ``${VAR:offset:length}``, ``$[expr]``),
  ``main/ast_expr2.y`` (``=``/``!=`` compare strings *with* their quotes, ``&``, ``|``),
  ``pbx_checkcondition()``, ``pbx_builtin_gotoif()``, ``pbx_parseable_goto()``,
  ``main/app.c`` ``__ast_app_separate_args()``, ``apps/app_exec.c`` (ExecIf),
  ``apps/app_stack.c`` (Gosub: ``ARGn``; Return), ``apps/app_dial.c`` (``U(ctx^arg^...)`` runs
  ``Gosub(ctx,s,1(arg,...))`` on the callee; ``GOSUB_RESULT=ABORT`` hangs up both legs),
  ``res/res_agi.c`` (``AGISTATUS``; ``FAILURE`` lets the dialplan go on, ``HANGUP`` ends it).

What is not modelled raises ``NotImplementedError`` rather than guess: dialplan functions
(``${IF(...)}``), switches, timed includes, ``#exec``, category templates, unknown applications.
"""

from __future__ import annotations

import glob
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tests.fakes.asterisk_agi import separate_args  # main/app.c, ported once for both fakes

C_SPACE = " \t\n\v\f\r"  # isspace() in the C locale
MAX_NESTED_COMMENTS = 128  # main/config.c
AST_PBX_MAX_STACK = 512  # include/asterisk/pbx.h (not LOW_MEMORY)
PRIORITY_HINT = -1


class DialplanError(Exception):
    """What Asterisk would refuse outright (the file does not load) or a call that cannot go on."""


# ------------------------------------------------------------------ main/config.c


@dataclass
class ConfigVariable:
    name: str
    value: str
    object: bool
    file: str
    lineno: int


@dataclass
class Category:
    name: str
    file: str
    lineno: int
    variables: list[ConfigVariable] = field(default_factory=list)


@dataclass
class Config:
    config_dir: Path
    categories: list[Category] = field(default_factory=list)
    current: Category | None = None
    warnings: list[str] = field(default_factory=list)


def _nul(buf: list[str], i: int) -> int:
    while buf[i] != "\0":
        i += 1
    return i


def _strchr(buf: list[str], i: int, ch: str) -> int | None:
    while buf[i] != "\0":
        if buf[i] == ch:
            return i
        i += 1
    return None


@dataclass
class _CommentState:
    depth: int = 0
    opened_at: list[int] = field(default_factory=list)


def _uncomment(line: str, state: _CommentState, lineno: int) -> str | None:
    """The part of a line ``config_text_file_load()`` hands to ``process_text_line()``, or None."""
    buf = [*line, "\0"]
    process: int | None = None if state.depth else 0
    new = 0
    while (p := _strchr(buf, new, ";")) is not None:
        if p > new and buf[p - 1] == "\\":
            del buf[p - 1]  # "Escaped semicolons aren't comments": the backslash goes, the ';' stays
            new = p
        elif buf[p + 1] == "-" and buf[p + 2] == "-" and buf[p + 3] != "-":
            if state.depth >= MAX_NESTED_COMMENTS:
                raise DialplanError(f"Maximum nest limit of {MAX_NESTED_COMMENTS} reached")
            buf[p] = "\0"
            new = p + 3
            state.depth += 1
            state.opened_at.append(lineno)
        elif p >= new + 2 and buf[p - 1] == "-" and buf[p - 2] == "-":
            state.depth -= 1
            state.opened_at.pop()
            new = p + 1
            if not state.depth:
                if process is not None:
                    old = _nul(buf, process)
                    buf = buf[:old] + buf[new : _nul(buf, new) + 1]
                    new = old
                else:
                    process = new
        elif not state.depth:
            while p > new and buf[p - 1] in C_SPACE:
                p -= 1
            if p != new and buf[p] == " " and buf[p + 1] == " ":
                p += 2
            buf[p] = "\0"
            new = p
        else:
            new = p + 1
    if process is None:
        return None
    return "".join(buf[process : _nul(buf, process)]).strip(C_SPACE)


def read_config(path: Path, *, config_dir: Path | None = None) -> Config:
    """``ast_config_load()`` of a text file: categories, variables and what Asterisk would warn about."""
    cfg = Config(config_dir=config_dir or path.parent)
    _load_file(cfg, str(path), tryinclude=False)
    return cfg


def _load_file(cfg: Config, filename: str, *, tryinclude: bool) -> bool:
    fn = filename if filename.startswith("/") else f"{cfg.config_dir}/{filename}"
    files = sorted(glob.glob(fn)) if glob.has_magic(fn) else [fn]
    found = False
    for name in files:
        path = Path(name)
        if not path.is_file():
            continue
        found = True
        cat = cfg.current  # config_text_file_load(): cat = ast_config_get_current_category(cfg)
        state = _CommentState()
        text = path.read_bytes().removeprefix(b"\xef\xbb\xbf").decode()
        for lineno, line in enumerate(text.splitlines(keepends=True), start=1):
            processed = _uncomment(line, state, lineno)
            if processed:
                cat = _process_text_line(cfg, cat, processed, lineno, str(path))
        if state.depth:
            cfg.warnings.append(f"Unterminated comment detected beginning on line {state.opened_at[-1]}")
    if not found and not tryinclude:
        raise DialplanError(f"The file '{filename}' was listed as a #include but it does not exist.")
    return found


def _process_text_line(cfg: Config, cat: Category | None, cur: str, lineno: int, fn: str) -> Category | None:
    if cur.startswith("["):
        end = cur.find("]")
        if end < 0:
            raise DialplanError(f"parse error: no closing ']', line {lineno} of {fn}")
        if cur[end + 1 : end + 2] == "(":
            raise NotImplementedError(f"category options or templates, line {lineno} of {fn}")
        newcat = Category(name=cur[1:end], file=fn, lineno=lineno)
        cfg.categories.append(newcat)
        cfg.current = newcat  # ast_category_append()
        return newcat
    if cur.startswith("#"):
        m = re.match(r"#([!-~]*)(.*)", cur, re.DOTALL)
        assert m is not None
        directive, arg = m.group(1), m.group(2).strip(C_SPACE)
        if directive.lower() == "exec":
            raise NotImplementedError(f"#exec, line {lineno} of {fn}")
        if directive.lower() not in {"include", "tryinclude"}:
            cfg.warnings.append(f"Unknown directive '#{directive}' at line {lineno} of {fn}")
            return cat
        if not arg:
            cfg.warnings.append(
                f"Directive '#{directive}' needs an argument (filename) at line {lineno} of {fn}"
            )
            return cat
        closing = {'"': '"', "<": ">"}.get(arg[0])
        if closing and arg.endswith(closing) and len(arg) > 1:
            arg = arg[1:-1]
        _load_file(cfg, arg, tryinclude=directive.lower() == "tryinclude")
        return cat  # the including file's lines stay in its own category
    if cat is None:
        raise DialplanError(f"parse error: No category context for line {lineno} of {fn}")
    escaped = cur.startswith("\\")
    if escaped:
        cur = cur[1:]
        if not cur or ord(cur[0]) < 33:
            raise DialplanError(f"Invalid escape in line {lineno} of {fn}")
    eq = cur.find("=", 1 if escaped else 0)
    if eq < 0:
        cfg.warnings.append(f"No '=' (equal sign) in line {lineno} of {fn}")
        return cat
    if eq > (1 if escaped else 0) and cur[eq - 1] == "+":
        name, value = cur[: eq - 1].strip(C_SPACE), cur[eq + 1 :]
        previous = [v for v in cat.variables if v.name == name]
        if previous:
            previous[-1].value = (previous[-1].value + value).rstrip(C_SPACE).lstrip(" \t")
            return cat
        obj = False
    else:
        name, value = cur[:eq].strip(C_SPACE), cur[eq + 1 :]
        obj = value.startswith(">")
        value = value[1:] if obj else value
    if not name:
        cfg.warnings.append(f"No variable name in line {lineno} of {fn}")
        return cat
    cat.variables.append(ConfigVariable(name, value.strip(C_SPACE), obj, fn, lineno))
    return cat


# ------------------------------------------------------------------ main/pbx.c: sorting and matching


def _pattern_pos(p: str, i: int) -> tuple[int, bytes, int | None]:
    """``ext_cmp_pattern_pos()``: the next position's score, its character set, where the next starts."""
    bitwise = bytearray(32)
    while True:
        while i < len(p) and p[i] == "-":
            i += 1
        if i >= len(p):
            return 0x30000, bytes(bitwise), None
        c = p[i]
        i += 1
        if c in "nN":
            bitwise[6], bitwise[7] = 0x3F, 0xC0
            return 0x0800 | ord("2"), bytes(bitwise), i
        if c in "xX":
            bitwise[6], bitwise[7] = 0xFF, 0xC0
            return 0x0A00 | ord("0"), bytes(bitwise), i
        if c in "zZ":
            bitwise[6], bitwise[7] = 0x7F, 0xC0
            return 0x0900 | ord("1"), bytes(bitwise), i
        if c == ".":
            return 0x18000, bytes(bitwise), i
        if c == "!":
            return 0x28000, bytes(bitwise), i
        if c != "[":
            o = ord(c)
            bitwise[o // 8] = 1 << (7 - o % 8)
            return 0x0100 | o, bytes(bitwise), i
        end = p.find("]", i)
        if end < 0:
            return 0x40000, bytes(bitwise), i
        count, cmin = 0, 0xFF
        while i < end:
            c1 = c2 = ord(p[i])
            if i + 2 < end and p[i + 1] == "-":
                c2 = ord(p[i + 2])
                i += 2
            cmin = min(cmin, c1)
            for o in range(c1, c2 + 1):
                mask = 1 << (7 - o % 8)
                if not bitwise[o // 8] & mask:
                    bitwise[o // 8] |= mask
                    count += 0x100
            i += 1
        i += 1
        if count:
            return count | cmin, bytes(bitwise), i


def _ext_cmp_exten(left: str, right: str) -> int:
    a, b = left.replace("-", ""), right.replace("-", "")
    for x, y in zip(a, b, strict=False):
        if x != y:
            return ord(x) - ord(y)
    return len(a) - len(b)


def _ext_cmp_pattern(left: str, right: str) -> int:
    li: int | None = 0
    ri: int | None = 0
    while True:
        assert li is not None and ri is not None
        lpos, lbits, li = _pattern_pos(left, li)
        rpos, rbits, ri = _pattern_pos(right, ri)
        cmp = lpos - rpos
        if not cmp:
            cmp = (rbits > lbits) - (rbits < lbits)  # memcmp(right_bitwise, left_bitwise)
        if cmp or li is None:
            return cmp


def ext_cmp(left: str, right: str) -> int:
    """``ext_cmp()``: < 0 when ``left`` sorts (and so is tried) before ``right``."""
    if not left.startswith("_"):
        return -1 if right.startswith("_") else _ext_cmp_exten(left, right)
    if not right.startswith("_"):
        return 1
    return _ext_cmp_pattern(left[1:], right[1:])


def extension_match(pattern: str, data: str) -> bool:
    """``_extension_match_core(pattern, data, E_MATCH)``: does the dialled ``data`` match?"""
    if not pattern.startswith("_"):
        if len(pattern.replace("-", "")) < len(data.replace("-", "")):
            return False
        return _ext_cmp_exten(pattern, data) == 0
    if data.startswith("_") and _ext_cmp_pattern(pattern[1:], data[1:]) == 0:
        return True
    p, d = pattern[1:], data
    pi = di = 0
    while True:
        while di < len(d) and d[di] == "-":
            di += 1
        while pi < len(p) and p[pi] == "-":
            pi += 1
        if di >= len(d) or pi >= len(p) or p[pi] == "/":
            break
        c, ch = p[pi], d[di]
        if c == "[":
            end = p.find("]", pi + 1)
            if end < 0:
                return False  # "Wrong usage of [] in the extension"
            pi += 1
            if pi == end:
                pi += 1
                continue
            while pi < end:
                if pi + 2 < end and p[pi + 1] == "-":
                    if p[pi] <= ch <= p[pi + 2]:
                        break
                    pi += 3
                    continue
                if ch == p[pi]:
                    break
                pi += 1
            if pi >= end:
                return False
            pi = end
        elif c in "nN":
            if not "2" <= ch <= "9":
                return False
        elif c in "xX":
            if not "0" <= ch <= "9":
                return False
        elif c in "zZ":
            if not "1" <= ch <= "9":
                return False
        elif c in ".!":
            return True
        elif ch != c:
            return False
        di += 1
        pi += 1
    if di < len(d):
        return False
    return pi >= len(p) or p[pi] in "/!"


# ------------------------------------------------------------------ pbx/pbx_config.c: the dialplan


@dataclass(frozen=True)
class Priority:
    context: str
    exten: str
    priority: int
    label: str | None
    app: str
    data: str
    file: str
    lineno: int


@dataclass
class Extension:
    name: str  # as written, blanks removed
    exten: str  # what is matched: '-' removed
    cidmatch: str | None
    priorities: dict[int, Priority] = field(default_factory=dict)
    labels: dict[str, int] = field(default_factory=dict)


@dataclass
class Context:
    name: str
    extensions: list[Extension] = field(default_factory=list)  # in ext_cmp() order: the order tried
    includes: list[str] = field(default_factory=list)


@dataclass
class Dialplan:
    globals: dict[str, str] = field(default_factory=dict)
    contexts: dict[str, Context] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def priorities(self) -> list[Priority]:
        return [p for c in self.contexts.values() for e in c.extensions for p in e.priorities.values()]


def _pbx_strsep(s: str | None, delim: str) -> tuple[str | None, str | None]:
    """``pbx_strsep()``: split at the first ``delim`` outside ``[...]``; a backslash skips a character."""
    if s is None:
        return None, None
    square, i = 0, 0
    while i < len(s):
        c = s[i]
        if c == "[":
            square += 1
        elif c == "]":
            square = max(square - 1, 0)
        elif c == "\\":
            i += 1
        elif c in delim and not square:
            return s[:i], s[i + 1 :]
        i += 1
    return s, None


def _strsep(s: str | None, delim: str) -> tuple[str | None, str | None]:
    if s is None:
        return None, None
    for i, c in enumerate(s):
        if c in delim:
            return s[:i], s[i + 1 :]
    return s, None


def _scan_int(s: str) -> int | None:
    m = re.match(r"[ \t\n\v\f\r]*([+-]?\d{1,30})", s)
    return int(m.group(1)) if m else None


def _ext_strncpy(src: str, *, nofluff: bool) -> str:
    out, insquares, is_pattern = [], False, src.startswith("_")
    for c in src:
        if c == "[":
            insquares = insquares or is_pattern
        elif c == "]":
            insquares = False
        elif (c == " " and not insquares) or (c == "-" and not insquares and nofluff):
            continue
        out.append(c)
    return "".join(out)


def _fluff_count(exten: str) -> int:
    if not exten.startswith("_"):
        return exten.count("-")
    fluff, i = 0, 0
    while i < len(exten):
        if exten[i] == "-":
            fluff += 1
        elif exten[i] == "[":
            end = exten.find("]", i)
            if end < 0:
                return fluff
            i = end
        i += 1
    return fluff


def load_dialplan(path: Path, *, config_dir: Path | None = None) -> Dialplan:
    """``pbx_load_config()``: the contexts, extensions, priorities and includes Asterisk would build."""
    cfg = read_config(path, config_dir=config_dir)
    dp = Dialplan(warnings=list(cfg.warnings))
    for cat in cfg.categories:
        if cat.name.lower() == "globals":
            for v in cat.variables:
                dp.globals[v.name] = substitute(v.value, lambda name: dp.globals.get(name))
    for cat in cfg.categories:
        if cat.name.lower() in {"general", "globals"}:
            continue
        con = dp.contexts.setdefault(cat.name, Context(cat.name))
        lastext, lastpri = "", -2
        for v in cat.variables:
            where = f"line {v.lineno} of {v.file}"
            stringp: str | None
            if v.name.lower().startswith("same"):
                if not lastext:
                    dp.warnings.append(
                        f"No previous pattern in the first entry of context '{cat.name}' to match "
                        f"'{v.name}' at {where}!"
                    )
                    continue
                realext, stringp = lastext, v.value
            elif v.name.lower() == "exten":
                ext, stringp = _pbx_strsep(v.value, ",")
                realext = substitute(ext or "", lambda name: dp.globals.get(name))
                lastext = realext
            elif v.name.lower() == "include":
                include = substitute(v.value, lambda name: dp.globals.get(name))
                if "," in include:
                    raise NotImplementedError(f"timed include at {where}")
                if include in con.includes:
                    dp.warnings.append(f"Context '{v.value}' already included in '{cat.name}' at {where}")
                else:
                    con.includes.append(include)
                continue
            elif v.name.lower() in {"switch", "lswitch", "eswitch"}:
                raise NotImplementedError(f"switches, at {where}")
            elif v.name.lower() in {"ignorepat", "autohints"}:
                continue
            else:
                dp.warnings.append(f"==!!== Unknown directive: {v.name} at {where} -- IGNORING!!!")
                continue
            lastpri = _add_line(dp, con, realext, stringp, lastpri, v, where)
    return dp


def _add_line(
    dp: Dialplan, con: Context, realext: str, stringp: str | None, lastpri: int, v: ConfigVariable, where: str
) -> int:
    cidmatch = None
    if "/" in realext:
        realext, cidmatch = realext.split("/", 1)
        cidmatch = re.sub(r"[( )]", "", cidmatch)
    pri_raw, stringp = _strsep(stringp, ",")
    pri = (pri_raw or "").strip(C_SPACE)
    label = None
    if "(" in pri:
        pri, label = pri.split("(", 1)
        if ")" not in label:
            dp.warnings.append(f"Label missing trailing ')' at {where}")
            return lastpri
        label = label[: label.index(")")]
    plus = None
    if "+" in pri:
        pri, plus = pri.split("+", 1)
    if pri == "hint":
        ipri = PRIORITY_HINT
    elif pri in {"next", "n", "same", "s"}:
        if lastpri <= -2:
            dp.warnings.append(f"Can't use '{pri}' priority on the first entry at {where}!")
            return lastpri
        ipri = lastpri + 1 if pri in {"next", "n"} else lastpri
    else:
        number = _scan_int(pri)
        if number is None:
            number = _find_label(con, realext, pri)
            if number < 1:
                dp.warnings.append(f"Invalid priority/label '{pri}' at {where}")
                return lastpri
        elif number < 1:
            dp.warnings.append(f"Invalid priority '{pri}' at {where}")
            return lastpri
        ipri = number
    appl = stringp or ""
    data = ""
    if "(" in appl:
        app_name, rest = appl.split("(", 1)
        if "${" in app_name or "$[" in app_name:
            app_name = appl
        else:
            data = rest
            end = data.rfind(")")
            if end >= 0:
                data = data[:end]
            else:
                dp.warnings.append(f"No closing parenthesis found? '{app_name}({data}' at {where}")
        appl = app_name
    appl = appl.lstrip("".join(chr(i) for i in range(1, 33)))
    if plus is not None:
        ipri += _scan_int(plus) or 0
    if realext in {"_.", "_!"}:
        dp.warnings.append(f"The use of '{realext}' for an extension is strongly discouraged at {where}")
    entry = Priority(con.name, realext, ipri, label or None, appl, data, v.file, v.lineno)
    if not _add_extension(dp, con, entry, cidmatch):
        dp.warnings.append(f"Unable to register extension at {where}")
    return ipri


def _add_extension(dp: Dialplan, con: Context, entry: Priority, cidmatch: str | None) -> bool:
    """``ast_add_extension2_lockopt()`` and ``add_priority()`` with replace = 0."""
    if not entry.exten:
        dp.warnings.append(f"You have to be kidding-- add exten '' to context {con.name}?")
        return False
    fluff = 0 if entry.priority == PRIORITY_HINT else _fluff_count(entry.exten)
    name = _ext_strncpy(entry.exten, nofluff=False)
    exten = _ext_strncpy(entry.exten, nofluff=True) if fluff else name
    cid = _ext_strncpy(cidmatch, nofluff=True) if cidmatch is not None else None
    index, res = len(con.extensions), 1  # past the end unless an extension sorts at or after it
    for i, e in enumerate(con.extensions):
        cmp = ext_cmp(e.exten, exten)
        if cmp == 0 and (e.cidmatch is not None or cid is not None):
            if e.cidmatch is None:
                cmp = 1
            elif cid is None:
                cmp = -1
            else:
                cmp = ext_cmp(e.cidmatch, cid)
        if cmp >= 0:
            index, res = i, cmp
            break
    if res != 0:
        con.extensions.insert(index, Extension(name, exten, cid))
    ext = con.extensions[index]
    label = entry.label
    for prio in sorted(ext.priorities):
        other = ext.priorities[prio]
        if other.label and label and prio != entry.priority and other.label == label:
            dp.warnings.append(
                f"Extension '{name}' priority {entry.priority} in '{con.name}', label '{label}' already "
                f"in use at priority {prio}"
            )
            label = None
        if prio >= entry.priority:
            break
    if entry.priority in ext.priorities:
        dp.warnings.append(
            f"Unable to register extension '{name}' priority {entry.priority} in '{con.name}', already in use"
        )
        return False
    ext.priorities[entry.priority] = entry
    if label:
        ext.labels.setdefault(label, entry.priority)
    return True


def _find_label(con: Context, exten: str, label: str) -> int:
    for e in con.extensions:
        if extension_match(e.exten, exten) and label in e.labels:
            return e.labels[label]
    return -1


@dataclass(frozen=True)
class Found:
    context: str  # the context the extension was found in (maybe an included one)
    extension: Extension
    entry: Priority


def find_extension(
    dp: Dialplan,
    context: str,
    exten: str,
    priority: int = 1,
    *,
    label: str | None = None,
    callerid: str | None = None,
) -> Found | None:
    """``pbx_find_extension()`` with the default matcher: the context's own list first, then its includes."""
    return _find(dp, context, exten, priority, label, callerid, [])


def _find(
    dp: Dialplan,
    context: str,
    exten: str,
    priority: int,
    label: str | None,
    callerid: str | None,
    stack: list[str],
) -> Found | None:
    if len(stack) >= AST_PBX_MAX_STACK:
        return None
    if any(s.lower() == context.lower() for s in stack):
        return None
    con = dp.contexts.get(context)
    if con is None:
        return None
    for e in con.extensions:
        if not extension_match(e.exten, exten):
            continue
        if e.cidmatch is not None and not (
            extension_match(e.cidmatch, callerid) if callerid else not e.cidmatch
        ):
            continue
        prio = e.labels.get(label) if label else priority
        if prio is not None and prio in e.priorities:
            return Found(con.name, e, e.priorities[prio])
    stack.append(con.name)
    for include in con.includes:
        found = _find(dp, include, exten, priority, label, callerid, stack)
        if found:
            return found
    return None


# ------------------------------------------------------------------ running a call


def _matching(s: str, start: int, opening: str, closing: str) -> int:
    """Where a ``${`` or ``$[`` opened just before ``start`` closes (main/pbx_variables.c)."""
    depth, i = 1, start
    while depth and i < len(s):
        if s[i] == "$" and s[i + 1 : i + 2] == opening:
            depth += 1
            i += 1
        elif s[i] == opening:
            depth += 1
        elif s[i] == closing:
            depth -= 1
        elif s[i] == "$" and s[i + 1 : i + 2] in {"{", "["}:
            i += 1
        i += 1
    if depth:
        raise DialplanError(f"Error in extension logic (missing '{closing}') in {s!r}")
    return i - 1


def substitute(text: str, lookup: Callable[[str], str | None]) -> str:
    """``pbx_substitute_variables_helper_full()``: ``${VAR}``, ``${VAR:offset[:length]}``, ``$[expr]``."""
    out: list[str] = []
    i = 0
    while i < len(text):
        j = text.find("$", i)
        if j < 0 or j + 1 >= len(text):
            out.append(text[i:])
            break
        out.append(text[i:j])
        kind = text[j + 1]
        if kind not in "{[":
            out.append("$")
            i = j + 1
            continue
        end = _matching(text, j + 2, kind, "}" if kind == "{" else "]")
        inner = substitute(text[j + 2 : end], lookup)
        out.append(_variable(inner, lookup) if kind == "{" else evaluate(inner))
        i = end + 1
    return "".join(out)


def _variable(spec: str, lookup: Callable[[str], str | None]) -> str:
    parens, name, offset, length = 0, spec, 0, None
    for k, c in enumerate(spec):
        if c == "(":
            parens += 1
            raise NotImplementedError(f"dialplan function ${{{spec}}}")
        if c == ")":
            parens -= 1
        elif c == ":" and not parens:
            name = spec[:k]
            m = re.match(r"\s*([+-]?\d+)(?::\s*([+-]?\d+))?", spec[k + 1 :])
            offset = int(m.group(1)) if m else 0
            length = int(m.group(2)) if m and m.group(2) else None
            break
    value = lookup(name) or ""
    if offset < 0:
        offset = max(len(value) + offset, 0)
    value = value[offset:]
    if length is not None:
        value = value[:length] if length >= 0 else value[: max(len(value) + length, 0)]
    return value


_TOKEN = re.compile(
    r'[ \t\r\n]*(\|\||&&|==|!=|>=|<=|=~|[|&=<>()!]|"[^"]*"|[a-zA-Z0-9.\';\\_^#@\x80-\xff]+|.)'
)


def evaluate(expr: str) -> str:
    """``ast_expr()`` for what a dialplan like ours writes: ``=``, ``!=``, ``&``, ``|``, parentheses."""
    tokens: list[str] = []
    pos = 0
    while pos < len(expr.rstrip()):
        m = _TOKEN.match(expr, pos)
        if not m:
            raise DialplanError(f"syntax error in $[{expr}]")
        tokens.append(m.group(1))
        pos = m.end()
    value, rest = _expr_or(tokens)
    if rest:
        raise DialplanError(f"syntax error in $[{expr}] near {rest[0]!r}")
    return value


def _is_number(v: str) -> bool:
    return re.fullmatch(r"-?\d+", v) is not None


def _zero_or_null(v: str) -> bool:
    return v == "" or (_is_number(v) and int(v) == 0)


def _expr_or(t: list[str]) -> tuple[str, list[str]]:
    left, t = _expr_and(t)
    while t and t[0] in {"|", "||"}:
        right, t = _expr_and(t[1:])
        left = right if _zero_or_null(left) else left
    return left, t


def _expr_and(t: list[str]) -> tuple[str, list[str]]:
    left, t = _expr_cmp(t)
    while t and t[0] in {"&", "&&"}:
        right, t = _expr_cmp(t[1:])
        left = "0" if _zero_or_null(left) or _zero_or_null(right) else left
    return left, t


def _expr_cmp(t: list[str]) -> tuple[str, list[str]]:
    left, t = _expr_primary(t)
    while t and t[0] in {"=", "==", "!="}:
        op = t[0]
        right, t = _expr_primary(t[1:])
        same = int(left) == int(right) if _is_number(left) and _is_number(right) else left == right
        left = "1" if same == (op != "!=") else "0"
    return left, t


def _expr_primary(t: list[str]) -> tuple[str, list[str]]:
    if not t:
        raise DialplanError("syntax error: an operand is missing (an unquoted empty variable?)")
    if t[0] == "(":
        value, rest = _expr_or(t[1:])
        if not rest or rest[0] != ")":
            raise DialplanError("syntax error: missing ')'")
        return value, rest[1:]
    if t[0] in {"<", ">", "<=", ">=", "=~", "!"} or t[0] in "+-*/%?:,~":
        raise NotImplementedError(f"operator {t[0]} in an expression")
    if t[0] in {"|", "||", "&", "&&", "=", "==", "!=", ")"}:
        raise DialplanError(f"syntax error: an operand is missing before {t[0]!r}")
    return t[0], t[1:]


def checkcondition(condition: str) -> bool:
    """``pbx_checkcondition()``: empty is false, a number is its truth, any other string is true."""
    if not condition:
        return False
    number = _scan_int(condition)
    return bool(number) if number is not None else True


@dataclass
class Event:
    kind: str  # the application (AGI, Dial, Verbose, ...) or an outcome (Bridged, Fallthrough)
    data: str  # its data after substitution
    where: str  # context,exten,priority


AgiHandler = Callable[[str, list[str], "Channel"], str]  # url, args, channel -> AGISTATUS
DialHandler = Callable[[str, "Channel"], str]  # dial string -> DIALSTATUS


class _Stop(Exception):
    pass


@dataclass
class _Frame:
    context: str
    exten: str
    priority: int  # where Return() goes: the priority after the Gosub()
    saved: dict[str, str | None]
    top: bool  # the subroutine a test or Dial's U() started: Return() ends the run
    arguments: int = 0


def gate_unreachable(url: str, args: list[str], chan: Channel) -> str:
    """Asterisk could not connect to the FastAGI server: nothing is set, ``AGISTATUS`` is ``FAILURE``."""
    return "FAILURE"


def answered(dialstring: str, chan: Channel) -> str:
    return "ANSWER"


@dataclass
class Channel:
    """One channel running the dialplan, application by application, as ``__ast_pbx_run()`` would."""

    dialplan: Dialplan
    context: str
    exten: str
    priority: int = 1
    variables: dict[str, str] = field(default_factory=dict)
    agi: AgiHandler = gate_unreachable
    dial: DialHandler = answered
    events: list[Event] = field(default_factory=list)
    callee: Channel | None = None
    ended: str = ""  # why the run ended: Hangup(cause), Return, Bridged, Aborted, Fallthrough
    frames: list[_Frame] = field(default_factory=list)
    max_steps: int = 500

    # -- variables
    def get(self, name: str) -> str | None:
        builtins = {"EXTEN": self.exten, "CONTEXT": self.context, "PRIORITY": str(self.priority)}
        if name in builtins:
            return builtins[name]
        if name in self.variables:
            return self.variables[name]
        return self.dialplan.globals.get(name)

    def set(self, name: str, value: str) -> None:
        if value:
            self.variables[name] = value
        else:
            self.variables.pop(name, None)

    def substitute(self, text: str) -> str:
        return substitute(text, self.get)

    # -- running
    def run(self) -> Channel:
        try:
            for _ in range(self.max_steps):
                found = find_extension(self.dialplan, self.context, self.exten, self.priority)
                if found is None:
                    self.events.append(Event("Fallthrough", "", self._where()))
                    self.ended = "Fallthrough"
                    return self
                data = self.substitute(found.entry.data)
                self.events.append(Event(found.entry.app, data, self._where()))
                self.execute(found.entry.app, data)
                self.priority += 1
            raise DialplanError(f"more than {self.max_steps} priorities: a loop?")
        except _Stop:
            return self

    def gosub(self, target: str) -> Channel:
        """Start a subroutine as Dial's ``U()`` does; the run ends at its ``Return()``."""
        self._gosub(target, top=True)
        self.priority += 1
        return self.run()

    def _where(self) -> str:
        return f"{self.context},{self.exten},{self.priority}"

    def _stop(self, why: str) -> None:
        self.ended = why
        raise _Stop

    def execute(self, app: str, data: str) -> None:
        handler = getattr(self, f"_app_{app.lower()}", None)
        if handler is None:
            raise NotImplementedError(f"application {app}({data}) at {self._where()}")
        handler(data)

    def _app_noop(self, data: str) -> None:
        pass

    def _app_verbose(self, data: str) -> None:
        args = separate_args(data, ",", remove_chars=True, arraylen=2)
        self.events[-1] = Event("Verbose", args[-1] if args else "", self._where())

    def _app_set(self, data: str) -> None:
        name, sep, value = data.partition("=")
        if not sep:
            raise DialplanError(f"Set requires an '=' to be a valid assignment: {data!r}")
        self.set(name, value)

    def _app_hangup(self, data: str) -> None:
        self._stop(f"Hangup({data})")

    def _goto(self, target: str) -> None:
        parts = target.split(",")
        if len(parts) > 3 or not target:
            raise DialplanError(f"Goto requires an argument ([[context,]extension,]priority): {target!r}")
        context, exten = self.context, self.exten
        if len(parts) == 3:
            context, exten, pri = parts
        elif len(parts) == 2:
            exten, pri = parts
        else:
            (pri,) = parts
        mode = 0
        if pri[:1] in {"+", "-"}:
            mode, pri = (1 if pri[0] == "+" else -1), pri[1:]
        if re.fullmatch(r"\s*[+-]?\d+", pri):
            ipri = int(pri)
        else:
            found = find_extension(self.dialplan, context, exten, label=pri)
            if found is None:
                raise DialplanError(f"Priority '{pri}' must be a number > 0, or valid label ({target})")
            ipri, mode = found.entry.priority, 0
        if mode:
            ipri = self.priority + ipri * mode
        self.context, self.exten, self.priority = context, exten, ipri - 1

    def _app_goto(self, data: str) -> None:
        self._goto(data)

    def _app_gotoif(self, data: str) -> None:
        condition, _, branches = data.partition("?")
        branch1, _, branch2 = branches.partition(":")
        branch = branch1 if checkcondition(condition) else branch2
        if branch:
            self._goto(branch)

    def _app_execif(self, data: str) -> None:
        first_comma, first_question = data.find(","), data.find("?")
        if first_question < 0 or 0 <= first_comma < first_question:
            raise NotImplementedError("ExecIf's deprecated syntax")
        expr, remainder = [*separate_args(data, "?", remove_chars=False, arraylen=2), ""][:2]
        if not remainder:
            raise DialplanError("Usage: ExecIf(<expr>?<appiftrue>(<args>)[:<appiffalse>(<args)])")
        apps = separate_args(remainder, ":", remove_chars=False, arraylen=2)
        chosen = apps[0] if checkcondition(expr) else (apps[1] if len(apps) > 1 else "")
        if not chosen:
            return
        app, _, args = chosen.partition("(")
        end = args.rfind(")")
        self.events.append(Event(app, args[:end] if end >= 0 else args, self._where()))
        self.execute(app, args[:end] if end >= 0 else args)

    def _gosub(self, data: str, *, top: bool) -> None:
        label, paren, rest = data.partition("(")
        args: list[str] = []
        if paren:
            end = rest.rfind(")")
            args = separate_args(rest[:end] if end >= 0 else rest, ",", remove_chars=False, arraylen=100)
        back = _Frame(self.context, self.exten, self.priority + 1, {}, top)
        self._goto(label)
        if find_extension(self.dialplan, self.context, self.exten, self.priority + 1) is None:
            raise DialplanError(f"Gosub attempted to reach non-existent destination '{label}'")
        # "Mask out previous Gosub arguments in this invocation"
        back.arguments = max(len(args), self.frames[-1].arguments if self.frames else 0)
        for i in range(back.arguments):
            back.saved[f"ARG{i + 1}"] = self.variables.get(f"ARG{i + 1}")
            self.set(f"ARG{i + 1}", args[i] if i < len(args) else "")
        back.saved["ARGC"] = self.variables.get("ARGC")
        self.set("ARGC", str(len(args)))
        self.frames.append(back)

    def _app_gosub(self, data: str) -> None:
        self._gosub(data, top=False)

    def _app_return(self, data: str) -> None:
        if not self.frames:
            raise DialplanError("Return without Gosub")
        frame = self.frames.pop()
        for name, value in frame.saved.items():
            self.set(name, value or "")
        if frame.top:
            self._stop("Return")
        self.context, self.exten, self.priority = frame.context, frame.exten, frame.priority - 1

    def _app_agi(self, data: str) -> None:
        args = separate_args(data, ",", remove_chars=True, arraylen=128)
        status = self.agi(args[0], args[1:], self)
        self.set("AGISTATUS", status)
        if status == "HANGUP":
            self._stop("AGI hangup")

    def _app_mixmonitor(self, data: str) -> None:
        pass

    # Sound and AMI: what they did is in the channel's events; the run goes on as Asterisk's does.
    def _app_playback(self, data: str) -> None:
        pass

    def _app_saydigits(self, data: str) -> None:
        pass

    def _app_userevent(self, data: str) -> None:
        pass

    def _app_dial(self, data: str) -> None:
        args = separate_args(data, ",", remove_chars=True, arraylen=4)
        options = _options(args[2] if len(args) > 2 else "")
        status = self.dial(args[0], self)
        self.set("DIALSTATUS", status)
        if status != "ANSWER":
            return
        if "U" in options:
            sub = options["U"].replace("^", ",")
            context, comma, subargs = sub.partition(",")
            target = f"{context},s,1({subargs})" if comma else f"{context},s,1"
            self.callee = Channel(self.dialplan, context, "s", agi=self.agi, dial=self.dial)
            self.callee.gosub(target)
            result = self.callee.variables.get("GOSUB_RESULT", "")
            if self.callee.ended != "Return" or result.upper() == "ABORT":
                self.events.append(Event("Aborted", result, self._where()))
                self._stop("Aborted")
            if result:
                raise NotImplementedError(f"GOSUB_RESULT={result}")
        self.events.append(Event("Bridged", args[0], self._where()))
        self._stop("Bridged")


def _options(text: str) -> dict[str, str]:
    """``ast_app_parse_options()``: a letter, with its argument in parentheses when it takes one."""
    out: dict[str, str] = {}
    i = 0
    while i < len(text):
        letter, i = text[i], i + 1
        arg = ""
        if text[i : i + 1] == "(":
            depth, start = 1, i + 1
            i += 1
            while i < len(text) and depth:
                depth += {"(": 1, ")": -1}.get(text[i], 0)
                i += 1
            arg = text[start : i - 1]
        out[letter] = arg
    return out


def call(
    dp: Dialplan,
    context: str,
    exten: str,
    *,
    variables: dict[str, str] | None = None,
    agi: AgiHandler = gate_unreachable,
    dial: DialHandler = answered,
) -> Channel:
    """Dial ``exten`` from ``context`` and run the call to its end."""
    return Channel(dp, context, exten, variables=dict(variables or {}), agi=agi, dial=dial).run()


def subroutine(
    dp: Dialplan,
    target: str,
    *,
    variables: dict[str, str] | None = None,
    agi: AgiHandler = gate_unreachable,
) -> Channel:
    """Run ``Gosub(target)`` on a fresh channel, as Dial's ``U()`` does on the callee, to its ``Return()``."""
    context = target.split(",", 1)[0]
    chan = Channel(dp, context, "s", priority=0, variables=dict(variables or {}), agi=agi)
    return chan.gosub(target)
