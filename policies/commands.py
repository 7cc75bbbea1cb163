"""Command validation: every simple command in a line, checked against deny / ask / allow rules.

The line is parsed with **tree-sitter-bash**, never with regular expressions: it
is a maintained, complete bash grammar (pipelines, lists, subshells, ``$(...)``,
backticks, process substitution, heredocs, functions, compound commands), so
what we check is what bash would run. Every ``command`` node anywhere in the tree
is a simple command. Strings given to ``bash -c`` / ``sh -c`` / ``eval`` /
``trap`` / ``alias`` and heredocs or here-strings fed to a shell are parsed again
(at most ``MAX_DEPTH`` levels), and wrappers (``env``, ``xargs``,
``find -exec``, ``timeout``, ``nice``, ``nohup``, ``sudo`` ...) are unwrapped
so the command they run is checked too. What cannot be known statically (a
command name from a variable or a glob, ``eval "$X"``, a shell or ``source``
reading its script from a pipe or a process substitution) and what does not
parse is denied, with a reason the agent can act on.

Rules are ``shlex`` token lists in which every token may be an ``fnmatch``
pattern; the first matches the command's name (its basename). Deny and ask
rules *over*-approximate, allow rules *under*-approximate:

* deny / ask: a rule's single-letter options (``-rf`` is ``-r`` and ``-f``)
  must all appear among the command's options, in any order or clustering
  (``rm -fr /``, ``rm -r -f /`` and ``rm / -rf`` all match ``rm -rf /``); its
  other tokens must match arguments in order, not necessarily adjacent
  (``git push`` matches ``git -C . push``). An argument that is not static
  (``$X``, ``"$D/x"``) is assumed to be anything that starts with its literal
  prefix, so ``rm -rf "$D"`` matches ``rm -rf /*``; ``$!``, ``$$``, ``$#`` and
  ``$?`` are assumed to be numbers.
* allow: the rule's tokens must be a prefix of the command's words after
  splitting and sorting short-option clusters (``pytest`` allows
  ``pytest -q``; ``git status`` does not allow ``git push status``). A word that
  is not static only matches ``*``. Pure wrappers (``env``, ``timeout``,
  ``xargs``, ``bash -c`` ...) are held to deny and ask only; what they run is
  held to all three.

Precedence: any deny -> deny; else any ask -> ask; else, with a non-empty allow
list, a command matching no allow rule -> deny; else allow.

This is defence in depth and a record of intent. **The sandbox (read-only
mounts, no network, non-root, resource limits), not this validator, is the
boundary**: a command the validator misses still runs inside it.
"""

from __future__ import annotations

import fnmatch
import os
import re
import shlex
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

import tree_sitter as ts
import tree_sitter_bash as tsb

from policies.errors import PolicyError
from policies.errors import Unverifiable as Unverifiable
from policies.policy import CommandPolicy

Decision = Literal["allow", "deny", "ask"]

#: How deep shell strings and wrappers may nest (``bash -c "env nice ..."``) before a line is denied.
MAX_DEPTH = 8

SHELLS = frozenset(
    {"sh", "bash", "dash", "zsh", "ksh", "ash", "mksh", "yash", "posh", "rbash", "csh", "tcsh"}
)

