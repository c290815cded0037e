import json

import azure.functions as func


def main(req: func.HttpRequest) -> func.HttpResponse:
    try:
        body = req.get_json()
    except ValueError:
        return func.HttpResponse(
            json.dumps({"error": "body must be JSON"}),
            status_code=400,
            mimetype="application/json",
        )
    result = {
        "body": body,
        "method": req.method,
        "x-echo": req.headers.get("x-echo"),
    }
    return func.HttpResponse(json.dumps(result), mimetype="application/json")
