"""corral's rules as data and pure checks: policy model, file scope, commands, gates, budgets.

Arrives with the control-loop issue; the package exists so the layout and the
dependency direction (sandbox <- policies <- runner) are fixed from the start.
"""
