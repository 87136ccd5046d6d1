"""Supervised fine-tuning: next-token loss on completion tokens only."""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp

from rlx.algos import losses
from rlx.algos.validate import check_field


@dataclasses.dataclass(frozen=True)
class SFTConfig:
  """loss_type: bnpo (mean over the minibatch's completion tokens, default),
  dapo (every token of the rollout batch weighs the same), grpo (mean per
  sequence, then over sequences) or seq_sum."""

  loss_type: str = "bnpo"

  def __post_init__(self):
    check_field(
      self,
      "loss_type",
      self.loss_type in losses.LOSS_AGGREGATIONS,
      losses.LOSS_AGGREGATIONS,
    )

  needs_reference = False
  needs_entropy = False

  def prepare_batch(self, batch: dict, group_size: int | None = None, **_):
    return batch, {}

  def loss(self, out: dict, batch: dict, ctx: dict):
    return sft_loss(
      self,
      out["logp"],
      batch["completion_mask"],
      dapo_normalizer=ctx.get("dapo_normalizer"),
    )


def sft_loss(config: SFTConfig, logp_BxT, mask_BxT, *, dapo_normalizer=None):
  """Masked negative log-likelihood; metrics include perplexity."""
  mask = jnp.asarray(mask_BxT, bool)
  loss = losses.aggregate(
    -logp_BxT, mask, config.loss_type, dapo_normalizer=dapo_normalizer
  )
  nll = losses.masked_mean(-logp_BxT, mask)
  return loss, {"loss": loss, "nll": nll, "perplexity": jnp.exp(nll)}
