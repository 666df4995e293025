"""A small MCP server (stdio) for crates/concierto-agent/tests/mcp.rs.

Tools:
  add(a, b)        -> the sum, as text
  shout(text)      -> the text in capitals, prefixed with $SHOUT_PREFIX
  fail(why)        -> always an error with `why`
  crash()          -> the process exits (a dead server)
"""

import os
import sys

from mcp.server.mcpserver import MCPServer

server = MCPServer("concierto-test")


@server.tool()
def add(a: int, b: int) -> str:
    """Adds two integers."""
    return str(a + b)


@server.tool()
def shout(text: str) -> str:
    """Says the text in capitals."""
    return os.environ.get("SHOUT_PREFIX", "") + text.upper()


@server.tool()
def fail(why: str) -> str:
    """Always fails with `why`."""
    raise ValueError(why)


@server.tool()
def crash() -> str:
    """Ends the server process."""
    sys.stdout.flush()
    os._exit(3)


if __name__ == "__main__":
    server.run("stdio")
