"""Command validation: every simple command found, wrappers unwrapped, rules and precedence."""

from __future__ import annotations

import shlex

import pytest

from policies.commands import CommandValidator, Rule, normalize, simple_commands
from policies.load import load_policy
from policies.model import CommandPolicy


@pytest.fixture(scope="module")
def default() -> CommandValidator:
    return CommandValidator(load_policy("default").policy.commands)


@pytest.mark.parametrize(
    ("line", "culprit"),
    [
        ("curl http://x", "curl"),
        ("echo ok && curl x", "curl"),
        ("true; (cd src && wget x)", "wget"),
        ("ls | nc -l 9", "nc"),
        ("echo $(ssh host id)", "ssh"),
        ("echo `scp a b:`", "scp"),
        ("cat <(curl x)", "curl"),
        ("bash -c 'curl x'", "curl"),
        ('sh -c "true && bash -c \\"wget y\\""', "wget"),
        ("bash -lc 'git push'", "git"),
        ("env -i FOO=1 curl x", "curl"),
        ("xargs -n 1 curl < urls", "curl"),
        ("find . -name '*.py' -exec curl {} \\;", "curl"),
        ("timeout -s KILL 5 curl x", "curl"),
        ("nice -n 5 nohup curl x", "curl"),
        ("/usr/bin/curl x", "curl"),
        ("\\curl x", "curl"),
        ('c"ur"l x', "curl"),
        ("if true; then curl x; fi", "curl"),
        ("for i in 1; do wget $i; done", "wget"),
        ("f() { curl x; }; f", "curl"),
        ('eval "curl x"', "curl"),
        ("sh <<'EOF'\ncurl x\nEOF", "curl"),
        ("bash <<< 'curl x'", "curl"),
        ("git -C . push origin main", "git"),
        ("rm -fr /", "rm"),
        ("rm -r -f /", "rm"),
        ("dd if=/dev/zero of=/dev/sda", "dd"),
        ("chmod 4755 tool", "chmod"),
        ("sudo ls", "sudo"),
    ],
)
def test_denied_wherever_the_command_hides(
    default: CommandValidator, line: str, culprit: str
) -> None:
    verdict = default.check(line)
    assert verdict.decision == "deny", verdict
    assert f"`{culprit}` matches deny rule" in verdict.reason


@pytest.mark.parametrize(
    ("line", "why"),
    [
        ("", "empty command"),
        ("$CMD x", "command name is not static"),
        ('"$(echo curl)" x', "command name is not static"),
        ('eval "$X"', "not static"),
        ('bash -c "$SCRIPT"', "not static"),
        ("echo 'touch x' | sh", "read its script from a pipe"),
        ('bash -c "echo touch /workspace/PWNED | sh"', "read its script from a pipe"),
        ("ls (", "could not parse"),
        ("echo 'unterminated", "could not parse"),
        ("x" * 20_000, "longer than"),
        ("echo a\x00b", "NUL"),
    ],
)
def test_unverifiable_lines_are_denied_with_a_reason(
    default: CommandValidator, line: str, why: str
) -> None:
    verdict = default.check(line)
    assert verdict.decision == "deny" and why in verdict.reason, verdict


@pytest.mark.parametrize(
    "line",
    [
        "python3 -m pytest -q",
        "grep -rn 'def add' src | head -20",
        "sed -n 1,20p src/calc.py",
        "cat <<'EOF' > src/new.py\nprint('hi')\nEOF",
        "rm -rf build/ && mkdir -p build",
        "git diff --stat",
        "X=1 python3 -c 'import os; print(os.getcwd())'",
        "bash scripts/check.sh",
        "command -v python3",
    ],
)
def test_ordinary_work_is_allowed(default: CommandValidator, line: str) -> None:
    assert default.check(line).decision == "allow", default.check(line)


def test_every_simple_command_is_extracted_with_its_context() -> None:
    cmds = simple_commands("a | b && (c; echo $(d)) ; bash -c 'e | f' ; env X=1 g")
    assert [c.argv[0] for c in cmds] == ["a", "b", "c", "echo", "d", "bash", "e", "f", "env", "g"]
    assert {c.context for c in cmds if c.argv[0] in ("e", "f")} == {"bash -c"}
    assert [c.wrapper for c in cmds if c.argv[0] in ("bash", "env")] == [True, True]


def test_precedence_deny_then_ask_then_allow_list() -> None:
    v = CommandValidator(
        CommandPolicy(
            deny=("rm -r *",), ask=("pip install *", "rm *"), allow=("pytest", "ls", "pip")
        )
    )
    assert v.check("rm -r x").decision == "deny"
    assert v.check("rm x").decision == "ask"
    assert v.check("pip install requests").decision == "ask"
    assert v.check("ls && pytest -q").decision == "allow"
    denied = v.check("ls && make")
    assert denied.decision == "deny" and "not in the allow list" in denied.reason
    assert (
        v.check("timeout 5 pytest").decision == "allow"
    )  # wrappers are not held to the allow list


def test_rules_normalize_flags_and_match_in_order() -> None:
    assert normalize(["rm", "-rf", "/"]) == ("rm", "-f", "-r", "/")
    assert normalize(["ls", "-l", "-a", "--all", "-9"]) == ("ls", "-a", "-l", "--all", "-9")
    rule = Rule.parse("git push")
    assert rule.matches(("git", "push")) and rule.matches(("git", "-C", ".", "push", "origin"))
    assert not rule.matches(("git", "status")) and not rule.matches(("gitx", "push"))
    assert Rule.parse("mkfs*").matches(("mkfs.ext4", "/dev/x"))


def test_default_deny_rules_all_parse() -> None:
    for rule in load_policy("default").policy.commands.deny:
        assert shlex.split(rule), rule
        Rule.parse(rule)
