#!/usr/bin/env python3
"""Check that a LoRA adapter loads in Hugging Face PEFT and reproduces given logits.

What
    Loads BASE_DIR with `transformers.AutoModelForCausalLM.from_pretrained`
    and ADAPTER_DIR with `peft.PeftModel.from_pretrained`. With
    --expect-logits FILE.json it runs the adapted model (float32, eager
    attention, no grad) on FILE's "input_ids" and compares its logits with
    FILE's logits (key "logits", or --key), printing the maximum absolute
    difference; exit status 0 when it is below --tol (default 1e-4), 1
    otherwise. Without --expect-logits it only loads the adapter and prints
    the LoRA parameter names and shapes. Either way the tensor names in
    adapter_model.safetensors must match the LoRA parameters PEFT created
    exactly, else exit status 1: PEFT itself only warns about missing names,
    silently ignores unknown ones, and leaves those matrices at their initial
    values.

Why
    Adapters exported by Harambee's Rust LoRA trainer must be usable by the
    standard Python stack. This is the interoperability check: the Rust side
    writes the adapter plus the logits it computes, and PEFT must agree.

FILE.json format: {"input_ids": [[int, ...], ...], "logits": [[[float] * vocab] * T, ...]}
(one entry per sequence; sequences may differ in length). The fixtures in
crates/llm/tests/fixtures/{llama,qwen2}/reference.json fit, with --key adapter_logits.

Example
    python3 scripts/check_peft_adapter.py crates/llm/tests/fixtures/llama \\
        crates/llm/tests/fixtures/llama/adapter \\
        --expect-logits crates/llm/tests/fixtures/llama/reference.json --key adapter_logits
"""
import argparse
import json
import sys
import warnings
from pathlib import Path

import torch
import transformers
from peft import PeftModel
from safetensors import safe_open
from transformers import AutoModelForCausalLM


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("base_dir", help="Hugging Face checkpoint folder of the base model")
    p.add_argument("adapter_dir", help="PEFT adapter folder (adapter_config.json + weights)")
    p.add_argument("--expect-logits", metavar="FILE.json",
                   help="JSON with input_ids and expected logits to compare against")
    p.add_argument("--key", default="logits", help="logits key in FILE.json (default: logits)")
    p.add_argument("--tol", type=float, default=1e-4, help="max abs difference allowed")
    return p.parse_args()


def load(base_dir, adapter_dir):
    base = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32,
                                                attn_implementation="eager")
    return PeftModel.from_pretrained(base, adapter_dir).eval()


def lora_params(model):
    """LoRA parameters by their on-disk name (PEFT drops the adapter name `.default`)."""
    return {name.replace(".default", ""): p for name, p in model.named_parameters()
            if "lora_" in name}


def check_names(model, adapter_dir):
    """Print the adapter's tensors; True when file and model agree on names and shapes."""
    params = lora_params(model)
    with safe_open(str(Path(adapter_dir) / "adapter_model.safetensors"), "pt") as f:
        # PEFT also accepts names that still carry the adapter name.
        stored = {k.replace(".default", ""): list(f.get_slice(k).get_shape())
                  for k in f.keys()}
    ok = True
    for name in sorted(stored.keys() | params.keys()):
        if name not in params:
            print(f"{name} {stored[name]}: UNEXPECTED (no such LoRA parameter)")
            ok = False
        elif name not in stored:
            print(f"{name} {list(params[name].shape)}: MISSING from the adapter file")
            ok = False
        elif stored[name] != list(params[name].shape):
            print(f"{name} {stored[name]}: SHAPE MISMATCH, model has "
                  f"{list(params[name].shape)}")
            ok = False
        else:
            print(f"{name} {stored[name]}")
    print(f"{len(stored)} adapter tensors, {len(params)} LoRA parameters: "
          f"{'names match' if ok else 'MISMATCH'}")
    return ok


@torch.no_grad()
def max_logit_diff(model, input_ids, expected):
    """Max |logits - expected| over all sequences, positions and vocabulary entries."""
    worst = 0.0
    for i, (ids, want) in enumerate(zip(input_ids, expected, strict=True)):
        got = model(input_ids=torch.tensor([ids])).logits[0].double()
        want = torch.tensor(want, dtype=torch.float64)
        if got.shape != want.shape:
            raise SystemExit(f"sequence {i}: logits shape {list(got.shape)}, "
                             f"expected {list(want.shape)}")
        diff = (got - want).abs().max().item()
        print(f"sequence {i}: {len(ids)} tokens, max abs diff {diff:.3e}")
        worst = max(worst, diff)
    return worst


def main():
    args = parse_args()
    transformers.utils.logging.disable_progress_bar()
    warnings.filterwarnings("ignore", category=FutureWarning)
    model = load(args.base_dir, args.adapter_dir)
    if not check_names(model, args.adapter_dir):
        return 1
    if not args.expect_logits:
        return 0
    with open(args.expect_logits) as f:
        ref = json.load(f)
    worst = max_logit_diff(model, ref["input_ids"], ref[args.key])
    ok = worst < args.tol
    print(f"max abs diff {worst:.3e} (tol {args.tol:g}): {'OK' if ok else 'FAIL'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
