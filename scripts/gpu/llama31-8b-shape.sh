#!/usr/bin/env bash
# GPU machine: a checkpoint with Llama-3.1-8B's shapes and its real config.json (4.x Hub form, rope type llama3; random
# bf16 weights, 4 shards + index) is written to /dev/shm, inspected, loaded and RTN-quantized to 4 bits (g128) on CUDA,
# and the float and quantized models' logits are computed for a few ids. Wall time and peak RSS of each step go to
# $OUT/llama31-8b.log. Needs the published matq unpacked at $MATQ (default /tmp/matq/publish) and MATQ_TORCH_LIB.
set -uo pipefail
MATQ=${MATQ:-/tmp/matq/publish/Matq.Cli}
D=/dev/shm/llama31-8b
LOG=${OUT:-/tmp}/llama31-8b.log
export MATQ_TORCH_LIB=${MATQ_TORCH_LIB:-/opt/torch/.venv/lib/python3.12/site-packages/torch/lib}
step() { echo "\$ $*" | tee -a "$LOG"; /usr/bin/time -f "wall %e s, peak RSS %M KB" "$@" 2>&1 | tail -25 | tee -a "$LOG"; }
python3 - "$D" <<'PY' 2>&1 | tee -a "$LOG"
import json, os, sys, time, torch
from safetensors.torch import save_file
d = sys.argv[1]; os.makedirs(d, exist_ok=True)
cfg = {"architectures": ["LlamaForCausalLM"], "attention_bias": False, "attention_dropout": 0.0, "bos_token_id": 128000,
       "eos_token_id": 128001, "hidden_act": "silu", "hidden_size": 4096, "initializer_range": 0.02, "intermediate_size": 14336,
       "max_position_embeddings": 131072, "mlp_bias": False, "model_type": "llama", "num_attention_heads": 32,
       "num_hidden_layers": 32, "num_key_value_heads": 8, "pretraining_tp": 1, "rms_norm_eps": 1e-05,
       "rope_scaling": {"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 8192, "rope_type": "llama3"},
       "rope_theta": 500000.0, "tie_word_embeddings": False, "torch_dtype": "bfloat16", "transformers_version": "4.43.0.dev0",
       "use_cache": True, "vocab_size": 128256}
json.dump(cfg, open(f"{d}/config.json", "w"), indent=2)
H, I, V, L, KV = 4096, 14336, 128256, 32, 1024
shapes = [("model.embed_tokens.weight", (V, H))]
for i in range(L):
    p = f"model.layers.{i}."
    shapes += [(p + "self_attn.q_proj.weight", (H, H)), (p + "self_attn.k_proj.weight", (KV, H)), (p + "self_attn.v_proj.weight", (KV, H)),
               (p + "self_attn.o_proj.weight", (H, H)), (p + "mlp.gate_proj.weight", (I, H)), (p + "mlp.up_proj.weight", (I, H)),
               (p + "mlp.down_proj.weight", (H, I)), (p + "input_layernorm.weight", (H,)), (p + "post_attention_layernorm.weight", (H,))]
shapes += [("model.norm.weight", (H,)), ("lm_head.weight", (V, H))]
total = sum(torch.Size(s).numel() for _, s in shapes)
print(f"parameters {total:,}")
t0 = time.time(); g = torch.Generator(device="cuda").manual_seed(1234)
shards = [[] for _ in range(4)]; per = total / 4; acc = 0
for n, s in shapes:
    shards[min(3, int(acc // per))].append((n, s)); acc += torch.Size(s).numel()
wmap = {}
for k, sh in enumerate(shards):
    name = f"model-{k+1:05d}-of-00004.safetensors"; ts = {}
    for n, s in sh:
        t = torch.ones(s, dtype=torch.bfloat16) if len(s) == 1 else (torch.randn(s, generator=g, device="cuda", dtype=torch.float32) * 0.02).to(torch.bfloat16).cpu()
        ts[n] = t; wmap[n] = name
    save_file(ts, f"{d}/{name}", metadata={"format": "pt"}); del ts
json.dump({"metadata": {"total_size": total * 2}, "weight_map": wmap}, open(f"{d}/model.safetensors.index.json", "w"), indent=2)
print(f"wrote {d} in {time.time() - t0:.1f} s")
PY
du -sh "$D" | tee -a "$LOG"
step "$MATQ" inspect "$D" --limit 3
step "$MATQ" logits --model "$D" --ids 128000,791,1176,315,279,3723,4273,374 --device cuda --out /dev/shm/float-logits.safetensors
step "$MATQ" quantize --model "$D" --method rtn --bits 4 --group 128 --device cuda --out /dev/shm/q4.matq
ls -la /dev/shm/ | tee -a "$LOG"
step "$MATQ" logits --model /dev/shm/q4.matq --ids 128000,791,1176,315,279,3723,4273,374 --device cuda --compare /dev/shm/float-logits.safetensors
