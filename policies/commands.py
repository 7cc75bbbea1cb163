"""Command validation: every simple command in a line, checked against deny / ask / allow rules.

The line is parsed with **tree-sitter-bash** (a maintained, complete bash
grammar: pipelines, lists, subshells, ``$(...)``, backticks, process
substitution, heredocs, functions, compound commands), never with regular
expressions. Every ``command`` node anywhere in the tree is a simple command;
strings given to ``bash -c`` / ``sh -c`` / ``eval`` and heredocs fed to a shell
are parsed again (depth-bounded), and wrappers (``env``, ``xargs``,
``find -exec``, ``timeout``, ``nice``, ``nohup``, ``sudo`` ...) are unwrapped so
the command they run is checked too. What cannot be known statically (a
command name from a variable, ``eval "$X"``, a shell reading its script from a
pipe) and what does not parse is denied with a reason.

Rules are ``shlex`` token lists. The first token matches the command's name
(its basename; ``fnmatch`` patterns allowed); the remaining tokens must match
arguments in the same order, not necessarily adjacent (``git push`` matches
``git -C . push origin``; ``dd of=/dev/*`` matches ``dd if=x of=/dev/sda``).
Short-option clusters are split and sorted on both sides, so ``rm -fr /``,
``rm -r -f /`` and the rule ``rm -rf /`` agree. Precedence: any deny -> deny;
else any ask -> ask; else, with a non-empty allow list, a command matching no
allow rule -> deny; else allow. Wrappers are checked against deny and ask,
the commands they run against all three.

This is defence in depth and a record of intent. **The sandbox is the
boundary** (no network, non-root, read-only mounts, limits): a command the
validator misses still runs inside it.
"""

from __future__ import annotations

import fnmatch
import os
import shlex
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

import tree_sitter as ts
import tree_sitter_bash as tsb

from policies.model import CommandPolicy

Decision = Literal["allow", "deny", "ask"]
MAX_DEPTH = 8
SHELLS = frozenset({"sh", "bash", "dash", "zsh", "ksh", "ash", "mksh", "busybox-sh"})
_PLAIN_WRAPPERS = frozenset({"nohup", "time", "command", "builtin", "setsid", "exec", "busybox"})


class Unverifiable(Exception):
    """The line cannot be checked statically; the message is the reason given to the agent."""


@dataclass(frozen=True, slots=True)
class SimpleCommand:
    """One simple command: its static argv, its source text, and where it was found."""

    argv: tuple[str, ...]
    text: str
    context: str
    wrapper: bool = False


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
    """Every simple command in ``line``; ``Unverifiable`` when that cannot be known."""
    out: list[SimpleCommand] = []
    _extract(line, "top", 0, out)
    return out


def _extract(script: str, context: str, depth: int, out: list[SimpleCommand]) -> None:
    if depth > MAX_DEPTH:
        raise Unverifiable(f"shell strings nested deeper than {MAX_DEPTH} levels")
    data = script.encode()
    tree = _parser().parse(data)
    if tree.root_node.has_error:
        raise Unverifiable("could not parse the command line; simplify it")
    for node in _walk(tree.root_node):
        if node.type == "command":
            _command(node, data, context, depth, out)


def _walk(node: ts.Node) -> Iterator[ts.Node]:
    stack = [node]
    while stack:
        n = stack.pop()
        yield n
        stack.extend(reversed(n.children))


def _text(node: ts.Node, data: bytes) -> str:
    return data[node.start_byte : node.end_byte].decode(errors="replace")


def _static(node: ts.Node, data: bytes) -> str | None:
    """The value of a word if it has no expansion; None if it does."""
    t = node.type
    if t in ("word", "number", "command_name"):
        if t == "command_name" and node.named_child_count:
            child = node.named_children[0]
            return _static(child, data)
        return _unescape(_text(node, data))
    if t == "raw_string":
        return _text(node, data)[1:-1]
    if t == "string":
        parts = []
        for child in node.named_children:
            if child.type != "string_content":
                return None
            parts.append(_text(child, data))
        return _unescape_dq("".join(parts)) if node.named_child_count else ""
    if t == "ansi_c_string":
        return None
    if t == "concatenation":
        parts = []
        for child in node.named_children:
            value = _static(child, data)
            if value is None:
                return None
            parts.append(value)
        return "".join(parts)
    return None


def _unescape(word: str) -> str:
    out, i = [], 0
    while i < len(word):
        if word[i] == "\\" and i + 1 < len(word):
            out.append(word[i + 1])
            i += 2
        else:
            out.append(word[i])
            i += 1
    return "".join(out)


def _unescape_dq(s: str) -> str:
    for a, b in (('\\"', '"'), ("\\\\", "\\"), ("\\$", "$"), ("\\`", "`")):
        s = s.replace(a, b)
    return s


