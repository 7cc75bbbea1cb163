"""corral's rules as data and pure checks; no sandbox, no run store (``sandbox`` <- ``policies`` <- ``runner``).

policy    ``Policy``: the pydantic model of a policy (TOML), one model per table
load      presets < policy file < the repository's config < CLI flags, merged into a ``Policy``
scope     file scope: which class each path is in, and what a change set violates
hidden    the characters that hide what text says (blocked in a patch, escaped when shown)
words     what is known of a command's words, and the command a wrapper runs
cmdline   every simple command a bash line runs (tree-sitter-bash)
commands  the deny / ask / allow rules and ``CommandValidator``
budget    ``Budget``: the counters of a run and an attempt against the policy's limits
junit     per-test outcomes from junit XML and the comparison with a baseline
gates     a gate run's verdict against the baseline, and the feedback on failed gates
errors    the package's exception tree (``PoliciesError``; ``PolicyError`` is a ``UserError``)
"""
