"""The model-collapse reproduction, --quick: its claims hold in results.json."""

import numpy as np
import pytest
from reproduction_helpers import run_quick


@pytest.mark.slow
def test_quick_run_collapses_faster_without_real_data(tmp_path):
  results = run_quick("model_collapse", tmp_path, timeout=600)
  assert (tmp_path / "model_collapse.png").exists()
  gens = results["generations"]
  G = gens[-1]
  assert gens == list(range(G + 1)) and G >= 4
  s, r = results["arms"]["synthetic"], results["arms"]["real10"]
  for arm in (s, r):
    for key in ("real_ppl", "tail_mass", "kl"):
      assert len(arm[key]) == G + 1 and np.all(np.isfinite(arm[key]))
  # Generation 0 (trained on real data only) is shared by both arms.
  assert s["kl"][0] == r["kl"][0] and s["real_ppl"][0] == r["real_ppl"][0]
  true = results["true"]
  # No model beats the truth: real-data perplexity is above the chain's own,
  # and the sampled KL is positive (would fail with a wrong log-likelihood
  # on either side).
  assert min(s["real_ppl"] + r["real_ppl"]) > true["real_ppl"]
  assert min(s["kl"] + r["kl"]) > 0
  # Collapse: without real data the held-out real perplexity and KL rise by
  # many standard errors over the generations (fails if recursive training
  # does not degrade the model, e.g. if each generation trained on real
  # data by mistake).
  assert s["kl"][G] > s["kl"][0] + 5 * (s["kl_se"][G] + s["kl_se"][0])
  assert s["real_ppl"][G] > s["real_ppl"][0]
  # ... and faster than with 10% fresh real data, over the second half of
  # the generations (fails if the real data do not slow the collapse).
  late = slice(G // 2 + 1, None)
  assert np.mean(s["kl"][late]) > np.mean(r["kl"][late])
  assert np.mean(s["real_ppl"][late]) > np.mean(r["real_ppl"][late])
  # The model's errors compound: its mass on impossible transitions grows
  # (the tail of improbable samples in the paper's histograms).
  assert s["impossible_mass"][G] > 2 * s["impossible_mass"][0]
  assert s["sample_above_real_p99"][G] > 2 * s["sample_above_real_p99"][0]