def _command(
    node: ts.Node, data: bytes, context: str, depth: int, out: list[SimpleCommand]
) -> None:
    name_node = node.child_by_field_name("name")
    if name_node is None:
        return  # only assignments
    words: list[str] = []
    for child in [name_node, *node.children_by_field_name("argument")]:
        value = _static(child, data)
        if value is None:
            if child is name_node:
                raise Unverifiable(f"command name is not static: {_text(child, data)!r}")
            value = "\x00dynamic"  # an argument we cannot know: matches no rule token
        words.append(value)
    text = _text(node, data)
    heredoc = _heredoc(node, data)
    _unwrap(tuple(words), text, context, depth, out, heredoc)


def _heredoc(node: ts.Node, data: bytes) -> str | None:
    """The static body of a heredoc or herestring attached to ``node``'s statement, if any."""
    parent = node.parent
    scope = parent if parent is not None and parent.type == "redirected_statement" else node
    for child in _walk(scope):
        if child.type == "heredoc_body":
            if any(c.type not in ("heredoc_content",) for c in child.named_children):
                return "\x00dynamic"
            return _text(child, data)
        if child.type == "herestring_redirect":
            value = child.named_children[-1] if child.named_children else None
            static = _static(value, data) if value is not None else None
            return "\x00dynamic" if static is None else static
    return None


def _unwrap(
    argv: tuple[str, ...],
    text: str,
    context: str,
    depth: int,
    out: list[SimpleCommand],
    heredoc: str | None = None,
) -> None:
    """Record ``argv`` and, for a wrapper, the command it runs (recursively)."""
    if not argv:
        return
    name = os.path.basename(argv[0])
    argv = (name, *argv[1:])
    inner, kind = _inner(argv)
    out.append(SimpleCommand(argv, text, context, wrapper=inner is not None or kind == "shell"))
    if kind == "shell":
        script = inner[0] if inner else heredoc
        if script is None:
            if len(argv) > 1 and not argv[-1].startswith("-"):
                return  # runs a script file: its content is the sandbox's business
            raise Unverifiable(f"`{name}` would read its script from a pipe or stdin")
        if "\x00dynamic" in script:
            raise Unverifiable(f"`{name}` is given a script that is not static")
        _extract(script, f"{name} -c" if inner else f"{name} heredoc", depth + 1, out)
    elif kind == "eval":
        script = " ".join(argv[1:])
        if "\x00dynamic" in script:
            raise Unverifiable("`eval` of a value that is not static")
        _extract(script, "eval", depth + 1, out)
    elif inner:
        _unwrap(tuple(inner), text, f"{context}>{name}", depth, out)


def _inner(argv: tuple[str, ...]) -> tuple[list[str] | None, str]:
    """(the command a wrapper runs, kind): kind is shell, eval, wrapper or plain."""
    name, args = argv[0], list(argv[1:])
    if name in SHELLS:
        for i, a in enumerate(args):
            if a.startswith("-") and not a.startswith("--") and "c" in a[1:]:
                return (args[i + 1 : i + 2] or [""]), "shell"
            if not a.startswith("-"):
                break
        return None, "shell"
    if name == "eval":
        return None, "eval"
    if name == "env":
        rest = _skip_opts(
            args, with_value={"-u", "--unset", "-C", "--chdir", "-S", "--split-string"}
        )
        while rest and "=" in rest[0] and not rest[0].startswith("="):
            rest = rest[1:]
        return (rest or None), "wrapper"
    if name == "xargs":
        opts = {
            "-I",
            "-i",
            "-n",
            "-P",
            "-d",
            "-L",
            "-l",
            "-s",
            "-a",
            "-E",
            "-e",
            "--delimiter",
            "--max-args",
            "--max-procs",
            "--arg-file",
            "--replace",
        }
        rest = _skip_opts(args, with_value=opts)
        return (rest or ["echo"]), "wrapper"
    if name == "find":
        for i, a in enumerate(args):
            if a in ("-exec", "-execdir", "-ok", "-okdir"):
                end = next((j for j in range(i + 1, len(args)) if args[j] in (";", "+")), len(args))
                return args[i + 1 : end] or None, "wrapper"
        return None, "plain"
    if name == "timeout":
        rest = _skip_opts(args, with_value={"-s", "--signal", "-k", "--kill-after"})
        return (rest[1:] or None), "wrapper"
    if name in ("nice", "ionice"):
        return (
            _skip_opts(args, with_value={"-n", "--adjustment", "-c", "--class"}) or None
        ), "wrapper"
    if name in ("sudo", "doas"):
        return (
            _skip_opts(args, with_value={"-u", "-g", "-C", "-D", "-h", "-p", "-r", "-t", "-U"})
            or None
        ), "wrapper"
    if name == "stdbuf":
        return (_skip_opts(args, with_value={"-i", "-o", "-e"}) or None), "wrapper"
    if name in ("taskset", "chrt"):
        rest = _skip_opts(args, with_value=set())
        return (rest[1:] or None), "wrapper"
    if name in _PLAIN_WRAPPERS:
        rest = _skip_opts(args, with_value={"-a"})
        if name == "command" and any(a in ("-v", "-V") for a in args[:1]):
            return None, "plain"
        return (rest or None), "wrapper"
    return None, "plain"


