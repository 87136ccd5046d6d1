"""Print completions of a checkpoint directory for some prompts.

  python -m rlx.generate --model=runs/arithmetic/export --prompt="7+8-3=" \
    --stop="</answer>"

Greedy by default (as HF `generate` without a generation config);
`--temperature=0.7 --top_p=0.9 --num_samples=4` samples, `--num_beams=4`
runs beam search (HF semantics, `--early_stopping`). Each completion's
header gives its length and `log-prob`: the model's log-probability of the
completion given the prompt (the sum over its tokens, at temperature 1;
`per token` is that sum over the length; 0 would mean certain), and for
beam search the `beam score` HF ranks beams by (`log-prob / length **
length_penalty`).

DIR holds an HF `config.json` + safetensors and, unless `--token_ids` or
`--tokenizer` is given, a tokenizer (`tokenizer.json` or
`tokenizer.model`). As HF's `tokenizer(prompt)`, BOS goes first when the
tokenizer adds one (`--add_bos` / `--no-add_bos` override); `--chat` wraps
each prompt as a user turn of the chat template. A prompt with characters
the tokenizer does not know is warned about (they become `<unk>`).
Generation stops on the EOS ids of `config.json`, `generation_config.json`
and the tokenizer, and on `--stop` strings (matched on their token ids as
`encode` gives them). `--token_ids`: prompts are token ids and completions
are printed as ids, for a checkpoint without a tokenizer.
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
    prog="rlx-generate",
    description=__doc__.split("\n")[0],
    epilog="See the module docstring (README, 'Try the trained model').",
  )
  p.add_argument("--model", required=True, help="checkpoint directory")
  p.add_argument(
    "--prompt",
    action="append",
    required=True,
    help="a prompt (repeat the flag for several); with --token_ids, its "
    "token ids, e.g. '2 17 5' or '2,17,5'",
  )
  p.add_argument(
    "--token_ids",
    action="store_true",
    help="prompts are token ids (used as given: no BOS is added) and "
    "completions are printed as ids; needs no tokenizer",
  )
  p.add_argument(
    "--tokenizer",
    default=None,
    help="tokenizer directory or file (default: the --model directory)",
  )
  p.add_argument(
    "--max_new_tokens", type=int, default=64, help="tokens to generate at most"
  )
  p.add_argument(
    "--temperature",
    type=float,
    default=0.0,
    help="0 (the default): greedy; > 0: sample at this temperature",
  )
  p.add_argument(
    "--greedy", action="store_true", help="temperature 0 (the default)"
  )
  p.add_argument(
    "--num_samples",
    type=int,
    default=1,
    help="completions per prompt (sampling: needs --temperature > 0)",
  )
  p.add_argument(
    "--top_k", type=int, default=0, help="sampling: keep the k best (0: off)"
  )
  p.add_argument(
    "--top_p",
    type=float,
    default=1.0,
    help="sampling: keep the most probable tokens up to this mass (1: off)",
  )
  p.add_argument(
    "--min_p",
    type=float,
    default=0.0,
    help="sampling: drop tokens below min_p x the best one's prob (0: off)",
  )
  p.add_argument(
    "--num_beams", type=int, default=1, help="> 1: beam search (no sampling)"
  )
  p.add_argument(
    "--length_penalty",
    type=float,
    default=1.0,
    help="beam search: score = log-prob / length ** length_penalty",
  )
  p.add_argument(
    "--num_return_sequences",
    type=int,
    default=1,
    help="beam search: the best beams printed per prompt",
  )
  p.add_argument(
    "--early_stopping",
    default="false",
    choices=("false", "true", "never"),
    help="beam search: HF's early_stopping",
  )
  p.add_argument("--seed", type=int, default=0, help="sampling: random seed")
  p.add_argument(
    "--stop",
    action="append",
    default=[],
    help="stop after this string (repeatable), e.g. '</answer>'",
  )
  p.add_argument(
    "--add_bos",
    action=argparse.BooleanOptionalAction,
    default=None,
    help="put BOS first (default: as the tokenizer does)",
  )
  p.add_argument(
    "--chat",
    action="store_true",
    help="wrap each prompt as a user turn of the tokenizer's chat template",
  )
  p.add_argument(
    "--think_end",
    default="",
    help="budget forcing: the end-of-thinking string, e.g. '</think>'",
  )
  p.add_argument(
    "--wait",
    default="Wait",
    help="budget forcing: inserted when thinking ends too early",
  )
  p.add_argument(
    "--min_thinking_tokens",
    type=int,
    default=0,
    help="budget forcing: think at least this long (inserting --wait)",
  )
  p.add_argument(
    "--max_thinking_tokens",
    type=int,
    default=None,
    help="budget forcing: force --think_end after this many tokens",
  )
  p.add_argument(
    "--max_waits",
    type=int,
    default=1 << 30,
    help="budget forcing: insert --wait at most this many times",
  )
  p.add_argument(
    "--dtype",
    default="float32",
    choices=("float32", "bfloat16"),
    help="params and compute dtype",
  )
  return p


def _check_args(p: argparse.ArgumentParser, args) -> None:
  """Refuses flag combinations that would be silently ignored."""
  if args.greedy:
    args.temperature = 0.0
  sampling = args.temperature > 0
  if args.num_beams > 1 and sampling:
    p.error(
      "--num_beams > 1 is beam search, which does not sample: drop "
      "--temperature"
    )
  if args.num_samples > 1 and not sampling:
    p.error(
      f"--num_samples={args.num_samples} with greedy decoding would "
      "print identical completions: add --temperature (e.g. 1.0)"
    )
  filters = {
    "--top_k": args.top_k != 0,
    "--top_p": args.top_p != 1.0,
    "--min_p": args.min_p != 0.0,
  }
  for flag, given in filters.items():
    if given and not sampling:
      p.error(f"{flag} only applies when sampling: add --temperature")
  if args.num_return_sequences > 1 and args.num_beams == 1:
    p.error("--num_return_sequences is for beam search: add --num_beams")


def _load_tokenizer(args):
  """The tokenizer, or None with `--token_ids` when there is none."""
  path = args.tokenizer or args.model
  try:
    return load_tokenizer(path)
  except FileNotFoundError as e:
    if args.token_ids and args.tokenizer is None:
      return None
    raise SystemExit(
      f"error: {e}. Pass --token_ids to give prompts as token ids (and get "
      "completions as ids), or --tokenizer=DIR"
    ) from e


def _parse_ids(text: str, vocab_size: int) -> list[int]:
  try:
    ids = [int(x) for x in text.replace(",", " ").split()]
  except ValueError:
    raise SystemExit(
      f"error: --token_ids: prompt {text!r} is not a list of integers"
    ) from None
  bad = [i for i in ids if not 0 <= i < vocab_size]
  if not ids or bad:
    raise SystemExit(
      f"error: --token_ids: prompt {text!r} needs ids in [0, {vocab_size})"
    )
  return ids


def _config_json(directory: str, name: str) -> dict:
  path = os.path.join(directory, name)
  if not os.path.exists(path):
    return {}
  with open(path) as f:
    return json.load(f)


def _eos_ids(tok, config, directory: str) -> tuple[int, ...]:
  """The tokenizer's EOS, config.json's and generation_config.json's."""
  found = [config.eos_token_id]
  found.append(
    _config_json(directory, "generation_config.json").get("eos_token_id")
  )
  if tok is not None:
    found.append(tok.eos_id)
  ids = set()
  for eos in found:
    if eos is not None:
      ids.update([eos] if isinstance(eos, int) else eos)
  return tuple(sorted(int(i) for i in ids))


