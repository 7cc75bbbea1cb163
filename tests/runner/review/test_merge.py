"""approve / merge / export through the CLI, on real runs (real Docker) of the bundled example.

Each Docker test makes its own run of the example's first story (the discount
bug) in a fresh repository, then drives the commands as a user would and checks
the user's repository afterwards: refs, index, worktree and the event chain.
The tests without the Docker mark use runs written straight into the store
(``tests.support.storefixtures``) on a real repository.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from runner.cli.app import app
from runner.loop.outcome import AttemptReport
from runner.ops.service import RunRequest, start_run
from runner.store.runs import RunStore
from sandbox.paths import worktrees_dir
from sandbox.treefs import mount_scratch_fs
from tests.support.cli import corral, corral_argv, corral_env
from tests.support.gitfixtures import commit, git
from tests.support.storefixtures import repo_with_patch, stored_run

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"
INVOICE = "src/invoicer/invoice.py"


@dataclass
class Ready:
    repo: Path
    home: Path
    run_id: str
    image: str
    tmp: Path

    def cli(self, *args: str) -> Any:
        return CliRunner().invoke(app, list(args), catch_exceptions=False)

    def head(self, ref: str = "HEAD") -> str:
        return git(self.repo, "rev-parse", ref)

    def events(self) -> list[str]:
        return [e.type for e in RunStore(self.home).events(self.run_id)]

    def verified(self) -> None:
        check = RunStore(self.home).verify(self.run_id)
        assert check.ok, check.problem


def example_repo(dest: Path) -> Path:
    subprocess.run(["bash", str(EXAMPLES / "setup.sh"), str(dest)], check=True, capture_output=True)
    return dest


def run_story(repo: Path, home: Path, image: str, story: str, **kw: Any) -> str:
    req = RunRequest(
        repo=repo,
        bug=EXAMPLES / "bugs" / f"{story}.md",
        script=EXAMPLES / "agents" / f"{story}.toml",
        image=image,
        **kw,
    )
    with mount_scratch_fs(worktrees_dir(home), size_mb=512):
        return start_run(home, req).run_id


@pytest.fixture
def ready(
    tmp_path: Path, corral_home: Path, docker_client: Any, sandbox_image: str
) -> Iterator[Ready]:
    repo = example_repo(tmp_path / "repo")
    run_id = run_story(repo, corral_home, sandbox_image, "discount")
    assert RunStore(corral_home).get(run_id).status == "ready_for_review"
    yield Ready(repo, corral_home, run_id, sandbox_image, tmp_path)


def _one_error_line(result: Any, *needles: str) -> None:
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert lines and lines[0].startswith("error:"), result.output
    text = " ".join(result.output.split())
    for needle in needles:
        assert needle in text, result.output


@pytest.mark.docker
def test_merge_an_approved_run_is_one_commit_with_trailers_and_the_users_work_untouched(
    ready: Ready,
) -> None:
    repo = ready.repo
    (repo / "README.md").write_text("local notes, not committed\n")  # dirty, untouched by the patch
    (repo / "src/invoicer/money.py").write_text(
        (repo / "src/invoicer/money.py").read_text() + "# staged\n"
    )
    git(repo, "add", "src/invoicer/money.py")  # staged work must not enter corral's commit
    (repo / "scratch.txt").write_text("untracked\n")
    old = ready.head()
    approved = ready.cli("approve", ready.run_id, "--comment", "checked the divisor")
    assert approved.exit_code == 0, approved.output
    assert RunStore(ready.home).get(ready.run_id).status == "approved"
    review = RunStore(ready.home).events(ready.run_id)[-1]
    assert review.type == "review_approved" and review.data["comment"] == "checked the divisor"
    assert review.data["by"] and review.data["at"]

    result = ready.cli("merge", ready.run_id)
    assert result.exit_code == 0, result.output
    new = ready.head()
    assert git(repo, "rev-parse", f"{new}^") == old  # one commit on top of the branch
    message = git(repo, "log", "-1", "--format=%B")
    assert message.splitlines()[0] == "A 10% discount makes the invoice free"
    assert f"Corral-Run: {ready.run_id}" in message.splitlines()
    assert "Corral-Gates: tests=passed, typecheck=passed" in message.splitlines()
    assert git(repo, "diff-tree", "--no-commit-id", "--name-only", "-r", new) == INVOICE
    assert "percent // 100" in (repo / INVOICE).read_text()
    assert git(repo, "diff", "--name-only") == "README.md"  # still the user's unstaged edit
    assert git(repo, "diff", "--cached", "--name-only") == "src/invoicer/money.py"  # still staged
    assert git(repo, "ls-files", "--others", "--exclude-standard") == "scratch.txt"
    assert (repo / "README.md").read_text() == "local notes, not committed\n"
    rec = RunStore(ready.home).get(ready.run_id)
    assert rec.status == "merged" and new in result.output
    ready.verified()


@pytest.mark.docker
def test_merge_twice_reports_the_existing_commit_and_changes_nothing(ready: Ready) -> None:
    assert ready.cli("approve", ready.run_id).exit_code == 0
    first = ready.cli("merge", ready.run_id)
    assert first.exit_code == 0, first.output
    head, events = ready.head(), ready.events()
    second = ready.cli("merge", ready.run_id)
    assert second.exit_code == 0
    assert "already merged" in second.output and head in second.output
    assert ready.head() == head and ready.events() == events
    ready.verified()


@pytest.mark.docker
def test_merge_finds_its_commit_by_trailer_when_the_event_was_lost(ready: Ready) -> None:
    """A commit made with the run's trailer (e.g. a crash before the event) is found, not redone."""
    assert ready.cli("approve", ready.run_id).exit_code == 0
    # the same repository, a copy of the store as it was just before the merge: it never
    # records the merge (the chain and the store's heads agree, as after a crash in between)
    other_home = ready.tmp / "other-home"
    shutil.copytree(ready.home, other_home, ignore=shutil.ignore_patterns("worktrees"))
    assert ready.cli("merge", ready.run_id, "--branch", "main").exit_code == 0
    head = ready.head()
    assert "merged" not in [e.type for e in RunStore(other_home).events(ready.run_id)]
    from runner.review.merge import merge

    res = merge(other_home, ready.run_id)
    assert res.already and res.commit == head and ready.head() == head
    assert RunStore(other_home).get(ready.run_id).status == "merged"


