"""Built-in data sources: the seeded synthetic credit-scoring stream."""
