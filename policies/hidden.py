"""The one table of characters that hide what text says: the patch checker (``policies.scope``)
blocks them, and every display of run text (``runner.review.text``) escapes them.

A module of its own so that showing run text, which every command does, imports none of the
scope machinery (``pathspec``, the policy models).
"""

#: Characters that make text read differently from what it is (Trojan Source and friends), as a
#: regex character-class body: C0 controls but tab, newline and carriage return; DEL and the C1
#: controls (U+0080-U+009F: U+009B is a terminal's CSI, U+0085 a line break to some readers); the
#: bidi embeddings, overrides, isolates and marks.
HIDDEN_CHARACTERS = (
    "\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f-\u009f"
    "\u202a-\u202e\u2066-\u2069\u200e\u200f\u061c"
)
