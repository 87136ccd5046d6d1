"""CLI smoke test on a tiny checkpoint + SentencePiece tokenizer directory."""

import json
import os
import re

import numpy as np
import pytest
import torch
import transformers
from hf_helpers import make_hf_checkpoint, make_hf_tokenizer

from rlx import generate
from rlx.data.tokenizer import train_sentencepiece

TEXTS = [
  "What is 12+7*3? <think>7*3=21, 12+21=33</think><answer>33</answer>",
  "The quick brown fox jumps over the lazy dog.",
] * 20


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
  path = tmp_path_factory.mktemp("cli")
  tok = train_sentencepiece(TEXTS, vocab_size=100)
  tok.save(str(path))
  _, hf = make_hf_checkpoint(
    path,
    "llama",
    vocab_size=tok.vocab_size,
    pad_token_id=tok.pad_id,
    bos_token_id=tok.bos_id,
    eos_token_id=tok.eos_id,
  )
  return str(path), tok, hf


def _completions(stdout):
  """The printed completions (they may hold newlines)."""
  blocks = re.split(
    r"^=== prompt \d+ completion \d+: .* ===\n", stdout, flags=re.M
  )
  return [b[:-1] if b.endswith("\n") else b for b in blocks[1:]]


def test_cli_greedy_matches_hf_and_samples(checkpoint, capsys):
  path, tok, hf = checkpoint
  prompt = "What is 12+7"
  assert (
    generate.main(
      [f"--model={path}", f"--prompt={prompt}", "--greedy"]
      + ["--max_new_tokens=10"]
    )
    == 0
  )
  (text,) = _completions(capsys.readouterr().out)
  ids = tok.encode(prompt, add_bos=True)  # SentencePiece: BOS first, as HF
  with torch.no_grad():
    ref = hf.generate(
      torch.tensor([ids]),
      max_new_tokens=10,
      do_sample=False,
      pad_token_id=tok.pad_id,
      eos_token_id=tok.eos_id,
    )[0, len(ids) :].numpy()
  ref = ref[: np.argmax(ref == tok.eos_id) + 1] if tok.eos_id in ref else ref
  assert text == prompt + tok.decode(ref.tolist())

  argv = [f"--model={path}", "--prompt=The quick", "--prompt=12+"]
  sampled = ["--num_samples=3", "--top_p=0.9", "--temperature=1"]
  assert generate.main(argv + sampled) == 0
  assert len(_completions(capsys.readouterr().out)) == 6
  argv += ["--num_beams=3", "--num_return_sequences=2", "--stop=fox"]
  assert generate.main(argv + ["--max_new_tokens=6"]) == 0
  out = _completions(capsys.readouterr().out)
  assert len(out) == 4 and out[0].startswith("The quick")


@pytest.fixture(scope="module")
def hf_dir(tmp_path_factory):
  """A Llama checkpoint with an HF tokenizer.json that adds BOS, and a
  generation_config.json whose EOS list has a token the model likes."""
  path = tmp_path_factory.mktemp("cli_hf")
  make_hf_tokenizer(path, TEXTS)
  ref_tok = transformers.AutoTokenizer.from_pretrained(str(path))
  _, hf = make_hf_checkpoint(
    path,
    "llama",
    seed=3,
    vocab_size=len(ref_tok),
    pad_token_id=0,
    bos_token_id=2,
    eos_token_id=3,
  )
  ids = ref_tok("What is 12").input_ids
  with torch.no_grad():
    free = hf.generate(
      torch.tensor([ids]), max_new_tokens=6, do_sample=False, pad_token_id=0
    )[0, len(ids) :]
  eos = [3, int(free[4])]  # greedy decoding stops within 5 tokens
  with open(os.path.join(path, "generation_config.json"), "w") as f:
    json.dump({"eos_token_id": eos, "bos_token_id": 2}, f)
  return str(path), ref_tok, hf, eos


def _hf_texts(hf, ref_tok, ids, eos, **kw):
  with torch.no_grad():
    out = hf.generate(
      torch.tensor([ids]), pad_token_id=0, eos_token_id=eos, **kw
    )[:, len(ids) :]
  return [ref_tok.decode(row, skip_special_tokens=True) for row in out]


