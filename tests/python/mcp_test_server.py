"""A small MCP server (stdio) for crates/concierto-agent/tests/mcp.rs.

Tools:
  add(a, b)        -> the sum, as text
  shout(text)      -> the text in capitals, prefixed with $SHOUT_PREFIX
  fail(why)        -> always an error with `why`
  crash()          -> the process exits (a dead server)
  pid()            -> the server's process id

Run with no argument it speaks MCP on stdio; with `--http PORT` it serves
streamable HTTP on 127.0.0.1:PORT at /mcp.
"""

import os
import sys

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError

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
    raise ToolError(why)


@server.tool()
def crash() -> str:
    """Ends the server process."""
    sys.stdout.flush()
    os._exit(3)


@server.tool()
def pid() -> str:
    """The server's process id."""
    return str(os.getpid())


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--http":
        server.run("streamable-http", host="127.0.0.1", port=int(sys.argv[2]))
    else:
        server.run("stdio")
