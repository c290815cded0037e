import asyncio
import json

import azure.functions as func


async def main(req: func.HttpRequest) -> func.HttpResponse:
    try:
        ms = int(req.params.get("ms", "200"))
    except ValueError:
        return func.HttpResponse(
            json.dumps({"error": "ms must be an integer"}),
            status_code=400,
            mimetype="application/json",
        )
    await asyncio.sleep(ms / 1000)
    return func.HttpResponse(json.dumps({"slept_ms": ms}), mimetype="application/json")
