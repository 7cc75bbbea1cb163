"""Isolation for corral: git workspaces, hardened containers, images.

This package knows nothing of policies or agents. Read ``sandbox.interfaces``
first: it holds the small protocols and result types everything else matches.
"""
