"""CLI smoke test on a tiny checkpoint + SentencePiece tokenizer directory."""

import numpy as np
import pytest
import torch
from hf_helpers import make_hf_checkpoint

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
  lines = stdout.strip().split("\n")
  return [lines[i + 1] for i, x in enumerate(lines) if x.startswith("===")]


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
  ids = tok.encode(prompt)
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
  assert generate.main(argv + ["--num_samples=3", "--top_p=0.9"]) == 0
  assert len(_completions(capsys.readouterr().out)) == 6
  argv += ["--num_beams=3", "--num_return_sequences=2", "--stop=fox"]
  assert generate.main(argv + ["--max_new_tokens=6"]) == 0
  out = _completions(capsys.readouterr().out)
  assert len(out) == 4 and out[0].startswith("The quick")
