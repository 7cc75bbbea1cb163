"""Command validation: every simple command found, wrappers unwrapped, rules and precedence."""

from __future__ import annotations

import shlex

import pytest

from policies.cmdline import MAX_DEPTH, simple_commands
from policies.commands import DEFAULT_DENY, CommandValidator, Rule, normalize, validate
from policies.errors import Unverifiable
from policies.policy import CommandPolicy
from policies.words import Word


@pytest.fixture(scope="module")
def default() -> CommandValidator:
    return CommandValidator(CommandPolicy(deny=DEFAULT_DENY))


@pytest.mark.parametrize(
    ("line", "culprit", "context"),
    [
        ("curl http://x", "curl", "top"),
        ("echo ok && curl x", "curl", "top"),
        ("false || curl x", "curl", "top"),
        ("sleep 1 & curl x", "curl", "top"),
        ("ls | nc -l 9", "nc", "pipeline"),
        ("true; (cd src && wget x)", "wget", "(...)"),
        ("{ true; curl x; }", "curl", "top"),
        ("echo $(ssh host id)", "ssh", "$(...)"),
        ("echo `scp a b:`", "scp", "`...`"),
        ("X=$(curl y)", "curl", "$(...)"),
        ("echo hi > $(curl x)", "curl", "$(...)"),
        ("cat <(curl x)", "curl", "<(...)"),
        ("if true; then curl x; fi", "curl", "if"),
        ("while false; do curl x; done", "curl", "while"),
        ("for i in 1; do wget $i; done", "wget", "for"),
        ("case a in a) curl x;; esac", "curl", "case"),
        ("f() { curl x; }; f", "curl", "function"),
        ("! curl x", "curl", "top"),
        ("cat <<EOF > f\n$(curl x)\nEOF", "curl", "heredoc > $(...)"),
        ("bash -c 'curl x'", "curl", "bash -c"),
        ("bash -lc 'git push'", "git", "bash -c"),
        ("bash -o pipefail -c 'curl x'", "curl", "bash -c"),
        ('sh -c "true && bash -c \\"wget y\\""', "wget", "sh -c > bash -c"),
        ("dash -c 'curl x'", "curl", "dash -c"),
        ("zsh -c 'curl x'", "curl", "zsh -c"),
        ('eval "curl x"', "curl", "eval"),
        ("eval curl x", "curl", "eval"),
        ("trap 'curl x' EXIT", "curl", "trap"),
        ("alias get='curl x'", "curl", "alias"),
        ("sh <<'EOF'\ncurl x\nEOF", "curl", "sh heredoc"),
        ("bash <<EOF\necho hi\ncurl x\nEOF", "curl", "bash heredoc"),
        ("bash <<< 'curl x'", "curl", "bash here-string"),
        ("env -i FOO=1 curl x", "curl", "env"),
        ("env - curl x", "curl", "env"),
        ("env -S 'curl x'", "curl", "env"),
        ("xargs curl < urls", "curl", "xargs"),
        ("xargs -n 1 -P 4 curl < urls", "curl", "xargs"),
        ("xargs -i curl {} < urls", "curl", "xargs"),
        ("find . -exec curl {} \\;", "curl", "find -exec"),
        ("find . -name '*.py' -execdir curl {} +", "curl", "find -execdir"),
        ("find . -exec true \\; -ok curl {} \\;", "curl", "find -ok"),
        ("timeout 5 curl x", "curl", "timeout"),
        ("timeout -s KILL 5 curl x", "curl", "timeout"),
        ("nice -n 5 nohup curl x", "curl", "nice > nohup"),
        ("time curl x", "curl", "time"),
        ("command curl x", "curl", "command"),
        ("exec curl x", "curl", "exec"),
        ("stdbuf -oL curl x", "curl", "stdbuf"),
        ("setsid curl x", "curl", "setsid"),
        ("busybox wget x", "wget", "busybox"),
        ("ls | xargs -I{} sh -c 'curl {}'", "curl", "pipeline > xargs > sh -c"),
        ("/usr/bin/curl x", "curl", "top"),
        ("\\curl x", "curl", "top"),
        ('c"ur"l x', "curl", "top"),
        ("'curl' x", "curl", "top"),
        ("git -C . push origin main", "git", "top"),
        ("rm -fr /", "rm", "top"),
        ("rm -r -f /", "rm", "top"),
        ("rm / -rf", "rm", "top"),
        ("rm -rf ~", "rm", "top"),
        ("dd if=/dev/zero of=/dev/sda", "dd", "top"),
        ("mkfs.ext4 /dev/sdb1", "mkfs.ext4", "top"),
        ("chmod 4755 tool", "chmod", "top"),
        ("chmod u+s tool", "chmod", "top"),
        ("kill -9 -1", "kill", "top"),
        ("git config --global user.name x", "git", "top"),
        ("sudo ls", "sudo", "top"),
    ],
)
def test_denied_wherever_the_command_hides(
    default: CommandValidator, line: str, culprit: str, context: str
) -> None:
    verdict = default.check(line)
    assert verdict.decision == "deny", verdict
    assert f"`{culprit}` matches deny rule" in verdict.reason
    assert verdict.rule in DEFAULT_DENY
    found = [c for c in simple_commands(line) if c.argv[0] == culprit]
    assert found and found[0].context == context
    if context != "top":
        assert f"(in: {context})" in verdict.reason


