"""The MCP server over streamable HTTP, behind the same guards as `loracle serve` (loracle.serve.security).

With no token it answers only requests for a loopback Host that no other web page started (DNS rebinding
and cross-site requests refused), and it refuses to listen beyond this machine; with a token every request
needs `Authorization: Bearer <token>`. Request bodies are capped as the server's are.
"""

from __future__ import annotations

from typing import Any

from mcp.server.transport_security import TransportSecuritySettings

from loracle.config import ServeConfig
from loracle.mcp_server.server import LoracleMCP
from loracle.serve.security import BearerAuth, BodyLimit, LoopbackOnly

#: where the MCP endpoint lives (http://127.0.0.1:8322/mcp)
MCP_PATH = "/mcp"
DEFAULT_PORT = 8322


def http_app(server: LoracleMCP, config: ServeConfig, token: str) -> Any:
    """The ASGI app: the SDK's streamable HTTP transport wrapped in serve's guards (outermost first: loopback
    only when no token, the bearer token when one is set, the body limit)."""
    # the SDK's own Host check is off: LoopbackOnly applies serve's rules (its CORS origins included)
    security = TransportSecuritySettings(enable_dns_rebinding_protection=False)
    app: Any = server.streamable_http_app(streamable_http_path=MCP_PATH, transport_security=security)
    app = BodyLimit(app, max_bytes=config.max_request_bytes)
    app = BearerAuth(app, token=token)
    return app if token else LoopbackOnly(app, allowed_origins=config.cors_origins)
