"""Transformer encoder (placeholder until the encoder lands)."""