#: Sensible deny rules for an agent in a network-less sandbox; the presets are built from these.
DEFAULT_DENY: tuple[str, ...] = (
    # network
    "curl", "wget", "nc", "ncat", "netcat", "socat", "telnet", "ftp",
    "ssh", "scp", "sftp", "rsync",
    # git beyond the local repository, and global config
    "git push", "git remote", "git fetch", "git pull", "git clone", "git submodule",
    "git ls-remote", "git config --global", "git config --system",
    # privilege, containers, namespaces, mounts
    "sudo", "su", "doas", "pkexec", "chroot", "nsenter", "unshare", "mount", "umount",
    "docker", "podman",
    # disks and power
    "mkfs*", "dd of=/dev/*", "shutdown", "reboot", "halt", "poweroff",
    # set-user/group-id bits
    "chmod +*s*", "chmod [ugoa]*+*s*", "chmod =*s*", "chmod [ugoa]*=*s*",
    "chmod [2-7][0-7][0-7][0-7]", "chmod 0[2-7][0-7][0-7][0-7]",
    # every process
    "kill -9 -1", "kill -KILL -1", "kill -s KILL -1", "kill -- -1",
    # the file system or the home directory (``/*`` is a pattern: any absolute path)
    "rm -rf /", "rm -rf /*", "rm -rf ~", "rm -rf ~/", "rm -rf ~/*",
    "rm -Rf /", "rm -Rf /*", "rm -Rf ~", "rm -Rf ~/", "rm -Rf ~/*",
    # package-manager configuration
    "pip config", "npm config",
)  # fmt: skip

# Wrappers that only run another command: checked against deny and ask, never the allow list.
_PURE_WRAPPERS = frozenset(
    {"env", "xargs", "timeout", "nice", "ionice", "nohup", "time", "command", "builtin", "exec"}
    | {"setsid", "stdbuf", "busybox", "taskset", "chrt", "eval", "trap", "alias"}
)
_CLUSTER = re.compile(r"-[A-Za-z]+")
_GLOB = re.compile(r"(?<!\\)[*?[]")
_BRACE = re.compile(r"(?<!\\)\{[^{}]*(,|\.\.)[^{}]*\}")
_DQ_ESCAPE = re.compile(r'\\([$`"\\\n])')
_HEREDOC_ESCAPE = re.compile(r"\\([$`\\\n])")
_BACKQUOTE = re.compile(r"(?<!\\)`")
_STDIN_FILE = re.compile(r"/dev/(stdin|fd/\d+)|/proc/[^/]+/fd/\d+|-")
_NUMERIC = frozenset({"$!", "$$", "$#", "$?", "${!}", "${$}", "${#}", "${?}"})


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
        literal = _GLOB.split(token, maxsplit=1)[0]
        if literal == token:  # no pattern characters: the word must be exactly the token
            fits = token.startswith(self.prefix)
        else:
            fits = literal.startswith(self.prefix) or self.prefix.startswith(literal)
        if self.numeric:
            digits = token.isdigit() if literal == token else literal.isdigit() or not literal
            fits = fits and digits
        return fits


@dataclass(frozen=True, slots=True)
class SimpleCommand:
    """One simple command: its argv, its source text, and where it was found."""

    argv: tuple[str, ...]
    """The words, the name reduced to its basename; a word that is not static is its source text."""
    text: str
    context: str
    """Where it was found: ``top``, ``pipeline``, ``$(...)``, ``bash -c``, ``xargs`` ... (outer > inner)."""
    words: tuple[Word, ...] = ()
    """The words with what is known of each; empty means every word of ``argv`` is static."""
    wrapper: bool = False
    """A pure wrapper (``env``, ``timeout``, ``bash -c`` ...): exempt from the allow list."""

    def parts(self) -> tuple[Word, ...]:
        return self.words or tuple(Word(a) for a in self.argv)


@dataclass(frozen=True, slots=True)
class Verdict:
    """The decision on a line, with the reason shown to the agent and what decided it."""

    decision: Decision
    reason: str
    rule: str | None = None
    command: str | None = None
    commands: tuple[str, ...] = ()


@lru_cache(maxsize=1)
def _parser() -> ts.Parser:
    return ts.Parser(ts.Language(tsb.language()))


# --------------------------------------------------------------------- extraction


def simple_commands(line: str) -> list[SimpleCommand]:
    """Every simple command in ``line``, wrappers and their commands both.

    Raises ``Unverifiable`` (a ``ValueError``) when that cannot be known statically:
    the line does not parse, a command name is not static, a shell reads its script
    from a pipe or is given one that is not static, or nesting is deeper than ``MAX_DEPTH``.
    """
    if "\x00" in line:
        raise Unverifiable("the command contains a NUL byte")
    out: list[SimpleCommand] = []
    _extract(line, "top", 0, out)
    return out


