"""Imported lazily by the smoke Worker: drives flue_core, pydantic and Starlette inside workerd.

Importing on first use (not at the Worker's top level) lets the probe measure import times inside
the isolate and keeps them out of the cold start the harness waits for.
"""

import time

started = time.perf_counter()
import pydantic  # noqa: E402

pydantic_imported = time.perf_counter()
import flue_core  # noqa: E402
from flue_core import InvalidInput, RunContext, Runtime, runs, workflow, workflows  # noqa: E402

flue_imported = time.perf_counter()
from starlette.applications import Starlette  # noqa: E402
from starlette.responses import JSONResponse  # noqa: E402
from starlette.routing import Mount, Route  # noqa: E402
from workers import Response, asgi  # noqa: E402

from flue_core.http import create_app  # noqa: E402
from flue_node_like.memory import MemoryStore  # noqa: E402
from flue_node_like.target import LocalTarget  # noqa: E402

all_imported = time.perf_counter()


class Greeting(pydantic.BaseModel):
    name: str
    times: int = 1


models_defined = time.perf_counter()


@workflow(name="greet", http=True)
async def greet(ctx: RunContext, input: Greeting) -> dict:
    words = await ctx.step("compose", lambda: _compose(input))
    ctx.progress(1, 1, message="composed")
    return {"text": words}


async def _compose(input):
    return " ".join([f"hello {input.name}"] * input.times)


async def run_a_workflow():
    """A whole run on the local target with the memory store, inside one request."""
    began = time.perf_counter()
    async with Runtime([greet], target=LocalTarget(store=MemoryStore()), entry_points=False):
        receipt = await workflows.start(greet, input={"name": "workerd", "times": 2})
        result = await runs.result(receipt.run_id, timeout=10)
        events = [event.type async for event in runs.events(receipt.run_id)]
        record = await runs.get(receipt.run_id)
        try:
            await workflows.start(greet, input={"name": "x", "times": "many"})
            refused = None
        except InvalidInput as error:
            refused = error.code
        listed = [run.run_id for run in (await runs.list()).runs]
    return {
        "flue_core": flue_core.__name__,
        "pydantic": pydantic.VERSION,
        "run_id": receipt.run_id,
        "status": record.status.value,
        "result": result,
        "events": events,
        "invalid_input": refused,
        "listed": listed,
        "seconds": {
            "import_pydantic": pydantic_imported - started,
            "import_flue_core": flue_imported - pydantic_imported,
            "import_rest": all_imported - flue_imported,
            "first_model": models_defined - all_imported,
            "run": time.perf_counter() - began,
        },
    }


async def _echo(request):
    return JSONResponse(
        {
            "method": request.method,
            "path": request.url.path,
            "query": dict(request.query_params),
            "body": (await request.body()).decode(),
        }
    )


echo_app = Starlette(routes=[Route("/probe/asgi/echo", _echo, methods=["GET", "POST"])])


async def serve_asgi(which, request, env):
    """``asgi``: a plain Starlette app; ``http``: flue_core's HTTP surface over a runtime opened for
    the request (the memory store lives as long as the request)."""
    if which == "asgi":
        return await asgi.fetch(echo_app, request, env)
    runtime = Runtime([greet], target=LocalTarget(store=MemoryStore()), entry_points=False)
    flue_app = create_app(runtime, authorize_run_read=lambda request, run: True, list_runs_enabled=True)
    app = Starlette(routes=[Mount("/probe/http", app=flue_app)])
    async with runtime:
        answer = await asgi.fetch(app, request, env)
        # Read the body while the runtime is open: the app may still be writing it.
        body = await answer.text()
        headers = {key: value for key, value in answer.headers}
    return Response(body, status=answer.status, headers=headers)
