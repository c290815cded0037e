import json

import azure.functions as func

from ..shared.catalog import PRODUCTS


def _error(message: str) -> func.HttpResponse:
    return func.HttpResponse(
        json.dumps({"error": message}), status_code=400, mimetype="application/json"
    )


def main(req: func.HttpRequest) -> func.HttpResponse:
    """Body: {"items": [{"id": "apple", "qty": 2}, ...]} -> 201 {"items": ..., "total_cents": N}."""
    try:
        order = req.get_json()
    except ValueError:
        return _error("body must be JSON")
    items = order.get("items") if isinstance(order, dict) else None
    if not isinstance(items, list) or not items:
        return _error("'items' must be a non-empty list")
    total = 0
    for line in items:
        if not isinstance(line, dict):
            return _error("each item must be an object")
        pid, qty = line.get("id"), line.get("qty")
        if pid not in PRODUCTS:
            return _error(f"unknown product id: {pid}")
        if not isinstance(qty, int) or isinstance(qty, bool) or qty < 1:
            return _error(f"qty for {pid} must be a positive integer")
        total += PRODUCTS[pid]["price_cents"] * qty
    return func.HttpResponse(
        json.dumps({"items": items, "total_cents": total}),
        status_code=201,
        mimetype="application/json",
    )