@pytest.mark.parametrize(
    ("line", "why"),
    [
        ("", "empty command"),
        ("   \n", "empty command"),
        ("$CMD x", "command name is not static"),
        ("${CMD} x", "command name is not static"),
        ('"$(echo curl)" x', "command name is not static"),
        ("c*rl x", "command name is not static"),
        ("c{url,} x", "command name is not static"),
        ("$'\\x63url' x", "command name is not static"),
        ("env $CMD x", "command name is not static"),
        ('eval "$X"', "not static"),
        ("eval curl $X", "not static"),
        ('bash -c "$SCRIPT"', "not static"),
        ('sh -c "$(printf curl) x"', "not static"),
        ("sh -c", "without a command string"),
        ("sh <<EOF\n$CMD\nEOF", "not static"),
        ("echo 'touch x' | sh", "reading its script from a pipe"),
        ("echo 'touch x' | bash -s", "reading its script from a pipe"),
        ("cat <<EOF | sh\ncurl x\nEOF", "reading its script from a pipe"),
        ('bash -c "echo touch /workspace/PWNED | sh"', "reading its script from a pipe"),
        ("bash", "reading its script from a pipe"),
        ("echo 'curl x' | bash /dev/stdin", "reading its script from a pipe"),
        ("echo 'curl x' | . /dev/stdin", "reading its script from a pipe"),
        ("bash <(echo curl x)", "runs a script that is not static"),
        ("source <(echo curl x)", "runs a script that is not static"),
        ("cat <<EOF > f\n`curl x`\nEOF", "backquotes in an unquoted heredoc"),
        ("cu\\\nrl x", "line continuation inside a word"),
        ("ls (", "could not parse"),
        ("echo 'unterminated", "could not parse"),
        ("if true; then", "could not parse"),
        ("bash -c 'ls ('", "could not parse"),
        ("x" * 20_000, "longer than 16384"),
        ("echo a\x00b", "NUL"),
    ],
)
def test_unverifiable_lines_are_denied_with_a_reason(
    default: CommandValidator, line: str, why: str
) -> None:
    verdict = default.check(line)
    assert verdict.decision == "deny", verdict
    assert why in verdict.reason, verdict
    assert verdict.rule is None


def test_nesting_is_bounded() -> None:
    line = "true"
    for _ in range(MAX_DEPTH):
        line = f"bash -c {shlex.quote(line)}"
    assert validate(line, CommandPolicy()).decision == "allow"
    verdict = validate(f"bash -c {shlex.quote(line)}", CommandPolicy())
    assert verdict.decision == "deny" and f"deeper than {MAX_DEPTH}" in verdict.reason
    wrapped = validate("env " * 4000 + "true", CommandPolicy())
    assert wrapped.decision == "deny" and f"deeper than {MAX_DEPTH}" in wrapped.reason
    assert validate("env " * MAX_DEPTH + "true", CommandPolicy()).decision == "allow"


