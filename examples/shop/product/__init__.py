import json

import azure.functions as func

from ..shared.catalog import PRODUCTS


def main(req: func.HttpRequest) -> func.HttpResponse:
    pid = req.route_params.get("id", "")
    info = PRODUCTS.get(pid)
    if info is None:
        return func.HttpResponse(
            json.dumps({"error": f"unknown product id: {pid}"}),
            status_code=404,
            mimetype="application/json",
        )
    return func.HttpResponse(json.dumps({"id": pid, **info}), mimetype="application/json")