@pytest.mark.docker
def test_merge_of_an_unapproved_or_rejected_run_is_refused(ready: Ready) -> None:
    head = ready.head()
    _one_error_line(ready.cli("merge", ready.run_id), "not approved", "corral approve")
    rejected = ready.cli("reject", ready.run_id, "--comment", "wrong rounding")
    assert rejected.exit_code == 0, rejected.output
    _one_error_line(ready.cli("merge", ready.run_id), "rejected")
    assert ready.head() == head and git(ready.repo, "status", "--porcelain") == ""
    assert "merged" not in ready.events()
    ready.verified()


@pytest.mark.docker
def test_auto_merge_policy_merges_without_approval_when_every_required_gate_passed(
    tmp_path: Path, corral_home: Path, docker_client: Any, sandbox_image: str
) -> None:
    repo = example_repo(tmp_path / "repo")
    run_id = run_story(
        repo, corral_home, sandbox_image, "discount", overrides={"merge.auto_merge": True}
    )
    result = CliRunner().invoke(app, ["merge", run_id])
    assert result.exit_code == 0, result.output
    assert "Corral-Auto-Merge: every required gate passed" in git(repo, "log", "-1", "--format=%B")


@pytest.mark.docker
def test_dirty_touched_path_is_refused_naming_the_path(ready: Ready) -> None:
    assert ready.cli("approve", ready.run_id).exit_code == 0
    (ready.repo / INVOICE).write_text((ready.repo / INVOICE).read_text() + "# my edit\n")
    head = ready.head()
    _one_error_line(ready.cli("merge", ready.run_id), INVOICE, "local changes")
    assert ready.head() == head and (ready.repo / INVOICE).read_text().endswith("# my edit\n")
    assert RunStore(ready.home).get(ready.run_id).status == "approved"


@pytest.mark.docker
def test_branch_moved_in_a_conflicting_way_is_refused(ready: Ready) -> None:
    assert ready.cli("approve", ready.run_id).exit_code == 0
    text = (ready.repo / INVOICE).read_text().replace("percent // 10", "percent // 10  # fmt")
    commit(ready.repo, {INVOICE: text}, "someone else touched the same line")
    head = ready.head()
    _one_error_line(ready.cli("merge", ready.run_id), "does not apply", INVOICE)
    assert ready.head() == head and git(ready.repo, "status", "--porcelain") == ""


