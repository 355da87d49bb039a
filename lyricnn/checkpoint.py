"""HF checkpoint reading and writing (placeholder until the checkpoint work lands)."""