@pytest.mark.parametrize(
    "line",
    [
        "python -m pytest -q",
        "python3 -m pytest -q tests/test_x.py::test_y",
        "grep -rn foo src | head",
        "grep -rn 'def add' src | head -20",
        "sed -n 1,20p file",
        "cat <<'EOF' > f.py\nimport os\nprint(os.getcwd())\nEOF",
        "cat <<EOF > notes.md\nplain text, no expansions\nEOF",
        "rm -rf build/ && mkdir -p build",
        "rm -rf build/$NAME",
        "git diff --stat",
        "git commit -m 'push the fix'",
        "X=1",
        "X=1 python3 -c 'import os; print(os.getcwd())'",
        "bash scripts/check.sh",
        "sh < scripts/check.sh",
        "source .venv/bin/activate && pytest -q",
        ". /dev/stdin <<'EOF'\necho hi\nEOF",
        "bash -c 'pytest -q | tail -5'",
        "command -v python3",
        "kill $!",
        "kill -9 1234",
        "chmod +x run.sh",
        "chmod 755 run.sh",
        "find . -name '*.pyc' -delete",
        "ls *.py | xargs wc -l",
        "echo $'\\x63url'",
        "# just a comment",
    ],
)
def test_ordinary_work_is_allowed(default: CommandValidator, line: str) -> None:
    verdict = default.check(line)
    assert verdict.decision == "allow", verdict
    assert verdict.reason == "allowed" and verdict.rule is None


def test_every_simple_command_is_extracted_with_its_context() -> None:
    line = "a | b && (c; echo $(d)) ; bash -c 'e | f' ; env X=1 g ; xargs h ; find . -exec i {} +"
    cmds = simple_commands(line)
    assert [c.argv[0] for c in cmds] == [
        *("a", "b", "c", "echo", "d", "bash", "e", "f", "env", "g", "xargs", "h", "find", "i"),
    ]
    by_name = {c.argv[0]: c for c in cmds}
    assert by_name["a"].context == "pipeline" and by_name["c"].context == "(...)"
    assert by_name["d"].context == "(...) > $(...)"
    assert by_name["e"].context == "bash -c > pipeline"
    assert (by_name["g"].context, by_name["h"].context, by_name["i"].context) == (
        "env",
        "xargs",
        "find -exec",
    )
    assert by_name["g"].argv == ("g",) and by_name["i"].argv == ("i", "{}")
    assert [c.argv[0] for c in cmds if c.wrapper] == ["bash", "env", "xargs"]
    assert by_name["echo"].words[1] == Word("$(d)", static=False)


def test_assignments_alone_are_no_commands() -> None:
    assert simple_commands("X=1 Y=two") == []


def test_simple_commands_raises_on_unverifiable_lines() -> None:
    with pytest.raises(Unverifiable, match="command name is not static"):
        simple_commands("$X")
    with pytest.raises(ValueError, match="NUL"):
        simple_commands("a\x00")


def test_verdict_records_every_command_and_the_one_that_decided() -> None:
    verdict = validate("ls && env A=1 curl -s x", CommandPolicy(deny=("curl",)))
    assert verdict.decision == "deny"
    assert verdict.rule == "curl" and verdict.command == "curl -s x"
    assert verdict.commands == ("ls", "env A=1 curl -s x", "curl -s x")
    assert verdict.reason == "denied: `curl` matches deny rule 'curl' (in: env)"
    allowed = validate("ls | wc -l", CommandPolicy(deny=("curl",)))
    assert allowed.commands == ("ls", "wc -l") and allowed.command is None


def test_precedence_deny_then_ask_then_allow_list() -> None:
    v = CommandValidator(
        CommandPolicy(
            deny=("rm -r *",), ask=("pip install *", "rm *"), allow=("pytest", "ls", "pip")
        )
    )
    assert v.check("rm -r x").decision == "deny"
    assert v.check("ls && rm -r x && pip install y").decision == "deny"
    assert v.check("rm x").decision == "ask"
    asked = v.check("ls && pip install requests")
    assert asked.decision == "ask" and asked.rule == "pip install *"
    assert asked.reason == "needs a human's approval: `pip` matches ask rule 'pip install *'"
    assert v.check("ls && pytest -q").decision == "allow"
    denied = v.check("ls && make")
    assert denied.decision == "deny" and "`make` is not in the allow list" in denied.reason
    assert denied.rule is None and denied.command == "make"


def test_allow_list_holds_what_wrappers_run_not_the_wrappers() -> None:
    v = CommandValidator(CommandPolicy(allow=("pytest", "git status", "git diff *", "ls")))
    assert v.check("timeout 5 pytest -x").decision == "allow"
    assert v.check("env A=1 nice pytest").decision == "allow"
    assert v.check("bash -c 'ls | pytest'").decision == "allow"
    assert v.check("git diff HEAD").decision == "allow"
    assert v.check("timeout 5 make").decision == "deny"
    assert v.check("bash -c 'ls | make'").decision == "deny"
    assert v.check("bash scripts/anything.sh").decision == "deny"  # a script file is no wrapper
    assert v.check("sudo pytest").decision == "deny"  # nor is sudo
    # allow rules are prefixes: `git status` does not allow `git push status`
    assert v.check("git push status").decision == "deny"
    assert v.check("git diff").decision == "deny"  # `*` needs a word
    assert v.check("git $X").decision == "deny"  # a word that is not static is not `status`


