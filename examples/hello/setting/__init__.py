import json
import os

import azure.functions as func


def main(req: func.HttpRequest) -> func.HttpResponse:
    result = {
        "GREETING": os.environ.get("GREETING"),
        "PATH_set": bool(os.environ.get("PATH")),
    }
    return func.HttpResponse(json.dumps(result), mimetype="application/json")
