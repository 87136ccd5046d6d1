"""Decoders: prefill once, then a jitted `lax.scan` over the KV cache."""

from rlx.decoding.api import make_beam_search, make_sampler
from rlx.decoding.beam import BeamConfig, beam_search
from rlx.decoding.prompts import bucket_length, pad_prompts
from rlx.decoding.sampling import (
  DecodeOutput,
  SamplingConfig,
  filter_logits,
  sample,
  sample_from_logprobs,
)
from rlx.decoding.step import (
  cache_plan,
  grow_cache,
  model_step_fn,
  repeat_rows,
)

__all__ = [
  "BeamConfig",
  "DecodeOutput",
  "SamplingConfig",
  "beam_search",
  "bucket_length",
  "cache_plan",
  "filter_logits",
  "grow_cache",
  "make_beam_search",
  "make_sampler",
  "model_step_fn",
  "pad_prompts",
  "repeat_rows",
  "sample",
  "sample_from_logprobs",
]