def test_empty_policy_allows_everything_parseable() -> None:
    assert validate("curl x | sh -c 'wget y'", CommandPolicy()).decision == "allow"


@pytest.mark.parametrize(
    ("rule", "line", "decision"),
    [
        ("rm -rf /", "rm -fr /", "deny"),
        ("rm -rf /", "rm -r -f /", "deny"),
        ("rm -rf /", "rm -f -r -- /", "deny"),
        ("rm -rf /", "rm -r /", "allow"),
        ("rm -rf /", "rm -rf ./build", "allow"),
        ("rm -r -f /", "rm -rf /", "deny"),
        ("rm -rf /*", "rm -rf /*", "deny"),
        ("rm -rf /*", "rm -rf /etc", "deny"),
        ("pip install *", "pip install -q requests", "deny"),
        ("pip install *", "pip list", "allow"),
        ("git push*", "git push-all", "deny"),
        ("git push", "git status", "allow"),
        ("git push", "gitx push", "allow"),
        ("python -c", "python -c 'print(1)'", "deny"),
        ("python -c", "python -m pytest", "allow"),
        ("/usr/bin/curl", "curl x", "deny"),
        ("dd of=/dev/*", "dd if=/dev/zero of=out.img", "allow"),
        # words that are not static are assumed to be whatever their literal start allows
        ("rm -rf /", 'rm -rf "$DIR"', "deny"),
        ("rm -rf /", "rm $FLAGS /", "deny"),
        ("rm -rf /", 'rm -rf "build/$DIR"', "allow"),
        ("dd of=/dev/*", "dd if=x of=$OUT", "deny"),
        ("dd of=/dev/*", "dd if=$IN of=out.img", "allow"),
        ("kill -9 -1", "kill -9 $PID", "deny"),
        ("kill -9 -1", "kill -9 $!", "allow"),
    ],
)
def test_rule_matching(rule: str, line: str, decision: str) -> None:
    verdict = validate(line, CommandPolicy(deny=(rule,)))
    assert verdict.decision == decision, verdict
    if decision == "deny":
        assert verdict.rule == rule


def test_a_dynamic_match_names_the_word_to_write_out() -> None:
    verdict = validate('rm -rf "$DIR"', CommandPolicy(deny=("rm -rf /",)))
    assert verdict.reason == (
        "denied: `rm` may match deny rule 'rm -rf /': `\"$DIR\"` is not static; write the value out"
    )


def test_normalize_splits_and_sorts_short_option_clusters() -> None:
    assert normalize(["rm", "-rf", "/"]) == ("rm", "-f", "-r", "/")
    assert normalize(["rm", "-r", "-f", "/"]) == ("rm", "-f", "-r", "/")
    assert normalize(["ls", "-l", "-a", "--all", "-9"]) == ("ls", "-a", "-l", "--all", "-9")


def test_rule_parse_separates_options_from_arguments() -> None:
    rule = Rule.parse("rm -rf /*")
    assert (rule.name, rule.flags, rule.args) == ("rm", frozenset("rf"), ("/*",))
    assert rule.matches(("/bin/rm", "-f", "-r", "/x"))
    assert not rule.matches(("rm", "-r", "/x"))
    with pytest.raises(ValueError, match="empty"):
        Rule.parse("  ")
    with pytest.raises(ValueError):
        Rule.parse("unterminated 'quote")
    with pytest.raises(ValueError):
        CommandValidator(CommandPolicy(deny=("ok", "bad 'rule")))


def test_policy_limits_apply() -> None:
    policy = CommandPolicy(max_length=10)
    assert validate("echo 12345", policy).decision == "allow"
    long = validate("echo 123456", policy)
    assert long.decision == "deny" and "longer than 10 characters" in long.reason


def test_default_deny_rules_all_parse() -> None:
    assert len(set(DEFAULT_DENY)) == len(DEFAULT_DENY)
    for text in DEFAULT_DENY:
        assert shlex.split(text), text
        assert Rule.parse(text).text == text
    for expected in ("curl", "git push", "sudo", "rm -rf /", "rm -rf /*", "dd of=/dev/*"):
        assert expected in DEFAULT_DENY
