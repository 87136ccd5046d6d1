"""Beam search: same sequences and scores as HF `generate(num_beams=k)`."""

import jax
import numpy as np
import pytest
import torch
from flax import nnx
from hf_helpers import make_hf_checkpoint

from rlx import decoding as dec
from rlx.models.hf import load_pretrained

PAD = 0
N_NEW = 12


@pytest.fixture(scope="module")
def qwen2(tmp_path_factory):
  path, hf = make_hf_checkpoint(tmp_path_factory.mktemp("beam"), "qwen2")
  graphdef, params = nnx.split(load_pretrained(path))
  rng = np.random.default_rng(0)
  prompts = [list(rng.integers(3, 128, n)) for n in (5, 9, 3, 12)]
  tokens, mask = dec.pad_prompts(prompts, PAD, buckets=(16,))
  return hf, graphdef, params, tokens, mask


# eos 59 / 24 / 92 are tokens this random model likes: many hypotheses
# finish early, so the finished-set and early-stop logic matter.
@pytest.mark.parametrize(
  "eos, k, length_penalty, early_stopping, r",
  [
    (24, 2, 1.0, False, 1),
    (24, 3, 0.5, False, 2),
    (59, 4, -1.0, True, 3),
    (24, 4, 0.0, "never", 4),
    (92, 4, 2.0, "never", 2),
    (24, 3, 1.0, True, 1),
    (92, 3, 0.0, False, 3),
  ],
)
def test_beam_matches_hf(qwen2, eos, k, length_penalty, early_stopping, r):
  hf, graphdef, params, tokens, mask = qwen2
  cfg = dec.BeamConfig(
    max_new_tokens=N_NEW,
    num_beams=k,
    length_penalty=length_penalty,
    early_stopping=early_stopping,
    num_return_sequences=r,
    eos_ids=(eos,),
    pad_id=PAD,
  )
  out = dec.make_beam_search(graphdef, params, cfg)(params, tokens, mask)
  out = jax.tree.map(np.asarray, out)
  with torch.no_grad():
    ref = hf.generate(
      torch.tensor(tokens, dtype=torch.long),
      attention_mask=torch.tensor(mask),
      max_new_tokens=N_NEW,
      do_sample=False,
      num_beams=k,
      length_penalty=length_penalty,
      early_stopping=early_stopping,
      num_return_sequences=r,
      pad_token_id=PAD,
      eos_token_id=eos,
      return_dict_in_generate=True,
      output_scores=True,
    )
  seqs = ref.sequences[:, tokens.shape[1] :].numpy()
  seqs = np.pad(seqs, ((0, 0), (0, N_NEW - seqs.shape[1])))
  # HF fills after EOS with `pad_token_id or eos`: compare real tokens.
  np.testing.assert_array_equal(np.where(out.mask, seqs, PAD), out.tokens)
  ends_eos = out.lengths < N_NEW
  last = out.tokens[np.arange(len(seqs)), out.lengths - 1]
  assert (last[ends_eos] == eos).all()
  # EOS is reachable (a length penalty of 2 favours the longest).
  assert ends_eos.any() or length_penalty > 1
  np.testing.assert_allclose(
    out.beam_scores, ref.sequences_scores.numpy(), rtol=1e-5, atol=1e-4
  )
  # Scores are the length-penalised sums of the returned log-probs.
  total = out.raw_logprobs.sum(1)
  np.testing.assert_allclose(out.sum_logprobs, total, rtol=1e-5, atol=1e-4)
  np.testing.assert_allclose(
    out.beam_scores, total / out.lengths**length_penalty, rtol=1e-5, atol=1e-4
  )
  assert out.sampling_logprobs is None