@pytest.mark.docker
def test_branch_moved_without_conflict_merges_on_top(ready: Ready) -> None:
    assert ready.cli("approve", ready.run_id).exit_code == 0
    commit(ready.repo, {"CHANGELOG.md": "0.3.2: nothing yet\n"}, "changelog")
    moved = ready.head()
    result = ready.cli("merge", ready.run_id)
    assert result.exit_code == 0, result.output
    assert git(ready.repo, "rev-parse", "HEAD^") == moved
    assert (ready.repo / "CHANGELOG.md").exists() and git(ready.repo, "status", "--porcelain") == ""


@pytest.mark.docker
def test_merge_onto_a_branch_that_is_not_checked_out_leaves_the_checkout_alone(
    ready: Ready,
) -> None:
    assert ready.cli("approve", ready.run_id).exit_code == 0
    git(ready.repo, "branch", "release")
    git(ready.repo, "checkout", "-q", "-b", "feature")
    (ready.repo / INVOICE).write_text("# the user's unrelated work in progress\n")
    main = ready.head("main")
    result = ready.cli("merge", ready.run_id, "--branch", "release")
    assert result.exit_code == 0, result.output
    assert git(ready.repo, "rev-parse", "release^") == main
    assert ready.head("main") == main and git(ready.repo, "branch", "--show-current") == "feature"
    assert (ready.repo / INVOICE).read_text() == "# the user's unrelated work in progress\n"
    assert "percent // 100" in git(ready.repo, "show", f"release:{INVOICE}")


@pytest.mark.docker
def test_dry_run_shows_the_plan_and_changes_nothing(ready: Ready) -> None:
    assert ready.cli("approve", ready.run_id).exit_code == 0
    head, events = ready.head(), ready.events()
    index = (ready.repo / ".git/index").read_bytes()
    result = ready.cli("merge", ready.run_id, "--dry-run")
    assert result.exit_code == 0, result.output
    assert "would commit to main" in result.output and INVOICE in result.output
    assert f"Corral-Run: {ready.run_id}" in result.output
    assert ready.head() == head and ready.events() == events
    assert (ready.repo / ".git/index").read_bytes() == index
    assert RunStore(ready.home).get(ready.run_id).status == "approved"


def test_unknown_run_id_is_one_line_and_exit_2_and_leaves_no_lock(corral_home: Path) -> None:
    for args in (
        ["merge", "no-such-run"], ["export", "no-such-run", "--patch", "/tmp/x.diff"],
        ["approve", "no-such-run"], ["reject", "no-such-run", "--comment", "no"],
    ):  # fmt: skip
        result = CliRunner().invoke(app, args)
        _one_error_line(result, "no run no-such-run", "corral list")
        assert len(result.output.strip().splitlines()) == 1
    assert not (corral_home / "locks" / "no-such-run.lock").exists()
    assert not (corral_home / "runs" / "no-such-run").exists()


@pytest.mark.docker
def test_export_patch_applies_and_pr_body_summarises(ready: Ready) -> None:
    patch, body = ready.tmp / "fix.patch", ready.tmp / "pr.md"
    result = ready.cli("export", ready.run_id, "--patch", str(patch), "--pr-body", str(body))
    assert result.exit_code == 0, result.output
    fresh = example_repo(ready.tmp / "fresh")
    subprocess.run(["git", "apply", "--check", str(patch)], cwd=fresh, check=True)
    subprocess.run(["git", "apply", str(patch)], cwd=fresh, check=True)
    assert "percent // 100" in (fresh / INVOICE).read_text()
    text = body.read_text()
    assert text.startswith("# A 10% discount makes the invoice free\n")
    assert "| tests | failed | passed |" in text and "| typecheck | passed | passed |" in text
    assert f"| `{INVOICE}` | 1 | 1 |" in text
    assert "| 1 | passed |" in text
    assert "http" not in text  # link-free


@pytest.mark.docker
def test_review_decisions_are_recorded_and_only_for_a_ready_run(ready: Ready) -> None:
    assert ready.cli("approve", ready.run_id).exit_code == 0
    again = ready.cli("approve", ready.run_id)  # like a second merge: exit 0, nothing recorded
    assert again.exit_code == 0 and "already approved; nothing changed" in again.output
    changed = ready.cli("reject", ready.run_id, "--comment", "on second thought")
    assert changed.exit_code == 0, changed.output  # a decision may change until the merge
    decisions = [
        e for e in RunStore(ready.home).events(ready.run_id) if e.type.startswith("review_")
    ]
    assert [(e.type, e.data["previous"]) for e in decisions] == [
        ("review_approved", "ready_for_review"),
        ("review_rejected", "approved"),
    ]
    assert decisions[1].data["comment"] == "on second thought"
    assert ready.cli("approve", ready.run_id).exit_code == 0
    assert ready.cli("merge", ready.run_id).exit_code == 0
    _one_error_line(ready.cli("reject", ready.run_id), "is merged")
    ready.verified()