def _extract(script: str, context: str, depth: int, out: list[SimpleCommand]) -> None:
    if depth > MAX_DEPTH:
        raise Unverifiable(f"shell strings nested deeper than {MAX_DEPTH} levels")
    data = script.encode()
    root = _parser().parse(data).root_node
    if root.has_error:
        raise Unverifiable("could not parse the command line; simplify it")
    previous: ts.Node | None = None
    for node in _walk(root):
        if node.is_missing or node.type == "ERROR":
            raise Unverifiable("could not parse the command line; simplify it")
        if node.child_count == 0:
            if previous is not None and data[previous.end_byte : node.start_byte] == b"\\\n":
                raise Unverifiable("a line continuation inside a word; write the word on one line")
            previous = node
        if node.type == "heredoc_redirect":
            _heredoc(node, data)  # rejects backquotes the outer shell would run
        elif node.type == "command":
            _command(node, data, _context(node, context), depth, out)


def _walk(node: ts.Node) -> Iterator[ts.Node]:
    stack = [node]
    while stack:
        n = stack.pop()
        yield n
        stack.extend(reversed(n.children))


def _text(node: ts.Node, data: bytes) -> str:
    return data[node.start_byte : node.end_byte].decode(errors="replace")


def _context(node: ts.Node, base: str) -> str:
    labels: list[str] = []
    n = node.parent
    while n is not None:
        t = n.type
        if t == "pipeline":
            labels.append("pipeline")
        elif t == "command_substitution":
            labels.append("`...`" if n.children[0].type == "`" else "$(...)")
        elif t == "process_substitution":
            labels.append(f"{n.children[0].type[0]}(...)")
        elif t == "subshell":
            labels.append("(...)")
        elif t == "function_definition":
            labels.append("function")
        elif t in ("if_statement", "while_statement", "for_statement", "case_statement"):
            labels.append(t.removesuffix("_statement"))
        elif t == "heredoc_body":
            labels.append("heredoc")
        n = n.parent
    path = [base] if base != "top" else []
    path.extend(reversed(labels))
    return " > ".join(path) or "top"


def _word(node: ts.Node, data: bytes) -> Word:
    """What is known statically of a word node."""
    if node.type == "command_name" and node.named_child_count:
        node = node.named_children[0]
    raw = _text(node, data)
    if _BRACE.search(_unquoted(node, data)):
        return Word(raw, static=False, prefix=raw.split("{", 1)[0])
    value = _static(node, data)
    if value is not None:
        return Word(value)
    return Word(raw, static=False, prefix=_prefix(node, data), numeric=raw in _NUMERIC)


def _static(node: ts.Node, data: bytes) -> str | None:
    """The value of a word if it has no expansion; None if it has one."""
    t = node.type
    if t in ("word", "number"):
        return _unescape(_text(node, data))
    if t == "raw_string":
        return _text(node, data)[1:-1]
    if t == "string":
        if any(c.type != "string_content" for c in node.named_children):
            return None
        return _DQ_ESCAPE.sub(lambda m: "" if m[1] == "\n" else m[1], _text(node, data)[1:-1])
    if t == "concatenation":
        parts = [_static(child, data) for child in node.children]
        return None if any(p is None for p in parts) else "".join(p or "" for p in parts)
    return None


def _prefix(node: ts.Node, data: bytes) -> str:
    """The literal start of a word that is not static."""
    out = ""
    if node.type == "concatenation":
        for child in node.children:
            value = _static(child, data)
            if value is None:
                return out + _prefix(child, data)
            out += value
    elif node.type == "string":
        for child in node.named_children:
            if child.type != "string_content":
                break
            out += _text(child, data)
    return out


