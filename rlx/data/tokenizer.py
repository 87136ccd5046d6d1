"""One small tokenizer interface over SentencePiece and HF `tokenizer.json`.

`encode` never adds special tokens by itself (pass `add_bos=True`), so a
prompt's ids are exactly its text's; `decode` drops special tokens unless
asked to keep them. `batch_encode` left-pads, as decoding wants.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import warnings
from collections.abc import Iterable, Sequence

import numpy as np
import sentencepiece as spm
import tokenizers

SP_MODEL = "tokenizer.model"
HF_TOKENIZER = "tokenizer.json"
HF_TOKENIZER_CONFIG = "tokenizer_config.json"


class Tokenizer:
  """Common interface. Subclasses set the ids and `_encode` / `_decode`."""

  vocab_size: int
  bos_id: int | None
  eos_id: int | None
  pad_id: int
  unk_id: int | None = None
  special_ids: frozenset[int]
  # Whether prompts start with BOS in this tokenizer's convention (HF's
  # `tokenizer(text)`; the training loop and the generate CLI follow it);
  # `encode` itself never adds it unless asked.
  adds_bos: bool = False

  def _encode(self, text: str) -> list[int]:
    raise NotImplementedError

  def _decode(self, ids: list[int]) -> str:
    raise NotImplementedError

  def token_to_id(self, token: str) -> int | None:
    raise NotImplementedError

  def save(self, directory: str) -> None:
    raise NotImplementedError

  def encode(
    self, text: str, add_bos: bool = False, add_eos: bool = False
  ) -> list[int]:
    ids = self._encode(text)
    if add_bos:
      if self.bos_id is None:
        raise ValueError("add_bos=True but this tokenizer has no BOS token")
      ids = [self.bos_id] + ids
    if add_eos:
      if self.eos_id is None:
        raise ValueError("add_eos=True but this tokenizer has no EOS token")
      ids = ids + [self.eos_id]
    return ids

  def unknown_chars(self, text: str) -> list[str]:
    """The characters of `text` this tokenizer cannot represent (each run
    of them encodes to the unknown token), in order of appearance."""
    if self.unk_id is None:
      return []
    unknown = {c for c in set(text) if self.unk_id in self._encode(c)}
    return sorted(unknown, key=text.index)

  def decode(self, ids: Iterable[int], skip_special: bool = True) -> str:
    # Models often have more embedding rows than tokens (Qwen2.5: 151936
    # vs 151665); ids past the tokenizer's vocabulary decode to nothing.
    ids = [int(i) for i in ids if 0 <= int(i) < self.vocab_size]
    if skip_special:
      ids = [i for i in ids if i not in self.special_ids]
    return self._decode(ids)

  def batch_encode(
    self,
    texts: Sequence[str],
    *,
    add_bos: bool = False,
    length: int | None = None,
  ) -> tuple[np.ndarray, np.ndarray]:
    """Left-padded `(tokens [B, L], mask [B, L])` int32.

    `length` fixes L (default: the longest text); a longer text is an error
    naming how long it is.
    """
    encoded = [self.encode(t, add_bos=add_bos) for t in texts]
    longest = max((len(e) for e in encoded), default=0)
    length = longest if length is None else length
    if longest > length:
      i = int(np.argmax([len(e) for e in encoded]))
      raise ValueError(
        f"text {i} is {longest} tokens, longer than length={length}"
      )
    tokens = np.full((len(texts), length), self.pad_id, np.int32)
    mask = np.zeros((len(texts), length), np.int32)
    for i, ids in enumerate(encoded):
      if ids:
        tokens[i, length - len(ids) :] = ids
        mask[i, length - len(ids) :] = 1
    return tokens, mask


class SentencePieceTokenizer(Tokenizer):
  """A SentencePiece `.model` file."""

  def __init__(self, model: str | bytes):
    self._proto = (
      model if isinstance(model, bytes) else open(model, "rb").read()
    )
    self.sp = spm.SentencePieceProcessor(model_proto=self._proto)
    self.vocab_size = self.sp.get_piece_size()
    self.bos_id = self.sp.bos_id() if self.sp.bos_id() >= 0 else None
    self.eos_id = self.sp.eos_id() if self.sp.eos_id() >= 0 else None
    self.adds_bos = self.bos_id is not None  # as HF's LlamaTokenizer
    self.unk_id = self.sp.unk_id() if self.sp.unk_id() >= 0 else None
    pad = self.sp.pad_id()
    self.pad_id = pad if pad >= 0 else (self.eos_id or 0)
    self.special_ids = frozenset(
      i
      for i in range(self.vocab_size)
      if self.sp.is_control(i) or self.sp.is_unknown(i)
    )

  def _encode(self, text):
    return self.sp.encode(text)

  def _decode(self, ids):
    return self.sp.decode(ids)

  def token_to_id(self, token):
    i = self.sp.piece_to_id(token)
    return (
      None if self.sp.is_unknown(i) and token != self.sp.id_to_piece(i) else i
    )

  def save(self, directory):
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, SP_MODEL), "wb") as f:
      f.write(self._proto)


def _token_content(value) -> str | None:
  if isinstance(value, dict):
    return value.get("content")
  return value


class HFTokenizer(Tokenizer):
  """A HF `tokenizer.json` (+ `tokenizer_config.json` for special tokens and
  the chat template), through the `tokenizers` library."""

  def __init__(self, directory: str):
    self.directory = directory
    self.tok = tokenizers.Tokenizer.from_file(
      os.path.join(directory, HF_TOKENIZER)
    )
    config_path = os.path.join(directory, HF_TOKENIZER_CONFIG)
    self.config = {}
    if os.path.exists(config_path):
      with open(config_path) as f:
        self.config = json.load(f)
    self.vocab_size = self.tok.get_vocab_size(with_added_tokens=True)
    ids = {}
    for name in ("bos", "eos", "pad", "unk"):
      content = _token_content(self.config.get(f"{name}_token"))
      ids[name] = None if content is None else self.tok.token_to_id(content)
    self.bos_id, self.eos_id = ids["bos"], ids["eos"]
    self.unk_id = ids["unk"]
    unk = getattr(self.tok.model, "unk_token", None)
    if self.unk_id is None and isinstance(unk, str):
      self.unk_id = self.tok.token_to_id(unk)
    pad = ids["pad"] if ids["pad"] is not None else self.eos_id
    self.pad_id = 0 if pad is None else pad
    special = {i for i in ids.values() if i is not None}
    for added in self.config.get("added_tokens_decoder", {}).items():
      if added[1].get("special"):
        special.add(int(added[0]))
    for tok in json.load(open(os.path.join(directory, HF_TOKENIZER))).get(
      "added_tokens", []
    ):
      if tok.get("special"):
        special.add(tok["id"])
    self.special_ids = frozenset(special)
    self.chat_template = self.config.get("chat_template")
    with_special = self.tok.encode("a", add_special_tokens=True).ids
    self.adds_bos = self.bos_id is not None and bool(
      self.config.get("add_bos_token", with_special[:1] == [self.bos_id])
    )

  def _encode(self, text):
    return self.tok.encode(text, add_special_tokens=False).ids

  def _decode(self, ids):
    return self.tok.decode(ids, skip_special_tokens=False)

  def token_to_id(self, token):
    return self.tok.token_to_id(token)

  def apply_chat_template(
    self, messages: list[dict], add_generation_prompt: bool = True
  ) -> str:
    """Render `messages` with the checkpoint's Jinja chat template
    (sandboxed, as transformers does)."""
    if not self.chat_template:
      raise ValueError(f"{self.directory} has no chat_template")
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    special = {
      k: _token_content(self.config.get(k))
      for k in ("bos_token", "eos_token", "pad_token", "unk_token")
    }
    return env.from_string(self.chat_template).render(
      messages=messages, add_generation_prompt=add_generation_prompt, **special
    )

  def save(self, directory):
    os.makedirs(directory, exist_ok=True)
    for name in (HF_TOKENIZER, HF_TOKENIZER_CONFIG):
      src = os.path.join(self.directory, name)
      if os.path.exists(src) and os.path.abspath(src) != os.path.abspath(
        os.path.join(directory, name)
      ):
        shutil.copy(src, directory)


def load_tokenizer(path: str) -> Tokenizer:
  """A tokenizer from a directory (`tokenizer.json` or `tokenizer.model`)
  or from a `.model` / `tokenizer.json` file."""
  if os.path.isdir(path):
    if os.path.exists(os.path.join(path, HF_TOKENIZER)):
      return HFTokenizer(path)
    if os.path.exists(os.path.join(path, SP_MODEL)):
      return SentencePieceTokenizer(os.path.join(path, SP_MODEL))
    found = sorted(os.listdir(path))
    raise FileNotFoundError(
      f"{path} has neither {HF_TOKENIZER} nor {SP_MODEL} (found {found})"
    )
  if path.endswith(".model"):
    return SentencePieceTokenizer(path)
  if os.path.basename(path) == HF_TOKENIZER:
    return HFTokenizer(os.path.dirname(path) or ".")
  raise FileNotFoundError(
    f"{path}: expected a directory, a .model file or a {HF_TOKENIZER}"
  )


def train_sentencepiece(
  texts: Iterable[str],
  vocab_size: int,
  *,
  user_defined_symbols: Sequence[str] = (),
  model_type: str = "bpe",
  character_coverage: float = 1.0,
  cover_ascii: bool = True,
) -> SentencePieceTokenizer:
  """Train a small SentencePiece model in memory.

  `vocab_size` is an upper bound: when the texts hold fewer pieces (a small
  synthetic task), the tokenizer has fewer, and a warning says how many. Ids:
  pad 0, unk 1, bos 2, eos 3. With `cover_ascii` every printable ASCII
  character gets a piece (else only those in `texts`); digits are split into
  single tokens, so arithmetic stays learnable; `user_defined_symbols` (e.g.
  `<think>`) are kept whole.
  """
  proto = io.BytesIO()
  extra = ["".join(chr(c) for c in range(32, 127))] if cover_ascii else []
  spm.SentencePieceTrainer.train(
    sentence_iterator=iter([*texts, *extra]),
    model_writer=proto,
    vocab_size=vocab_size,
    model_type=model_type,
    character_coverage=character_coverage,
    split_digits=True,
    byte_fallback=False,
    pad_id=0,
    unk_id=1,
    bos_id=2,
    eos_id=3,
    user_defined_symbols=list(user_defined_symbols),
    hard_vocab_limit=False,
    add_dummy_prefix=False,
    remove_extra_whitespaces=False,
    normalization_rule_name="identity",
    minloglevel=2,
  )
  tok = SentencePieceTokenizer(proto.getvalue())
  if tok.vocab_size < vocab_size:
    warnings.warn(
      f"train_sentencepiece: vocab_size={vocab_size} was asked for, but the "
      f"texts give only {tok.vocab_size} pieces (SentencePiece finds no more "
      f"merges in them); the tokenizer, and a model built for it, have "
      f"{tok.vocab_size}. Ask for {tok.vocab_size} (config key "
      "tokenizer.vocab_size) to silence this.",
      stacklevel=2,
    )
  return tok