@pytest.mark.docker
def test_merge_onto_a_branch_checked_out_in_a_linked_worktree_updates_that_worktree(
    ready: Ready,
) -> None:
    assert ready.cli("approve", ready.run_id).exit_code == 0
    linked = ready.tmp / "linked"
    git(ready.repo, "worktree", "add", "-q", "-b", "hotfix", str(linked))
    main = ready.head("main")
    result = ready.cli("merge", ready.run_id, "--branch", "hotfix")
    assert result.exit_code == 0, result.output
    assert str(linked) in " ".join(result.output.split())
    assert "percent // 100" in (linked / INVOICE).read_text()
    assert git(linked, "status", "--porcelain") == ""
    assert ready.head("main") == main and "percent // 10\n" in (ready.repo / INVOICE).read_text()


@pytest.mark.docker
def test_hidden_characters_in_the_bug_title_are_escaped_in_the_commit_message(
    tmp_path: Path, corral_home: Path, docker_client: Any, sandbox_image: str
) -> None:
    repo = example_repo(tmp_path / "repo")
    bug = tmp_path / "bug.md"
    bug.write_text("# Discount \u202egnorw\u202c is wrong\n\n10% takes off everything.\n")
    req = RunRequest(
        repo=repo, bug=bug, script=EXAMPLES / "agents/discount.toml", image=sandbox_image
    )
    with mount_scratch_fs(worktrees_dir(corral_home), size_mb=512):
        run_id = start_run(corral_home, req).run_id
    runner = CliRunner()
    assert runner.invoke(app, ["approve", run_id]).exit_code == 0
    assert runner.invoke(app, ["merge", run_id]).exit_code == 0
    subject = git(repo, "log", "-1", "--format=%s")
    assert subject == "Discount <U+202E>gnorw<U+202C> is wrong"
    assert "\u202e" not in git(repo, "log", "-1", "--format=%B")


def _approvable(tmp_path: Path, home: Path, run_id: str = "r1") -> tuple[Path, RunStore, bytes]:
    """A repository and a run of it ready for review whose candidate adds tax.py, deletes README.md."""
    repo, base, patch = repo_with_patch(
        tmp_path / "repo", {"README.md": "invoicer\n", "src/invoicer/__init__.py": ""},
        {"src/invoicer/tax.py": '"""VAT."""\n\nRATE = 20\n'}, deleted=("README.md",),
    )  # fmt: skip
    store = stored_run(
        home, run_id, status="ready_for_review", bug_title="Add VAT", repo=str(repo), base=base,
        attempts=(AttemptReport(attempt=1, status="passed"),), candidate=patch,
    )  # fmt: skip
    return repo, store, patch


def test_a_patch_that_adds_and_deletes_files_merges_both(tmp_path: Path, corral_home: Path) -> None:
    repo, store, _ = _approvable(tmp_path, corral_home)
    assert CliRunner().invoke(app, ["approve", "r1"]).exit_code == 0
    result = CliRunner().invoke(app, ["merge", "r1"])
    assert result.exit_code == 0, result.output
    assert not (repo / "README.md").exists() and (repo / "src/invoicer/tax.py").is_file()
    assert git(repo, "status", "--porcelain") == ""
    changed = git(repo, "diff-tree", "--no-commit-id", "--name-status", "-r", "HEAD")
    assert changed.splitlines() == ["D\tREADME.md", "A\tsrc/invoicer/tax.py"]
    assert store.verify("r1").ok


