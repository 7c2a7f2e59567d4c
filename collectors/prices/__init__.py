"""Price-data importers: genai-prices (the base layer of the catalog) and LiteLLM's price list."""
