"""The shop's fixed catalogue, shared by products, product and order."""

PRODUCTS = {
    "apple": {"name": "Apple", "price_cents": 50},
    "bread": {"name": "Bread", "price_cents": 250},
    "cheese": {"name": "Cheese", "price_cents": 700},
}
