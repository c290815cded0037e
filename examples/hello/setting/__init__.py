import json
import os

import azure.functions as func


def main(req: func.HttpRequest) -> func.HttpResponse:
    result = {
        "GREETING": os.environ.get("GREETING"),
        "PATH_set": bool(os.environ.get("PATH")),
        # Another app's setting: always null here, because settings reach only their own
        # app's workers.
        "SHOP_NAME": os.environ.get("SHOP_NAME"),
    }
    return func.HttpResponse(json.dumps(result), mimetype="application/json")
