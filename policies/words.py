"""Words of a simple command, and the command a wrapper runs: no parsing, only words.

``Word`` is what is known statically of one word: its value, or for a word
with an expansion (``$X``, ``"$D/x"``) the literal text it starts with. The
functions below read a wrapper's words the way the wrapper does and return
what it runs: the command after ``env``/``xargs``/``timeout``/``nice``/``sudo``
... options (``inner_commands``), the commands of ``find -exec``, the script a
shell is given (``shell_script``: ``-c STRING``, a heredoc or here-string, or
none for a script file) and the code ``eval``/``trap``/``alias`` take
(``code_strings``). ``policies.cmdline`` parses that code again. Options are
split with the standard library's ``shlex`` (``env -S``).
"""

from __future__ import annotations

import fnmatch
import re
import shlex
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from policies.errors import Unverifiable

SHELLS = frozenset(
    {"sh", "bash", "dash", "zsh", "ksh", "ash", "mksh", "yash", "posh", "rbash", "csh", "tcsh"}
)

# Wrappers that only run another command: checked against deny and ask, never the allow list.
PURE_WRAPPERS = frozenset(
    {"env", "xargs", "timeout", "nice", "ionice", "nohup", "time", "command", "builtin", "exec"}
    | {"setsid", "stdbuf", "busybox", "taskset", "chrt", "eval", "trap", "alias"}
)

#: A pattern character that is not escaped: the word (or rule token) is a glob.
GLOB = re.compile(r"(?<!\\)[*?[]")
#: Script operands that are the shell's standard input.
STDIN_FILE = re.compile(r"/dev/(stdin|fd/\d+)|/proc/[^/]+/fd/\d+|-")


@dataclass(frozen=True, slots=True)
class Word:
    """One word of a command: its value if static, else its source text and what is known of it."""

    value: str
    static: bool = True
    prefix: str = ""
    """For a word that is not static: the literal text its value is known to start with."""
    numeric: bool = False
    """For a word that is not static: its value is a non-negative number (``$!``, ``$$`` ...)."""

    def may_be(self, token: str) -> bool:
        """Whether this word could match the rule token (a pattern); exact for static words."""
        if self.static:
            return fnmatch.fnmatchcase(self.value, token)
        literal = GLOB.split(token, maxsplit=1)[0]
        if literal == token:  # no pattern characters: the word must be exactly the token
            fits = token.startswith(self.prefix)
        else:
            fits = literal.startswith(self.prefix) or self.prefix.startswith(literal)
        if self.numeric:
            digits = token.isdigit() if literal == token else literal.isdigit() or not literal
            fits = fits and digits
        return fits


def shell_script(
    name: str, args: Sequence[Word], stdin: Callable[[], tuple[str, Word] | None]
) -> list[tuple[str, Word]]:
    """The script a shell (or ``source``) runs, labelled; empty when it runs a script file.

    ``stdin()`` says where the command's standard input is redirected from (a
    heredoc, a here-string, a file), if it is. Raises ``Unverifiable`` when the
    script cannot be known statically: ``-c`` without a string, a script name
    that is not static, a script read from a pipe.
    """
    dash_c = from_stdin = False
    i = 0
    while i < len(args) and args[i].static and name in SHELLS:
        a = args[i].value
        if a == "--":
            i += 1
            break
        if a in ("-o", "+o", "-O", "+O", "--rcfile", "--init-file"):
            i += 2
        elif len(a) > 1 and a[0] in "-+":
            if a[0] == "-" and a[1] != "-":
                dash_c |= "c" in a
                from_stdin |= "s" in a
            i += 1
        else:
            break
    operand = args[i] if i < len(args) else None
    if dash_c:
        if operand is None:
            raise Unverifiable(f"`{name} -c` without a command string")
        return [(f"{name} -c", operand)]
    if operand is not None and not from_stdin:
        if not operand.static:
            raise Unverifiable(f"`{name}` runs a script that is not static: `{operand.value}`")
        if not STDIN_FILE.fullmatch(operand.value):
            return []  # a script file: its content is the sandbox's business
    elif name not in SHELLS:
        return []  # `source` without a file: an error
    given = stdin()
    if given is None:
        raise Unverifiable(
            f"`{name}` is a shell reading its script from a pipe or stdin, which cannot be"
            " checked; pass the script with -c or as a file"
        )
    kind, script = given
    if kind == "file":
        if not script.static:
            raise Unverifiable(f"`{name}` reads its script from a file that is not static")
        return []
    return [(f"{name} {kind}", script)]


