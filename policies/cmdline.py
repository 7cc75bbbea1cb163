"""Every simple command a bash line runs, found by parsing it with tree-sitter-bash.

The line is parsed with **tree-sitter-bash**, never with regular expressions: it
is a maintained, complete bash grammar (pipelines, lists, subshells, ``$(...)``,
backticks, process substitution, heredocs, functions, compound commands), so
what we check is what bash would run. Every ``command`` node anywhere in the tree
is a simple command. Strings given to ``bash -c`` / ``sh -c`` / ``eval`` /
``trap`` / ``alias`` and heredocs or here-strings fed to a shell are parsed again
(at most ``MAX_DEPTH`` levels), and wrappers (``env``, ``xargs``,
``find -exec``, ``timeout``, ``nice``, ``nohup``, ``sudo`` ...) are unwrapped
(``policies.words``) so the command they run is found too. What cannot be known
statically (a command name from a variable or a glob, ``eval "$X"``, a shell or
``source`` reading its script from a pipe or a process substitution) and what
does not parse raises ``Unverifiable``, with a reason the agent can act on.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache

import tree_sitter as ts
import tree_sitter_bash as tsb

from policies.errors import Unverifiable
from policies.words import (
    GLOB,
    PURE_WRAPPERS,
    SHELLS,
    Word,
    code_strings,
    inner_commands,
    shell_script,
)

#: How deep shell strings and wrappers may nest (``bash -c "env nice ..."``) before a line is denied.
MAX_DEPTH = 8

_BRACE = re.compile(r"(?<!\\)\{[^{}]*(,|\.\.)[^{}]*\}")
_DQ_ESCAPE = re.compile(r'\\([$`"\\\n])')
_HEREDOC_ESCAPE = re.compile(r"\\([$`\\\n])")
_BACKQUOTE = re.compile(r"(?<!\\)`")
_NUMERIC = frozenset({"$!", "$$", "$#", "$?", "${!}", "${$}", "${#}", "${?}"})


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


@lru_cache(maxsize=1)
def _parser() -> ts.Parser:
    return ts.Parser(ts.Language(tsb.language()))


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
    if not name.static or GLOB.search(_unquoted(inner, data)):
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
        scripts = shell_script(name, args, stdin)
    elif name in ("eval", "trap", "alias"):
        scripts = [(name, s) for s in code_strings(name, args)]
    else:
        inner = inner_commands(name, args)
    wrapper = (name in PURE_WRAPPERS and bool(inner)) or bool(scripts)
    out.append(SimpleCommand(argv, text, context, words, wrapper))
    for label, script in scripts:
        if not script.static:
            raise Unverifiable(f"`{label}` is given a script that is not static: `{script.value}`")
        _extract(script.value, _join(context, label), depth + 1, out)
    for label, cmd in inner:
        _unwrap(cmd, " ".join(w.value for w in cmd), _join(context, label), depth + 1, out)


def _join(context: str, label: str) -> str:
    return label if context == "top" else f"{context} > {label}"
