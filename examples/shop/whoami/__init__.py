import json
import os

import azure.functions as func


def main(req: func.HttpRequest) -> func.HttpResponse:
    result = {
        "GREETING": os.environ.get("GREETING"),
        "SHOP_NAME": os.environ.get("SHOP_NAME"),
    }
    return func.HttpResponse(json.dumps(result), mimetype="application/json")
