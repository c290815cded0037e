import json

import azure.functions as func


def main(req: func.HttpRequest) -> func.HttpResponse:
    # The route is items/{id:int}, so the front door only matches integer ids;
    # the worker still hands route params over as strings.
    item_id = int(req.route_params["id"])
    item = {"id": item_id, "name": f"item-{item_id}"}
    return func.HttpResponse(json.dumps(item), mimetype="application/json")
