"""Tiny random Hugging Face checkpoints built with `transformers` for tests."""

import torch
import transformers

_CONFIGS = {
  "llama": transformers.LlamaConfig,
  "qwen2": transformers.Qwen2Config,
  "qwen3": transformers.Qwen3Config,
}


def make_hf_model(family: str = "qwen2", seed: int = 0, **overrides):
  """A tiny fp32 eager-attention HF model with far-from-uniform logits."""
  kwargs = dict(
    vocab_size=128,
    hidden_size=64,
    intermediate_size=96,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=256,
    initializer_range=0.3,
    rms_norm_eps=1e-5,
    rope_theta=1000.0,
    tie_word_embeddings=False,
    bos_token_id=1,
    eos_token_id=2,
    pad_token_id=0,
  )
  kwargs.update(overrides)
  config = _CONFIGS[family](**kwargs)
  config._attn_implementation = "eager"
  torch.manual_seed(seed)
  model = transformers.AutoModelForCausalLM.from_config(
    config, attn_implementation="eager", dtype=torch.float32
  )
  with torch.no_grad():  # random norms and biases, not just ones / zeros
    for name, p in model.named_parameters():
      if name.endswith("norm.weight"):
        p.copy_(1.0 + 0.2 * torch.randn_like(p))
      elif name.endswith("bias"):
        p.copy_(0.2 * torch.randn_like(p))
  return model.eval()


def make_hf_checkpoint(path, family: str = "qwen2", seed: int = 0, **overrides):
  """Save a tiny random HF model to `path`; returns (path, torch model)."""
  model = make_hf_model(family, seed, **overrides)
  model.save_pretrained(str(path), safe_serialization=True)
  return str(path), model


def make_hf_tokenizer(path, texts, vocab_size: int = 300):
  """A byte-level BPE `tokenizer.json` + `tokenizer_config.json` in `path`
  (ids: <pad> 0, <unk> 1, <s> 2, </s> 3). As Llama's, `tokenizer(text)`
  puts BOS first; the chat template writes `<s>role: content</s>` turns."""
  import json

  from tokenizers import (
    Tokenizer,
    decoders,
    models,
    pre_tokenizers,
    processors,
    trainers,
  )

  tok = Tokenizer(models.BPE(unk_token="<unk>"))
  tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
  tok.decoder = decoders.ByteLevel()
  trainer = trainers.BpeTrainer(
    vocab_size=vocab_size,
    special_tokens=["<pad>", "<unk>", "<s>", "</s>"],
    initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
  )
  tok.train_from_iterator(texts, trainer)
  tok.post_processor = processors.TemplateProcessing(
    single="<s> $A", special_tokens=[("<s>", 2)]
  )
  tok.save(str(path / "tokenizer.json"))
  config = {
    "bos_token": "<s>",
    "eos_token": {"__type": "AddedToken", "content": "</s>", "special": True},
    "pad_token": "<pad>",
    "tokenizer_class": "PreTrainedTokenizerFast",
    "chat_template": (
      "{% for m in messages %}<s>{{ m['role'] }}: {{ m['content'] }}</s>"
      "{% endfor %}{% if add_generation_prompt %}<s>assistant:{% endif %}"
    ),
  }
  with open(path / "tokenizer_config.json", "w") as f:
    json.dump(config, f)
  return str(path)
