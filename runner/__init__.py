"""corral's control loop and everything user-facing (CLI, run store, agents, review)."""