def _unquoted(node: ts.Node, data: bytes) -> str:
    """The word's unquoted text, with quoted parts replaced by a placeholder."""
    if node.type == "word":
        return _text(node, data)
    if node.type == "concatenation":
        return "".join(_unquoted(c, data) for c in node.children)
    return "\x01"


def _unescape(word: str) -> str:
    return re.sub(r"\\(.)", lambda m: "" if m[1] == "\n" else m[1], word, flags=re.DOTALL)


def _command(
    node: ts.Node, data: bytes, context: str, depth: int, out: list[SimpleCommand]
) -> None:
    name_node = node.child_by_field_name("name")
    if name_node is None:
        return  # only assignments
    words = [_word(n, data) for n in [name_node, *node.children_by_field_name("argument")]]
    name = words[0]
    inner = name_node.named_children[0] if name_node.named_child_count else name_node
    if not name.static or _GLOB.search(_unquoted(inner, data)):
        raise Unverifiable(f"command name is not static: `{_text(name_node, data)}`")
    _unwrap(words, _text(node, data), context, depth, out, lambda: _stdin(node, data))


def _stdin(node: ts.Node, data: bytes) -> tuple[str, Word] | None:
    """Where a command's standard input comes from, if redirected: heredoc, here-string or file."""
    redirects = list(node.children_by_field_name("redirect"))
    parent = node.parent
    if (
        parent is not None
        and parent.type == "redirected_statement"
        and parent.child_by_field_name("body") == node
    ):
        redirects = [*parent.children_by_field_name("redirect"), *redirects]
    found: tuple[str, Word] | None = None
    for r in redirects:  # the last one wins, as in bash
        if r.type == "heredoc_redirect":
            found = ("heredoc", _heredoc(r, data))
        elif r.type == "herestring_redirect" and r.named_child_count:
            found = ("here-string", _word(r.named_children[-1], data))
        elif r.type == "file_redirect" and r.children and r.children[0].type == "<":
            found = ("file", _word(r.named_children[-1], data))
    return found


def _heredoc(node: ts.Node, data: bytes) -> Word:
    """A heredoc body as the shell passes it on; rejects backquotes the outer shell would run."""
    start = next((c for c in node.children if c.type == "heredoc_start"), None)
    body = next((c for c in node.children if c.type == "heredoc_body"), None)
    if body is None:
        return Word("")
    raw = _text(body, data)
    if start is not None and any(q in _text(start, data) for q in "'\"\\"):
        return Word(raw)  # a quoted delimiter: the body is literal
    contents = [c for c in body.named_children if c.type == "heredoc_content"]
    if any(_BACKQUOTE.search(_text(c, data)) for c in contents) or (
        not body.named_child_count and _BACKQUOTE.search(raw)
    ):
        raise Unverifiable(
            "backquotes in an unquoted heredoc are run by the shell; quote the delimiter (<<'EOF')"
        )
    if len(contents) != body.named_child_count:
        return Word(raw, static=False)
    return Word(_HEREDOC_ESCAPE.sub(lambda m: "" if m[1] == "\n" else m[1], raw))


def _unwrap(
    words: Sequence[Word],
    text: str,
    context: str,
    depth: int,
    out: list[SimpleCommand],
    stdin: Callable[[], tuple[str, Word] | None] = lambda: None,
) -> None:
    """Record a command and, for a wrapper, what it runs (recursively)."""
    if depth > MAX_DEPTH:
        raise Unverifiable(f"commands nested deeper than {MAX_DEPTH} levels")
    if not words:
        return
    if not words[0].static:
        raise Unverifiable(f"command name is not static: `{words[0].value}`")
    name = os.path.basename(words[0].value.rstrip("/")) or words[0].value
    words = (Word(name), *words[1:])
    args = words[1:]
    argv = tuple(w.value for w in words)
    scripts: list[tuple[str, Word]] = []
    inner: list[tuple[str, Sequence[Word]]] = []
    if name in SHELLS or name in ("source", "."):
        scripts = _shell_script(name, args, stdin)
    elif name in ("eval", "trap", "alias"):
        scripts = [(name, s) for s in _strings(name, args)]
    else:
        inner = _inner(name, args)
    wrapper = (name in _PURE_WRAPPERS and bool(inner)) or bool(scripts)
    out.append(SimpleCommand(argv, text, context, words, wrapper))
    for label, script in scripts:
        if not script.static:
            raise Unverifiable(f"`{label}` is given a script that is not static: `{script.value}`")
        _extract(script.value, _join(context, label), depth + 1, out)
    for label, cmd in inner:
        _unwrap(cmd, " ".join(w.value for w in cmd), _join(context, label), depth + 1, out)


