"""Data: tokenizers, tasks, datasets and deterministic iteration."""

from rlx.data.tokenizer import (
  HFTokenizer,
  SentencePieceTokenizer,
  Tokenizer,
  load_tokenizer,
  train_sentencepiece,
)

__all__ = [
  "HFTokenizer",
  "SentencePieceTokenizer",
  "Tokenizer",
  "load_tokenizer",
  "train_sentencepiece",
]