def test_cli_matches_hf_pipeline_with_hf_tokenizer(hf_dir, capsys):
  """BOS as `tokenizer(prompt)` adds it, generation_config.json's EOS ids,
  the chat template, and beam search with early stopping."""
  path, ref_tok, hf, eos = hf_dir
  prompt = "What is 12"
  ids = ref_tok(prompt).input_ids
  assert ids[0] == 2
  base = [f"--model={path}", f"--prompt={prompt}", "--max_new_tokens=12"]
  assert generate.main(base + ["--greedy"]) == 0
  (text,) = _completions(capsys.readouterr().out)
  (ref,) = _hf_texts(hf, ref_tok, ids, eos, max_new_tokens=12, do_sample=False)
  assert text == prompt + ref

  beam = ["--num_beams=3", "--num_return_sequences=2", "--early_stopping=true"]
  assert generate.main(base + beam + ["--length_penalty=0.5"]) == 0
  texts = _completions(capsys.readouterr().out)
  refs = _hf_texts(
    hf,
    ref_tok,
    ids,
    eos,
    max_new_tokens=12,
    do_sample=False,
    num_beams=3,
    num_return_sequences=2,
    early_stopping=True,
    length_penalty=0.5,
  )
  assert texts == [prompt + r for r in refs]

  chat_ids = ref_tok.apply_chat_template(
    [{"role": "user", "content": prompt}],
    add_generation_prompt=True,
    tokenize=True,
  )
  chat_ids = getattr(chat_ids, "input_ids", chat_ids)
  assert chat_ids[0] == 2 and chat_ids[1] != 2  # one BOS
  assert generate.main(base + ["--greedy", "--chat"]) == 0
  (text,) = _completions(capsys.readouterr().out)
  (ref,) = _hf_texts(
    hf, ref_tok, list(chat_ids), eos, max_new_tokens=12, do_sample=False
  )
  assert text == prompt + ref


def test_cli_defaults_to_greedy_and_says_what_the_score_is(checkpoint, capsys):
  path, tok, _ = checkpoint
  base = [f"--model={path}", "--prompt=What is 12+7", "--max_new_tokens=8"]
  assert generate.main(base) == 0
  default = capsys.readouterr().out
  assert generate.main(base + ["--greedy"]) == 0
  assert capsys.readouterr().out == default
  header = default.splitlines()[0]
  assert re.fullmatch(
    r"=== prompt 0 completion 0: \d+ tokens, log-prob -?\d+\.\d+ "
    r"\(-?\d+\.\d+ per token\) ===",
    header,
  )
  assert generate.main(base + ["--num_beams=2"]) == 0
  assert ", beam score -" in capsys.readouterr().out
  # Flags that greedy decoding would ignore are refused.
  for bad in (
    ["--num_samples=2"],
    ["--top_p=0.9"],
    ["--num_beams=2", "--temperature=1"],
  ):
    with pytest.raises(SystemExit):
      generate.main(base + bad)
    assert "error:" in capsys.readouterr().err
  # Every option says what it does.
  with pytest.raises(SystemExit):
    generate.main(["--help"])
  usage = capsys.readouterr().out
  options = re.findall(r"^  (--\w+)(.*)$", usage, flags=re.M)
  assert len(options) > 20
  for flag, rest in options:
    assert rest.strip() or flag == "--help", flag


def test_cli_warns_about_characters_the_tokenizer_lacks(tmp_path, capsys):
  tok = train_sentencepiece(["1+2=3", "4-1=3"] * 10, 11, cover_ascii=False)
  tok.save(str(tmp_path))
  make_hf_checkpoint(
    tmp_path, "llama", vocab_size=tok.vocab_size, eos_token_id=tok.eos_id
  )
  argv = [f"--model={tmp_path}", "--max_new_tokens=2"]
  assert generate.main(argv + ["--prompt=1+2="]) == 0
  assert "warning" not in capsys.readouterr().err
  assert generate.main(argv + ["--prompt=What is 2+2?"]) == 0
  err = capsys.readouterr().err
  assert "tokenizer does not know: 'W' 'h' 'a' 't' ' ' 'i' 's' '?';" in err


def test_cli_token_ids_without_tokenizer(checkpoint, tmp_path, capsys):
  """A checkpoint with no tokenizer: ids in, ids out, as HF generate."""
  path, tok, hf = checkpoint
  bare = tmp_path / "bare"
  bare.mkdir()
  for name in os.listdir(path):
    if not name.startswith("tokenizer"):
      os.symlink(os.path.join(path, name), bare / name)
  prompt = "What is 12+7"
  with pytest.raises(SystemExit, match="--token_ids"):
    generate.main([f"--model={bare}", f"--prompt={prompt}"])
  ids = tok.encode(prompt, add_bos=True)
  argv = [f"--model={bare}", "--token_ids", "--max_new_tokens=10"]
  assert generate.main(argv + ["--prompt=" + ",".join(map(str, ids))]) == 0
  (line,) = _completions(capsys.readouterr().out)
  with torch.no_grad():
    ref = hf.generate(
      torch.tensor([ids]),
      max_new_tokens=10,
      do_sample=False,
      pad_token_id=tok.pad_id,
      eos_token_id=tok.eos_id,
    )[0, len(ids) :].tolist()
  ref = ref[: ref.index(tok.eos_id) + 1] if tok.eos_id in ref else ref
  assert [int(x) for x in line.split()] == ref
  with pytest.raises(SystemExit, match="not a list of integers"):
    generate.main(argv + ["--prompt=1 two"])
  with pytest.raises(SystemExit, match=r"ids in \[0, "):
    generate.main(argv + [f"--prompt=1 {tok.vocab_size}"])
  with pytest.raises(SystemExit, match="--stop needs a tokenizer"):
    generate.main(argv + ["--prompt=1 2", "--stop=x"])
