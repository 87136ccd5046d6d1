"""Tokenizer round trips: SentencePiece and HF tokenizer.json backends."""

import os

import numpy as np
import pytest
from hf_helpers import make_hf_tokenizer

from rlx.data.tokenizer import load_tokenizer, train_sentencepiece

TEXTS = [
  "What is 12+7*3? <think>7*3=21, 12+21=33</think><answer>33</answer>",
  "Use the numbers 3, 5, 7 to reach 22. <answer>3*5+7</answer>",
  "The quick brown fox jumps over the lazy dog.",
  "Natalia sold clips to 48 of her friends in April.",
] * 20


def test_sentencepiece_round_trip_and_save(tmp_path):
  tok = train_sentencepiece(
    TEXTS, vocab_size=120, user_defined_symbols=["<think>", "</think>"]
  )
  assert (tok.pad_id, tok.bos_id, tok.eos_id) == (0, 2, 3)
  assert tok.adds_bos  # prompts start with BOS, as the loop trains them
  for text in TEXTS[:4] + ["  two  spaces and 1234567890"]:
    ids = tok.encode(text)
    assert tok.decode(ids) == text
  ids = tok.encode("<think>12</think>")
  assert ids[0] == tok.token_to_id("<think>")
  assert [tok.decode([i]) for i in tok.encode("2025")] == ["2", "0", "2", "5"]
  with_special = tok.encode("hi", add_bos=True, add_eos=True)
  assert with_special[0] == 2 and with_special[-1] == 3
  assert tok.decode(with_special) == "hi"

  tok.save(str(tmp_path))
  again = load_tokenizer(str(tmp_path))
  assert again.encode(TEXTS[0]) == tok.encode(TEXTS[0])


def test_batch_encode_left_pads_and_rejects_overlong():
  tok = train_sentencepiece(TEXTS, vocab_size=100)
  tokens, mask = tok.batch_encode(["1+1=", "123+456="], length=12)
  assert tokens.shape == (2, 12)
  lengths = [len(tok.encode("1+1=")), len(tok.encode("123+456="))]
  np.testing.assert_array_equal(mask.sum(1), lengths)
  assert mask[0, -1] == 1 and mask[0, 0] == 0
  assert tok.decode(tokens[1][mask[1] == 1]) == "123+456="
  with pytest.raises(
    ValueError, match="text 1 is 8 tokens, longer than length=5"
  ):
    tok.batch_encode(["1+1=", "123+456="], length=5)


@pytest.fixture(scope="module")
def hf_tokenizer_dir(tmp_path_factory):
  return make_hf_tokenizer(tmp_path_factory.mktemp("hf_tok"), TEXTS)


def test_hf_tokenizer_json_round_trip_matches_transformers(hf_tokenizer_dir):
  import transformers

  tok = load_tokenizer(hf_tokenizer_dir)
  ref = transformers.AutoTokenizer.from_pretrained(hf_tokenizer_dir)
  assert (tok.bos_id, tok.eos_id, tok.pad_id) == (2, 3, 0)
  assert tok.adds_bos and ref("hello").input_ids[0] == tok.bos_id
  for text in TEXTS[:4] + ["  spaces, ünïcode and 1234"]:
    ids = tok.encode(text)
    assert ids == ref.encode(text, add_special_tokens=False)
    assert tok.decode(ids) == text
  ids = tok.encode("hello", add_bos=True, add_eos=True)
  assert tok.decode(ids) == "hello"
  assert tok.decode(ids, skip_special=False) == "<s>hello</s>"

  messages = [{"role": "user", "content": "2+2?"}]
  assert tok.apply_chat_template(messages) == ref.apply_chat_template(
    messages, tokenize=False, add_generation_prompt=True
  )
  with pytest.raises(FileNotFoundError, match="neither tokenizer.json"):
    load_tokenizer(os.path.dirname(hf_tokenizer_dir))


def test_sentencepiece_says_when_it_has_fewer_pieces_than_asked():
  texts = ["1+2=3", "4-1=3", "2+2=4"] * 10
  with pytest.warns(UserWarning, match=r"vocab_size=96 .* only (\d+) pieces"):
    tok = train_sentencepiece(texts, vocab_size=96, cover_ascii=False)
  assert tok.vocab_size < 96
  import warnings

  with warnings.catch_warnings():
    warnings.simplefilter("error")  # asking for what there is: no warning
    same = train_sentencepiece(texts, tok.vocab_size, cover_ascii=False)
  assert same.vocab_size == tok.vocab_size


def test_unknown_chars(tmp_path):
  sp = train_sentencepiece(["1+2=3", "4-1=3"] * 10, 11, cover_ascii=False)
  assert sp.unk_id == 1
  assert sp.unknown_chars("What is 2+2?") == list("What is?")
  assert sp.unknown_chars("2+2=") == []
  # A byte-level BPE knows every character.
  hf = load_tokenizer(make_hf_tokenizer(tmp_path, ["ab c"] * 10))
  assert hf.unk_id == 1
  assert hf.unknown_chars("What is 2+2? é") == []
