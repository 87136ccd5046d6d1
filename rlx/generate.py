"""Print completions of a checkpoint directory for some prompts.

  python -m rlx.generate --model=DIR --prompt="What is 2+2?" \
    --num_samples=4 --temperature=0.7 --top_p=0.9 --max_new_tokens=64

DIR holds an HF `config.json` + safetensors and a tokenizer
(`tokenizer.json` or `tokenizer.model`). As HF's `tokenizer(prompt)`, BOS
goes first when the tokenizer adds one (`--add_bos` / `--no-add_bos`
override); `--chat` wraps each prompt as a user turn of the chat template.
Generation stops on the EOS ids of `config.json`, `generation_config.json`
and the tokenizer. `--num_beams>1` runs beam search (HF semantics,
`--early_stopping`). `--stop` strings are matched on their token ids (as
`encode` gives them).
Budget forcing: `--think_end='</think>' --wait='Wait'
--min_thinking_tokens=N --max_thinking_tokens=M`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import jax
import numpy as np
from flax import nnx

from rlx import decoding
from rlx.data import load_tokenizer
from rlx.models.hf import load_pretrained


def _parser() -> argparse.ArgumentParser:
  p = argparse.ArgumentParser(
    prog="rlx-generate", description=__doc__.split("\n")[0]
  )
  p.add_argument("--model", required=True, help="checkpoint directory")
  p.add_argument("--prompt", action="append", required=True)
  p.add_argument("--max_new_tokens", type=int, default=64)
  p.add_argument("--num_samples", type=int, default=1)
  p.add_argument("--temperature", type=float, default=1.0)
  p.add_argument("--top_k", type=int, default=0)
  p.add_argument("--top_p", type=float, default=1.0)
  p.add_argument("--min_p", type=float, default=0.0)
  p.add_argument("--greedy", action="store_true", help="temperature 0")
  p.add_argument("--num_beams", type=int, default=1)
  p.add_argument("--length_penalty", type=float, default=1.0)
  p.add_argument("--num_return_sequences", type=int, default=1)
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--stop", action="append", default=[], help="stop string")
  p.add_argument(
    "--add_bos",
    action=argparse.BooleanOptionalAction,
    default=None,
    help="default: as the tokenizer does",
  )
  p.add_argument("--chat", action="store_true", help="apply chat template")
  p.add_argument(
    "--early_stopping", default="false", choices=("false", "true", "never")
  )
  p.add_argument("--think_end", default="", help="e.g. '</think>'")
  p.add_argument("--wait", default="Wait", help="inserted by budget forcing")
  p.add_argument("--min_thinking_tokens", type=int, default=0)
  p.add_argument("--max_thinking_tokens", type=int, default=None)
  p.add_argument("--max_waits", type=int, default=1 << 30)
  p.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"))
  return p


def _eos_ids(tok, config, directory: str) -> tuple[int, ...]:
  """The tokenizer's EOS, config.json's and generation_config.json's."""
  found = [tok.eos_id, config.eos_token_id]
  path = os.path.join(directory, "generation_config.json")
  if os.path.exists(path):
    with open(path) as f:
      found.append(json.load(f).get("eos_token_id"))
  ids = set()
  for eos in found:
    if eos is not None:
      ids.update([eos] if isinstance(eos, int) else eos)
  return tuple(sorted(int(i) for i in ids))


def _prompt_ids(tok, prompt: str, args) -> list[int]:
  if args.chat:
    if not getattr(tok, "chat_template", None):
      raise SystemExit(
        f"--chat: the tokenizer in {args.model} has no chat template"
      )
    prompt = tok.apply_chat_template([{"role": "user", "content": prompt}])
  add_bos = tok.adds_bos if args.add_bos is None else args.add_bos
  ids = tok.encode(prompt, add_bos=add_bos)
  if add_bos and ids[1:2] == [tok.bos_id]:  # the template wrote BOS already
    ids = ids[1:]
  return ids


def main(argv=None) -> int:
  args = _parser().parse_args(sys.argv[1:] if argv is None else argv)
  tok = load_tokenizer(args.model)
  model = load_pretrained(args.model, dtype=args.dtype, param_dtype=args.dtype)
  graphdef, params = nnx.split(model)
  prompts = [_prompt_ids(tok, p, args) for p in args.prompt]
  tokens, mask = decoding.pad_prompts(prompts, tok.pad_id)
  eos = _eos_ids(tok, model.config, args.model)
  start = time.perf_counter()
  if args.num_beams > 1:
    cfg = decoding.BeamConfig(
      max_new_tokens=args.max_new_tokens,
      num_beams=args.num_beams,
      length_penalty=args.length_penalty,
      early_stopping={"true": True, "false": False}.get(
        args.early_stopping, args.early_stopping
      ),
      num_return_sequences=args.num_return_sequences,
      eos_ids=eos,
      pad_id=tok.pad_id,
    )
    out = decoding.make_beam_search(graphdef, params, cfg)(params, tokens, mask)
    per_prompt = args.num_return_sequences
  else:
    forcing = args.min_thinking_tokens > 0 or args.max_thinking_tokens
    cfg = decoding.SamplingConfig(
      max_new_tokens=args.max_new_tokens,
      temperature=0.0 if args.greedy else args.temperature,
      top_k=args.top_k,
      top_p=args.top_p,
      min_p=args.min_p,
      num_samples=args.num_samples,
      eos_ids=eos,
      stop_sequences=tuple(tuple(tok.encode(s)) for s in args.stop),
      pad_id=tok.pad_id,
      think_end=tuple(tok.encode(args.think_end)) if forcing else (),
      wait=tuple(tok.encode(args.wait)) if args.min_thinking_tokens else (),
      min_thinking_tokens=args.min_thinking_tokens,
      max_thinking_tokens=args.max_thinking_tokens,
      max_waits=args.max_waits,
    )
    out = decoding.make_sampler(graphdef, params, cfg)(
      params, tokens, mask, jax.random.key(args.seed)
    )
    per_prompt = args.num_samples
  out = jax.tree.map(np.asarray, out)
  seconds = time.perf_counter() - start
  for row in range(out.tokens.shape[0]):
    i, j = divmod(row, per_prompt)
    n = int(out.lengths[row])
    text = tok.decode(out.tokens[row, :n].tolist())
    print(
      f"=== prompt {i} completion {j}: {n} tokens, "
      f"score {float(out.scores[row]):.4f} ==="
    )
    print(args.prompt[i] + text)
  total = int(out.lengths.sum())
  print(
    f"# {total} tokens in {seconds:.2f}s (compile included)", file=sys.stderr
  )
  return 0


if __name__ == "__main__":
  sys.exit(main())
