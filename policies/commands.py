"""Command validation: every simple command in a line, checked against deny / ask / allow rules.

The simple commands come from ``policies.cmdline`` (tree-sitter-bash; wrappers
unwrapped, shell strings parsed again); a line it cannot check statically is
denied with its reason.

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
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from policies.cmdline import SimpleCommand, simple_commands
from policies.errors import PolicyError, Unverifiable
from policies.policy import CommandPolicy
from policies.words import Word

Decision = Literal["allow", "deny", "ask"]

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

_CLUSTER = re.compile(r"-[A-Za-z]+")


@dataclass(frozen=True, slots=True)
class Verdict:
    """The decision on a line, with the reason shown to the agent and what decided it."""

    decision: Decision
    reason: str
    rule: str | None = None
    command: str | None = None
    commands: tuple[str, ...] = ()


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
