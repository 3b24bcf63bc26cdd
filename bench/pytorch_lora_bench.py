#!/usr/bin/env python3
"""PyTorch + PEFT baseline for LoRA fine-tuning throughput on CPU (benchmark only).

What
    A randomly initialised LlamaForCausalLM shaped like SmolLM2-135M (hidden
    576, intermediate 1536, 30 layers, 9 heads, 3 KV heads, vocab 49152, tied
    embeddings, rope_theta 100000) wrapped in PEFT LoRA (rank 16, alpha 32,
    dropout 0, on q/k/v/o/gate/up/down projections), trained with AdamW
    (lr 1e-4, LoRA parameters only) on random token batches of
    --batch x --seq. One step = forward with labels, loss.backward(),
    optimizer.step(), zero_grad(). --warmup untimed steps, then --steps timed
    ones. Prints one JSON line with tokens/s, mean step time, peak RSS and
    parameter counts.

Why
    The reference point for Harambee's Rust LoRA trainer: the same model
    shape, adapter and optimiser in the standard Python stack, so throughput
    and memory can be compared like for like. Weights are random (no hub
    downloads); speed does not depend on their values.

Usage (from the repository root; pip install torch transformers peft):
    python3 bench/pytorch_lora_bench.py [--threads 2] [--seq 256] [--batch 1]
    python3 bench/pytorch_lora_bench.py --layers 4 --steps 3    # quick try
"""
import argparse
import json
import resource
import sys
import time
import warnings

import peft
import torch
import transformers
from peft import LoraConfig, get_peft_model
from transformers import LlamaConfig, LlamaForCausalLM

LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--seq", type=int, default=256)
    p.add_argument("--layers", type=int, default=30, help="transformer blocks (30 = SmolLM2-135M)")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps")
    p.add_argument("--steps", type=int, default=5, help="timed steps")
    p.add_argument("--rank", type=int, default=16)
    p.add_argument("--alpha", type=float, default=32.0)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args()


def smollm2_135m_config(layers):
    return LlamaConfig(
        vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=layers,
        num_attention_heads=9, num_key_value_heads=3, rope_theta=100000.0, rms_norm_eps=1e-5,
        max_position_embeddings=2048, tie_word_embeddings=True, bos_token_id=0,
        eos_token_id=0,
    )


def build(args):
    """Random SmolLM2-shaped model with LoRA adapters, and AdamW over the adapters."""
    torch.manual_seed(args.seed)
    base = LlamaForCausalLM(smollm2_135m_config(args.layers))
    lora = LoraConfig(r=args.rank, lora_alpha=args.alpha, target_modules=LORA_TARGETS,
                      lora_dropout=0.0, bias="none", task_type="CAUSAL_LM")
    model = get_peft_model(base, lora)
    model.train()
    trainable = [p for p in model.parameters() if p.requires_grad]
    return model, torch.optim.AdamW(trainable, lr=args.lr)


def train_step(model, optimizer, batch):
    loss = model(input_ids=batch, labels=batch).loss
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return loss.item()


def main():
    args = parse_args()
    warnings.filterwarnings("ignore", category=FutureWarning)
    torch.set_num_threads(args.threads)
    model, optimizer = build(args)
    gen = torch.Generator().manual_seed(args.seed + 1)
    vocab = model.config.vocab_size

    def batch():
        return torch.randint(0, vocab, (args.batch, args.seq), generator=gen)

    for _ in range(args.warmup):
        train_step(model, optimizer, batch())
    batches = [batch() for _ in range(args.steps)]
    start = time.perf_counter()
    for b in batches:
        loss = train_step(model, optimizer, b)
    elapsed = time.perf_counter() - start

    step_s = elapsed / args.steps
    print(json.dumps({
        "framework": "pytorch+peft",
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "peft": peft.__version__,
        "attn_implementation": model.config._attn_implementation,
        "threads": args.threads,
        "tokens_per_s": round(args.batch * args.seq / step_s, 2),
        "step_s": round(step_s, 4),
        "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "trainable_params": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "total_params": sum(p.numel() for p in model.parameters()),
        "seq": args.seq,
        "batch": args.batch,
        "layers": args.layers,
        "rank": args.rank,
        "warmup": args.warmup,
        "steps": args.steps,
        "final_loss": round(loss, 4),
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
