#!/usr/bin/env python3
"""Builds src/ledger/model_prices.json, the price table shipped in the binary, from LiteLLM's
model_prices_and_context_window.json (MIT): keeps only the fields switchyard reads.

    scripts/update-prices.py path/to/model_prices.json
"""
import json
import sys
from pathlib import Path

FIELDS = [
    "litellm_provider",
    "mode",
    "input_cost_per_token",
    "output_cost_per_token",
    "cache_read_input_token_cost",
    "cache_creation_input_token_cost",
    "max_input_tokens",
    "max_output_tokens",
]

src = json.load(open(sys.argv[1]))
out = {}
for name, spec in sorted(src.items()):
    if name == "sample_spec" or not isinstance(spec, dict):
        continue
    row = {k: spec[k] for k in FIELDS if isinstance(spec.get(k), (int, float, str))}
    if "input_cost_per_token" in row or "max_input_tokens" in row:
        out[name] = row
dest = Path(__file__).resolve().parents[1] / "src" / "ledger" / "model_prices.json"
dest.write_text(json.dumps(out, separators=(",", ":"), sort_keys=True) + "\n")
print(f"{len(out)} models -> {dest} ({dest.stat().st_size} bytes)")
