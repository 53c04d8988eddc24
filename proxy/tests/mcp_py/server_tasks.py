"""A low-level MCP server (official Python SDK 1.x) with the 2025-11-25 experimental
tasks: the tool `long` runs as a task when the client asks for one (tools/call with
`params.task`), its result delivered by tasks/result. stdio only."""

import sys
import warnings

import anyio
import mcp.types as types
from mcp.server.lowlevel import Server
from mcp.server.stdio import stdio_server

warnings.simplefilter("ignore", DeprecationWarning)

server = Server("helm-test-tasks")
server.experimental.enable_tasks()


@server.list_tools()
async def list_tools() -> list[types.Tool]:
    return [
        types.Tool(
            name="long",
            description="A long operation (runs as a task).",
            inputSchema={"type": "object", "properties": {"n": {"type": "integer"}}},
            execution=types.ToolExecution(taskSupport="optional"),
        )
    ]


@server.call_tool()
async def call_tool(name: str, arguments: dict):
    ctx = server.request_context
    n = arguments.get("n", 0)
    if ctx.experimental.is_task:

        async def work(task):
            await anyio.sleep(0.2)
            return types.CallToolResult(content=[types.TextContent(type="text", text=f"long done {n}")])

        return await ctx.experimental.run_task(work)
    return [types.TextContent(type="text", text=f"long done {n} (no task)")]


async def main():
    async with stdio_server() as (r, w):
        await server.run(r, w, server.create_initialization_options())


if __name__ == "__main__":
    print("helm-test tasks server (stdio)", file=sys.stderr)
    anyio.run(main)
