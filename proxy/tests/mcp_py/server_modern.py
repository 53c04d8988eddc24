"""A small MCP server on the official Python SDK 2.x (MCPServer), which serves both the
stateless revision 2026-07-28 (server/discover, per-request _meta) and the handshake
revisions. Transports: `stdio` (default) or `streamable-http` with `--port`."""

import argparse
import sys
from typing import Annotated

from pydantic import Field

from mcp.server.mcpserver import MCPServer

parser = argparse.ArgumentParser()
parser.add_argument("--transport", default="stdio", choices=["stdio", "streamable-http"])
parser.add_argument("--port", type=int, default=0)
args = parser.parse_args()

mcp = MCPServer("helm-test-modern")


@mcp.tool(description="Echo a message.")
def echo(message: str) -> str:
    return f"echo: {message}"


@mcp.tool(description="Add two integers.")
def add(a: int, b: int) -> int:
    return a + b


@mcp.tool(description="Read a file (the policy allows /workspace only).")
def read_file(path: str) -> str:
    return f"contents of {path}"


@mcp.tool(description="Delete a file (the policy denies it).")
def rm(path: str) -> str:
    return f"deleted {path}"


@mcp.tool(description="Query in a region (the region is mirrored into the Mcp-Param-Region header).")
def query(region: Annotated[str, Field(json_schema_extra={"x-mcp-header": "Region"})], q: str) -> str:
    return f"{region}: {q}"


if __name__ == "__main__":
    print(f"helm-test modern server ({args.transport})", file=sys.stderr)
    if args.transport == "stdio":
        mcp.run()
    else:
        mcp.run(transport="streamable-http", host="127.0.0.1", port=args.port)
