"""The model gateway: how an agent CLI in the sandbox reaches its model without holding a key.

core    ``Gateway``: a unix socket per run, routes to the upstream, the real key injected
http    the HTTP server and handler behind the socket (streaming, limits, hop headers)
usage   metering the tokens and cost of each answer against the run's budget
"""

from runner.gateway.core import DUMMY_KEY, Gateway, GatewayError, runtime_problem

__all__ = ["DUMMY_KEY", "Gateway", "GatewayError", "runtime_problem"]
