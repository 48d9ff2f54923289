"""`loracle mcp`: a knowledge base for agents (Claude Code, Claude Desktop, Cursor) over the Model Context
Protocol, on stdio or streamable HTTP."""

from loracle.mcp_server.server import create_server
from loracle.mcp_server.tools import KnowledgeBaseTools

__all__ = ["KnowledgeBaseTools", "create_server"]
