"""Claude Code PreToolUse hook: ask corral's command validator (on the host) about a Bash command.

Standard library only (it runs in the sandbox, where corral is not installed).
Reads the hook's JSON from stdin, posts the command to ``CORRAL_VALIDATE_URL``
(the gateway, through the forwarder) and denies the tool call unless the
answer is ``allow``. Anything unexpected (no answer, bad JSON) denies: the
hook fails closed.
"""

import json
import os
import sys
import urllib.request


def decide(command: str) -> tuple[str, str]:
    url = os.environ.get("CORRAL_VALIDATE_URL", "")
    if not url:
        return "deny", "corral: no validator configured (CORRAL_VALIDATE_URL)"
    req = urllib.request.Request(
        url,
        data=json.dumps({"command": command}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            answer = json.loads(resp.read(65536))
    except (OSError, ValueError) as exc:
        return "deny", f"corral: the command validator did not answer ({exc})"
    decision = answer.get("decision") if isinstance(answer, dict) else None
    reason = str(answer.get("reason", "")) if isinstance(answer, dict) else ""
    return ("allow", reason) if decision == "allow" else ("deny", f"corral policy: {reason}")


def main() -> int:
    try:
        event = json.loads(sys.stdin.read(1_000_000))
        command = str(event.get("tool_input", {}).get("command", ""))
    except (ValueError, AttributeError):
        command = ""
    decision, reason = (
        decide(command) if command else ("deny", "corral: no command in the hook input")
    )
    out = {
        "hookSpecificOutput": {
            "hookEventName": "PreToolUse",
            "permissionDecision": decision,
            "permissionDecisionReason": reason,
        }
    }
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