def _pad_id(tok, directory: str) -> int:
  if tok is not None:
    return tok.pad_id
  pad = _config_json(directory, "config.json").get("pad_token_id")
  return int(pad) if isinstance(pad, int) else 0


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


def _warn_unknown(tok, prompts: list[str]) -> None:
  for i, prompt in enumerate(prompts):
    unknown = tok.unknown_chars(prompt)
    if unknown:
      print(
        f"warning: prompt {i} has characters the tokenizer does not know: "
        f"{' '.join(map(repr, unknown))}; each run of them becomes one <unk> "
        "token, which the model never saw in training, so expect noise. Use "
        "the prompt format the model was trained on.",
        file=sys.stderr,
      )


def _needs_tokenizer(args) -> str | None:
  for flag, used in (
    ("--stop", bool(args.stop)),
    ("--chat", args.chat),
    ("--think_end", bool(args.min_thinking_tokens or args.max_thinking_tokens)),
  ):
    if used:
      return flag
  return None


def main(argv=None) -> int:
  parser = _parser()
  args = parser.parse_args(sys.argv[1:] if argv is None else argv)
  _check_args(parser, args)
  tok = _load_tokenizer(args)
  if tok is None and _needs_tokenizer(args):
    raise SystemExit(
      f"error: {_needs_tokenizer(args)} needs a tokenizer, and {args.model} "
      "has none: pass --tokenizer=DIR"
    )
  model = load_pretrained(args.model, dtype=args.dtype, param_dtype=args.dtype)
  graphdef, params = nnx.split(model)
  if args.token_ids:
    prompts = [_parse_ids(p, model.config.vocab_size) for p in args.prompt]
  else:
    _warn_unknown(tok, args.prompt)
    prompts = [_prompt_ids(tok, p, args) for p in args.prompt]
  pad_id = _pad_id(tok, args.model)
  tokens, mask = decoding.pad_prompts(prompts, pad_id)
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
      pad_id=pad_id,
    )
    out = decoding.make_beam_search(graphdef, params, cfg)(params, tokens, mask)
    per_prompt = args.num_return_sequences
  else:
    forcing = args.min_thinking_tokens > 0 or args.max_thinking_tokens
    encode = (lambda s: ()) if tok is None else tok.encode
    cfg = decoding.SamplingConfig(
      max_new_tokens=args.max_new_tokens,
      temperature=args.temperature,
      top_k=args.top_k,
      top_p=args.top_p,
      min_p=args.min_p,
      num_samples=args.num_samples,
      eos_ids=eos,
      stop_sequences=tuple(tuple(encode(s)) for s in args.stop),
      pad_id=pad_id,
      think_end=tuple(encode(args.think_end)) if forcing else (),
      wait=tuple(encode(args.wait)) if args.min_thinking_tokens else (),
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
    logprob = float(out.sum_logprobs[row])
    score = f"log-prob {logprob:.3f} ({logprob / max(n, 1):.3f} per token)"
    if out.beam_scores is not None:
      score += f", beam score {float(out.beam_scores[row]):.3f}"
    print(f"=== prompt {i} completion {j}: {n} tokens, {score} ===")
    ids = out.tokens[row, :n].tolist()
    if args.token_ids:
      print(" ".join(str(t) for t in ids))
    else:
      print(args.prompt[i] + tok.decode(ids))
  total = int(out.lengths.sum())
  print(
    f"# {total} tokens in {seconds:.2f}s (compile included)", file=sys.stderr
  )
  return 0


if __name__ == "__main__":
  sys.exit(main())
