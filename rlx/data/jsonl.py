"""User datasets from JSON Lines files."""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Mapping, Sequence

ANSWER_FORMATS = ("plain", "gsm8k")
_GSM8K_MARK = "####"
_CALCULATOR_RE = re.compile(r"<<[^<>]*>>")
_THOUSANDS_RE = re.compile(r"[+-]?\d{1,3}(?:,\d{3})+(?:\.\d*)?", re.ASCII)


def _field_map(extra_fields) -> dict[str, str]:
  if isinstance(extra_fields, str):
    return {extra_fields: extra_fields}
  if isinstance(extra_fields, Mapping):
    return dict(extra_fields)
  return {name: name for name in extra_fields}


def split_gsm8k_answer(text: str) -> tuple[str, str] | None:
  """Splits a GSM8K answer into (reasoning, final answer), or None.

  The final answer follows the last `####`; thousands separators are
  dropped. Calculator annotations `<<48/2=24>>` are removed from the
  reasoning.
  """
  reasoning, mark, final = text.rpartition(_GSM8K_MARK)
  final = final.strip()
  if not mark or not final:
    return None
  if _THOUSANDS_RE.fullmatch(final):
    final = final.replace(",", "")
  return _CALCULATOR_RE.sub("", reasoning).strip(), final


def _text(value, key: str, where: str) -> str:
  """A prompt or answer field as text; null, NaN, infinity, objects and
  arrays are refused (str() would make them "None", "nan", ...)."""
  bad = (
    value is None
    or isinstance(value, (dict, list))
    or (isinstance(value, float) and not math.isfinite(value))
  )
  if bad:
    raise ValueError(
      f"{where}: field {key!r} is {json.dumps(value)}; it must be a string "
      "or a number"
    )
  return str(value)


def write_jsonl(path: str, rows) -> str:
  """Writes `rows` (dicts) to `path`, one JSON object per line, for
  `load_jsonl` or the `jsonl` task; returns the path."""
  with open(path, "w") as f:
    for row in rows:
      f.write(json.dumps(row) + "\n")
  return path


def load_jsonl(
  path: str,
  *,
  prompt_field: str = "prompt",
  answer_field: str = "answer",
  answer_format: str = "plain",
  template: str = "{prompt}",
  solution_field: str | None = None,
  extra_fields: Sequence[str] | Mapping[str, str] = (),
  max_examples: int | None = None,
) -> list[dict]:
  """Reads examples from a JSONL file, one JSON object per line.

  Args:
    path: the file; blank lines are skipped.
    prompt_field: record key of the question.
    answer_field: record key of the ground-truth answer.
    answer_format: "plain" (the field is the answer) or "gsm8k" (the
      answer follows `####`; the text before it is the reasoning).
    template: `str.format` template of the prompt; `{prompt}` is the
      question and any record key may be used. Literal braces are doubled.
    solution_field: optional record key of worked reasoning for the
      solution's `<think>` part (gsm8k uses the reasoning by default).
    extra_fields: record keys copied into each example, or a mapping from
      example key to record key (e.g. `{"numbers": "nums"}`).
    max_examples: read at most this many examples.

  Returns:
    Examples with `prompt`, `answer`, `solution` and the extra fields.

  Raises:
    ValueError: naming the file (missing or unreadable) or the line of
      text that is not UTF-8, invalid JSON, a non-object line, a missing
      field, a prompt or answer that is null, NaN, an object or an array,
      an empty answer, a template error or a gsm8k answer without `####`.
  """
  if answer_format not in ANSWER_FORMATS:
    raise ValueError(
      f"answer_format must be one of {ANSWER_FORMATS}, got {answer_format!r}"
    )
  extra = _field_map(extra_fields)
  examples = []
  try:
    f = open(path, "rb")
  except OSError as e:
    raise ValueError(
      f"{path}: cannot open the JSONL file ({e.strerror})"
    ) from e
  with f:
    for lineno, raw in enumerate(f, 1):
      if max_examples is not None and len(examples) >= max_examples:
        break
      where = f"{path}:{lineno}"
      try:
        line = raw.decode("utf-8")
      except UnicodeDecodeError as e:
        raise ValueError(
          f"{where}: not UTF-8 text (byte {raw[e.start : e.start + 1]!r} at "
          f"column {e.start + 1}); JSONL files must be UTF-8"
        ) from e
      if not line.strip():
        continue
      try:
        record = json.loads(line)
      except json.JSONDecodeError as e:
        raise ValueError(f"{where}: invalid JSON: {e.msg}") from e
      if not isinstance(record, dict):
        raise ValueError(f"{where}: expected a JSON object per line")

      def get(key, record=record, where=where):
        if key not in record:
          raise ValueError(
            f"{where}: missing field {key!r} (has {sorted(record)})"
          )
        return record[key]

      question = _text(get(prompt_field), prompt_field, where)
      answer = _text(get(answer_field), answer_field, where).strip()
      if not answer:
        raise ValueError(f"{where}: field {answer_field!r} is empty")
      reasoning = ""
      if answer_format == "gsm8k":
        parts = split_gsm8k_answer(answer)
        if parts is None:
          raise ValueError(
            f"{where}: field {answer_field!r} has no final answer after "
            f"'{_GSM8K_MARK}'"
          )
        reasoning, answer = parts
      if solution_field is not None:
        reasoning = _text(get(solution_field), solution_field, where).strip()
      try:
        prompt = template.format_map({**record, "prompt": question})
      except (KeyError, IndexError, ValueError) as e:
        raise ValueError(
          f"{where}: prompt template {template!r} failed: {e!r}"
        ) from e
      example = {
        "prompt": prompt,
        "answer": answer,
        "solution": f"<think>{reasoning}</think><answer>{answer}</answer>",
      }
      for key, source in extra.items():
        example[key] = get(source)
      examples.append(example)
  if not examples:
    raise ValueError(f"{path}: no examples")
  return examples


def in_eval_split(prompt: str, eval_fraction: float) -> bool:
  """Deterministic split by a hash of the prompt text."""
  digest = hashlib.sha256(prompt.encode("utf-8", "surrogatepass")).digest()
  return int.from_bytes(digest[:8], "big") / 2.0**64 < eval_fraction


def hash_split(
  examples: Sequence[dict], eval_fraction: float
) -> tuple[list[dict], list[dict]]:
  """Splits examples into (train, eval) by `in_eval_split` of the prompt.

  Equal prompts always land in the same split, independent of file order.
  """
  if not 0.0 <= eval_fraction <= 1.0:
    raise ValueError(f"eval_fraction must be in [0, 1], got {eval_fraction}")
  train, eval_ = [], []
  for example in examples:
    in_eval = in_eval_split(example["prompt"], eval_fraction)
    (eval_ if in_eval else train).append(example)
  return train, eval_