def _join(context: str, label: str) -> str:
    return label if context == "top" else f"{context} > {label}"


def _shell_script(
    name: str, args: Sequence[Word], stdin: Callable[[], tuple[str, Word] | None]
) -> list[tuple[str, Word]]:
    """The script a shell runs, labelled; empty when it runs a script file."""
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
        if not _STDIN_FILE.fullmatch(operand.value):
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


def _strings(name: str, args: Sequence[Word]) -> list[Word]:
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


def _inner(name: str, args: Sequence[Word]) -> list[tuple[str, Sequence[Word]]]:
    """The commands a wrapper runs, each with a label for its context."""
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


# --------------------------------------------------------------------- rules


def normalize(tokens: Sequence[str]) -> tuple[str, ...]:
    """Split short-option clusters (``-rf`` -> ``-r -f``) and sort each run of them."""
    return tuple(w.value for w in _normalize([Word(t) for t in tokens]))


def _normalize(words: Sequence[Word]) -> list[Word]:
    out: list[Word] = []
    run: list[str] = []
    for w in [*words, None]:
        if w is not None and w.static and _CLUSTER.fullmatch(w.value):
            run.extend(f"-{c}" for c in w.value[1:])
            continue
        out.extend(Word(f) for f in sorted(run))
        run = []
        if w is not None:
            out.append(w)
    return out


@dataclass(frozen=True, slots=True)
class Rule:
    """A compiled rule: its text, name pattern, single-letter options and other tokens."""

    text: str
    name: str
    flags: frozenset[str]
    args: tuple[str, ...]
    tokens: tuple[str, ...]
    """All tokens, normalized: for the allow list's prefix match."""

    @classmethod
    def parse(cls, text: str) -> Rule:
        """Compile a rule; ``PolicyError`` (a ``ValueError``) if it does not split with ``shlex``
        or is empty."""
        try:
            tokens = shlex.split(text)
        except ValueError as exc:
            raise PolicyError(
                [f"command rule {text!r} does not split ({exc}): fix its quoting"]
            ) from exc
        if not tokens:
            raise PolicyError([f"empty command rule {text!r}: remove it"])
        flags = {c for t in tokens[1:] if _CLUSTER.fullmatch(t) for c in t[1:]}
        args = tuple(t for t in tokens[1:] if not _CLUSTER.fullmatch(t))
        name = os.path.basename(tokens[0]) or tokens[0]
        return cls(text, name, frozenset(flags), args, (name, *normalize(tokens[1:])))

    def may_match(self, words: Sequence[Word]) -> tuple[str, ...] | None:
        """Whether the command could match (deny and ask): None if not, else the words assumed."""
        if not fnmatch.fnmatchcase(words[0].value, self.name):
            return None
        assumed: list[str] = []
        have: set[str] = set()
        options = True
        for w in words[1:]:
            if w.static and w.value == "--":
                options = False
            elif w.static and options and _CLUSTER.fullmatch(w.value):
                have.update(w.value[1:])
            elif not w.static and options and w.may_be("-x") and self.flags - have:
                assumed.append(w.value)
                have.update(self.flags)
        if self.flags - have:
            return None
        i = 1
        for token in self.args:
            while i < len(words) and not words[i].may_be(token):
                i += 1
            if i == len(words):
                return None
            if not words[i].static:
                assumed.append(words[i].value)
            i += 1
        return tuple(dict.fromkeys(assumed))

    def surely_matches(self, words: Sequence[Word]) -> bool:
        """Whether the command certainly matches (allow): the rule's tokens are a prefix of it."""
        norm = _normalize(words[1:])
        if len(norm) < len(self.tokens) - 1 or not fnmatch.fnmatchcase(words[0].value, self.name):
            return False
        return all(
            fnmatch.fnmatchcase(w.value, t) if w.static else t.strip("*") == ""
            for w, t in zip(norm, self.tokens[1:], strict=False)
        )

    def matches(self, argv: Sequence[str]) -> bool:
        """Whether a static argv matches (the deny/ask sense)."""
        words = [Word(os.path.basename(argv[0]) or argv[0]), *(Word(a) for a in argv[1:])]
        return self.may_match(words) is not None


