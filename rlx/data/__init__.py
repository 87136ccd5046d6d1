"""Data: tokenizers, tasks, datasets and deterministic iteration."""

from rlx.data.iterator import DataIterator
from rlx.data.jsonl import (
  hash_split,
  load_jsonl,
  split_gsm8k_answer,
  write_jsonl,
)
from rlx.data.tasks import (
  ARITHMETIC_TEMPLATE,
  COUNTDOWN_TEMPLATE,
  TASKS,
  Task,
  arithmetic_task,
  collate_fields,
  countdown_task,
  jsonl_task,
  make_task,
)
from rlx.data.tokenizer import (
  HFTokenizer,
  SentencePieceTokenizer,
  Tokenizer,
  load_tokenizer,
  train_sentencepiece,
)

__all__ = [
  "ARITHMETIC_TEMPLATE",
  "COUNTDOWN_TEMPLATE",
  "TASKS",
  "DataIterator",
  "HFTokenizer",
  "SentencePieceTokenizer",
  "Task",
  "Tokenizer",
  "arithmetic_task",
  "collate_fields",
  "countdown_task",
  "hash_split",
  "jsonl_task",
  "load_jsonl",
  "load_tokenizer",
  "make_task",
  "split_gsm8k_answer",
  "write_jsonl",
  "train_sentencepiece",
]
