import json

import azure.functions as func

from ..shared.catalog import PRODUCTS


def main(req: func.HttpRequest) -> func.HttpResponse:
    products = [{"id": pid, **info} for pid, info in sorted(PRODUCTS.items())]
    return func.HttpResponse(json.dumps(products), mimetype="application/json")
