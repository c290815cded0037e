import azure.functions as func


def main(req: func.HttpRequest) -> func.HttpResponse:
    name = req.params.get("name") or "world"
    return func.HttpResponse(
        f"Hello, {name}!",
        status_code=200,
        mimetype="text/plain",
        headers={"x-app": "hello"},
    )