# --------------------------------------------------------------------- validator


class CommandValidator:
    """A policy's command rules, compiled once per run."""

    def __init__(self, policy: CommandPolicy) -> None:
        """Compile the rules; ``PolicyError`` names a rule that does not split with ``shlex``."""
        self.policy = policy
        self.deny = tuple(Rule.parse(r) for r in policy.deny)
        self.ask = tuple(Rule.parse(r) for r in policy.ask)
        self.allow = tuple(Rule.parse(r) for r in policy.allow)

    def check(self, line: str) -> Verdict:
        """Decide on ``line``. Never raises: anything unverifiable is a deny with the reason."""
        if "\x00" in line:
            return Verdict("deny", "denied: the command contains a NUL byte")
        if not line.strip():
            return Verdict("deny", "denied: empty command")
        if len(line) > self.policy.max_length:
            limit = self.policy.max_length
            return Verdict("deny", f"denied: the command is longer than {limit} characters")
        try:
            cmds = simple_commands(line)
        except Unverifiable as exc:
            return Verdict("deny", f"denied: {exc}")
        found = tuple(" ".join(c.argv) for c in cmds)
        ordered: tuple[tuple[Decision, tuple[Rule, ...]], ...] = (
            ("deny", self.deny),
            ("ask", self.ask),
        )
        for decision, rules in ordered:
            for cmd in cmds:
                for rule in rules:
                    assumed = rule.may_match(cmd.parts())
                    if assumed is not None:
                        reason = _reason(decision, cmd, rule, assumed)
                        return Verdict(decision, reason, rule.text, cmd.text, found)
        if self.allow:
            for cmd in cmds:
                if not cmd.wrapper and not any(r.surely_matches(cmd.parts()) for r in self.allow):
                    shown = " ".join(cmd.argv)[:80]
                    reason = f"denied: `{shown}` is not in the allow list{_where(cmd)}"
                    return Verdict("deny", reason, None, cmd.text, found)
        return Verdict("allow", "allowed", None, None, found)


def _where(cmd: SimpleCommand) -> str:
    return "" if cmd.context == "top" else f" (in: {cmd.context})"


def _reason(decision: str, cmd: SimpleCommand, rule: Rule, assumed: tuple[str, ...]) -> str:
    head = "denied" if decision == "deny" else "needs a human's approval"
    name = cmd.argv[0]
    if not assumed:
        return f"{head}: `{name}` matches {decision} rule '{rule.text}'{_where(cmd)}"
    unknown = ", ".join(f"`{a}`" for a in assumed)
    return (
        f"{head}: `{name}` may match {decision} rule '{rule.text}'{_where(cmd)}: {unknown}"
        " is not static; write the value out"
    )


def validate(line: str, policy: CommandPolicy) -> Verdict:
    """``CommandValidator(policy).check(line)`` for one-off checks."""
    return CommandValidator(policy).check(line)
