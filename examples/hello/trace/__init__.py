import json

import azure.functions as func


def main(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    trace = context.trace_context
    result = {
        "traceparent": trace.Traceparent,
        "tracestate": trace.Tracestate,
        "invocation_id": context.invocation_id,
        "function_name": context.function_name,
    }
    return func.HttpResponse(json.dumps(result), mimetype="application/json")
