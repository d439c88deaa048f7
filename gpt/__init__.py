"""A nanoGPT-architecture character GPT on the tinygrad_ed engine, and its character data pipeline."""
from gpt.data import CharDataset, CharTokenizer
from gpt.model import GPT, GPTConfig

__all__ = ["CharDataset", "CharTokenizer", "GPT", "GPTConfig"]