def code_strings(name: str, args: Sequence[Word]) -> list[Word]:
    """The shell code ``eval``, ``trap`` and ``alias`` are given."""
    if name == "eval":
        rest = list(args[1:] if args and args[0].value == "--" and args[0].static else args)
        if not rest:
            return []
        if not all(w.static for w in rest):
            return [Word(" ".join(w.value for w in rest), static=False)]
        return [Word(" ".join(w.value for w in rest))]
    if name == "trap":
        if len(args) < 2 or (args[0].static and args[0].value in ("-", "", "--", "-p", "-l")):
            return []
        return [args[0]]
    return [  # alias name=value ...
        Word(w.value.split("=", 1)[1]) if w.static else w
        for w in args
        if not w.static or "=" in w.value
    ]


def inner_commands(name: str, args: Sequence[Word]) -> list[tuple[str, Sequence[Word]]]:
    """The commands a wrapper runs, each with a label for its context.

    Raises ``Unverifiable`` for an ``env -S`` string that is not static or does not split.
    """
    rest: Sequence[Word] | None = None
    if name == "env":
        rest = _env(args)
    elif name == "xargs":
        values = {"-I", "-n", "-P", "-d", "-L", "-s", "-a", "-E"}
        values |= {"--delimiter", "--max-args", "--max-procs", "--arg-file", "--max-lines"}
        rest = _skip_opts(args, values) or [Word("echo")]
    elif name == "find":
        return _find(args)
    elif name == "timeout":
        rest = _skip_opts(args, {"-s", "--signal", "-k", "--kill-after"})[1:]
    elif name == "nice":
        rest = _skip_opts(args, {"-n", "--adjustment"})
    elif name == "ionice":
        rest = _skip_opts(args, {"-c", "-n", "-p", "-P", "-u", "--class", "--classdata"})
    elif name in ("sudo", "doas"):
        values = {"-u", "-g", "-C", "-D", "-h", "-p", "-r", "-t", "-T", "-U", "--user", "--group"}
        rest = _skip_opts(args, values)
    elif name == "stdbuf":
        rest = _skip_opts(args, {"-i", "-o", "-e"})
    elif name in ("taskset", "chrt"):
        rest = _skip_opts(args, set())[1:]
    elif name == "time":
        rest = _skip_opts(args, {"-f", "-o", "--format", "--output"})
    elif name == "exec":
        rest = _skip_opts(args, {"-a"})
    elif name == "command":
        if any(w.value in ("-v", "-V") for w in args[:2]):
            return []
        rest = _skip_opts(args, set())
    elif name in ("nohup", "builtin", "setsid", "busybox"):
        rest = _skip_opts(args, set())
    return [(name, rest)] if rest else []


def _skip_opts(args: Sequence[Word], values: set[str]) -> Sequence[Word]:
    """The words after the options (``values`` take the next word as their value)."""
    i = 0
    while i < len(args) and args[i].static and args[i].value.startswith("-"):
        if args[i].value == "--":
            return args[i + 1 :]
        if args[i].value == "-":
            break
        i += 2 if args[i].value in values else 1
    return args[i:]


def _env(args: Sequence[Word]) -> Sequence[Word]:
    split: list[Word] = []
    i = 0
    while i < len(args) and args[i].static and args[i].value.startswith("-"):
        a = args[i].value
        if a == "--":
            i += 1
            break
        if a in ("-S", "--split-string") or a.startswith(("-S", "--split-string=")):
            value = args[i + 1] if a in ("-S", "--split-string") and i + 1 < len(args) else None
            i += 1 if value is None else 2
            text = value.value if value else a.split("=", 1)[-1] if "=" in a else a[2:]
            if value is not None and not value.static:
                raise Unverifiable("`env -S` is given a string that is not static")
            try:
                split = [Word(t) for t in shlex.split(text)]
            except ValueError as exc:
                raise Unverifiable(f"`env -S` string does not split: {exc}") from exc
            continue
        i += 2 if a in ("-u", "--unset", "-C", "--chdir") else 1
    rest = [*split, *args[i:]]
    while rest and rest[0].static and "=" in rest[0].value and not rest[0].value.startswith("="):
        rest = rest[1:]
    return rest


def _find(args: Sequence[Word]) -> list[tuple[str, Sequence[Word]]]:
    found: list[tuple[str, Sequence[Word]]] = []
    i = 0
    while i < len(args):
        flag = args[i].value
        if args[i].static and flag in ("-exec", "-execdir", "-ok", "-okdir"):
            end = i + 1
            while end < len(args) and not (args[end].static and args[end].value in (";", "+")):
                end += 1
            if args[i + 1 : end]:
                found.append((f"find {flag}", args[i + 1 : end]))
            i = end
        i += 1
    return found