def _skip_opts(args: list[str], with_value: set[str]) -> list[str]:
    i = 0
    while i < len(args) and args[i].startswith("-") and args[i] != "-":
        if args[i] == "--":
            return args[i + 1 :]
        if args[i] in with_value:
            i += 1
        i += 1
    return args[i:]


# --------------------------------------------------------------------- rules


def normalize(tokens: Sequence[str]) -> tuple[str, ...]:
    """Split short-option clusters (``-rf`` -> ``-f -r``) and sort runs of single-letter flags."""
    flat: list[str] = []
    for tok in tokens:
        if len(tok) > 2 and tok[0] == "-" and tok[1] != "-" and tok[1:].isalpha():
            flat.extend(f"-{c}" for c in tok[1:])
        else:
            flat.append(tok)
    out: list[str] = []
    run: list[str] = []
    for tok in [*flat, "\x00end"]:
        if len(tok) == 2 and tok[0] == "-" and tok[1].isalpha():
            run.append(tok)
            continue
        out.extend(sorted(run))
        run = []
        out.append(tok)
    return tuple(out[:-1])


@dataclass(frozen=True, slots=True)
class Rule:
    """A compiled rule: the original text and its normalized tokens."""

    text: str
    tokens: tuple[str, ...]

    @classmethod
    def parse(cls, text: str) -> Rule:
        tokens = shlex.split(text)
        if not tokens:
            raise ValueError(f"empty command rule {text!r}")
        return cls(text, normalize(tokens))

    def matches(self, argv: tuple[str, ...]) -> bool:
        words = normalize(argv)
        if not fnmatch.fnmatchcase(words[0], self.tokens[0]):
            return False
        i = 1
        for want in self.tokens[1:]:
            while i < len(words) and not fnmatch.fnmatchcase(words[i], want):
                i += 1
            if i == len(words):
                return False
            i += 1
        return True


class CommandValidator:
    """A policy's command rules, compiled once per run."""

    def __init__(self, policy: CommandPolicy) -> None:
        self.policy = policy
        self.deny = [Rule.parse(r) for r in policy.deny]
        self.ask = [Rule.parse(r) for r in policy.ask]
        self.allow = [Rule.parse(r) for r in policy.allow]

    def check(self, line: str) -> Verdict:
        """Decide on ``line``. Never raises: anything unverifiable is a deny with the reason."""
        if not line.strip():
            return Verdict("deny", "denied: empty command")
        if "\x00" in line:
            return Verdict("deny", "denied: the command contains a NUL byte")
        if len(line) > self.policy.max_length:
            return Verdict("deny", f"denied: longer than {self.policy.max_length} characters")
        try:
            cmds = simple_commands(line)
        except Unverifiable as exc:
            return Verdict("deny", f"denied: {exc}")
        found = tuple(" ".join(c.argv) for c in cmds)
        for cmd in cmds:
            for rule in self.deny:
                if rule.matches(cmd.argv):
                    where = "" if cmd.context == "top" else f" (in: {cmd.context})"
                    return Verdict(
                        "deny",
                        f"denied: `{cmd.argv[0]}` matches deny rule '{rule.text}'{where}",
                        rule.text,
                        cmd.text,
                        found,
                    )
        for cmd in cmds:
            for rule in self.ask:
                if rule.matches(cmd.argv):
                    return Verdict(
                        "ask",
                        f"needs a human: matches ask rule '{rule.text}'",
                        rule.text,
                        cmd.text,
                        found,
                    )
        if self.allow:
            for cmd in cmds:
                if cmd.wrapper:
                    continue
                if not any(rule.matches(cmd.argv) for rule in self.allow):
                    return Verdict(
                        "deny",
                        f"denied: `{' '.join(cmd.argv)[:80]}` is not in the allow list",
                        None,
                        cmd.text,
                        found,
                    )
        return Verdict("allow", "allowed", None, None, found)


def validate(line: str, policy: CommandPolicy) -> Verdict:
    """``CommandValidator(policy).check(line)`` for one-off checks."""
    return CommandValidator(policy).check(line)
