"""The model gateway: how an agent CLI in the sandbox reaches its model without holding a key.

core      ``Gateway``: a unix socket per run, its lifecycle, budgets and events, the real key
routes    where a request may go (``Upstream``, ``Route``, ``Router``): model endpoints,
          allowed hosts, refusals; pure decisions, nothing sent
http      the HTTP server and handler behind the socket (dispatch, tunnels, refusals)
wire      HTTP/1.1 framing: a bounded request body, hop-by-hop and key headers
response  copying an upstream's answer back as it arrives, charged before its end
usage     metering the tokens and cost of each answer against the run's budget
scrub     the real keys taken out of every answer as it streams

Imports point one way: core -> http -> response -> usage, and to the leaves routes,
wire and scrub; ``http`` asks the gateway through its ``Gatekeeper`` protocol.
"""

from runner.gateway.core import DUMMY_KEY, Gateway, GatewayError, runtime_problem
from runner.gateway.routes import Upstream

__all__ = ["DUMMY_KEY", "Gateway", "GatewayError", "Upstream", "runtime_problem"]
