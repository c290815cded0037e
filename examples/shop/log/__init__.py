import logging

import azure.functions as func


def main(req: func.HttpRequest) -> func.HttpResponse:
    tag = req.params.get("tag", "default")
    logging.info("log-line-marker %s", tag)
    return func.HttpResponse(f"logged {tag}", status_code=200, mimetype="text/plain")