def test_an_approval_holds_only_for_the_candidate_reviewed(
    tmp_path: Path, corral_home: Path
) -> None:
    repo, store, patch = _approvable(tmp_path, corral_home)
    runner = CliRunner()
    assert runner.invoke(app, ["approve", "r1"]).exit_code == 0
    approval = [e for e in store.events("r1") if e.type == "review_approved"][-1]
    assert approval.data["candidate_sha256"] == hashlib.sha256(patch).hexdigest()
    head = git(repo, "rev-parse", "HEAD")
    # Someone edits the candidate after the review: merge refuses, nothing moves.
    edited = patch.replace(b"+RATE = 20", b"+RATE = 99")
    store.artifact_path("r1", "candidate.diff").write_bytes(edited)
    refused = runner.invoke(app, ["merge", "r1"])
    _one_error_line(refused, "is not the patch that was approved", "corral approve r1")
    assert len(refused.output.strip().splitlines()) == 1
    assert git(repo, "rev-parse", "HEAD") == head and (repo / "README.md").is_file()
    # Nor can the edited candidate be approved: it is not what the run's gates verified.
    not_verified = runner.invoke(app, ["approve", "r1"])
    _one_error_line(not_verified, "is not the patch the run ended with", "corral verify r1")
    # Put back, the reviewed candidate merges, and approving it twice records nothing new.
    store.artifact_path("r1", "candidate.diff").write_bytes(patch)
    again = runner.invoke(app, ["approve", "r1"])
    assert again.exit_code == 0, again.output
    assert "r1 is already approved; nothing changed; next: `corral merge r1`" in again.output
    assert [e.type for e in store.events("r1")].count("review_approved") == 1
    merged = runner.invoke(app, ["merge", "r1"])
    assert merged.exit_code == 0, merged.output
    assert "RATE = 20" in (repo / "src/invoicer/tax.py").read_text()
    assert store.verify("r1").ok


def test_merge_refuses_a_run_whose_event_log_does_not_verify(
    tmp_path: Path, corral_home: Path
) -> None:
    repo, store, _ = _approvable(tmp_path, corral_home)
    assert CliRunner().invoke(app, ["approve", "r1"]).exit_code == 0
    head = git(repo, "rev-parse", "HEAD")
    log = store.log_path("r1")
    log.write_bytes(log.read_bytes().replace(b'"Add VAT"', b'"Add TAX"'))
    refused = CliRunner().invoke(app, ["merge", "r1"])
    _one_error_line(refused, "event log of run r1 does not verify", "corral verify r1")
    assert git(repo, "rev-parse", "HEAD") == head


def test_approve_and_export_refuse_a_run_whose_event_log_does_not_verify(
    tmp_path: Path, corral_home: Path
) -> None:
    _approvable(tmp_path, corral_home)
    log = RunStore(corral_home).log_path("r1")
    log.write_bytes(log.read_bytes().replace(b'"Add VAT"', b'"Add TAX"'))
    refused = CliRunner().invoke(app, ["approve", "r1"])
    _one_error_line(refused, "event log of run r1 does not verify", "nothing approved")
    assert RunStore(corral_home).get("r1").status == "ready_for_review"
    for option, name in (("--patch", "fix.patch"), ("--pr-body", "pr.md")):
        result = CliRunner().invoke(app, ["export", "r1", option, str(tmp_path / name)])
        _one_error_line(result, "event log of run r1 does not verify", "nothing exported")
        assert not (tmp_path / name).exists()
    to_stdout = corral("export", "r1", "--patch", "-", home=corral_home)
    assert to_stdout.returncode == 2 and to_stdout.stdout == "", to_stdout.stdout


def test_export_patch_dash_writes_the_patch_alone_to_stdout(
    tmp_path: Path, corral_home: Path
) -> None:
    repo, _, patch = _approvable(tmp_path, corral_home)
    proc = subprocess.run(
        [*corral_argv("export", "r1", "--patch", "-")], env=corral_env(corral_home),
        capture_output=True, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.endswith(patch + b"-- \ncorral\n") and proc.stdout.startswith(b"From ")
    assert b"written to stdout" in proc.stderr
    applied = subprocess.run(
        ["git", "apply", "--check", "-"], cwd=repo, input=proc.stdout, capture_output=True,
        check=False,
    )  # fmt: skip
    assert applied.returncode == 0, applied.stderr
    both = corral("export", "r1", "--patch", "-", "--pr-body", "-", home=corral_home)
    assert both.returncode == 2 and "would mix on stdout" in both.stderr


def test_export_into_a_missing_folder_or_onto_a_folder_is_one_line_exit_2(
    tmp_path: Path, corral_home: Path
) -> None:
    _approvable(tmp_path, corral_home)
    cases = {
        ("--patch", str(tmp_path / "no" / "x.patch")): "does not exist; create it first",
        ("--pr-body", str(tmp_path / "no" / "pr.md")): "does not exist; create it first",
        ("--patch", str(tmp_path)): "is a directory: name a file",
    }
    for args, needle in cases.items():
        result = CliRunner().invoke(app, ["export", "r1", *args])
        _one_error_line(result, needle)
        assert len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "no").exists()
    ok = CliRunner().invoke(app, ["export", "r1", "--pr-body", str(tmp_path / "pr.md")])
    assert ok.exit_code == 0 and (tmp_path / "pr.md").read_text().startswith("# Add VAT\n")
