"""WordPiece tokenizer (placeholder until the tokenizer lands)."""
