#!/usr/bin/env python3
"""PyTorch twin of `matq train lm --preset small` for the GPU throughput comparison.

Same architecture as matq's Llama (HF layout: RMSNorm computed in fp32, rotate_half RoPE, GQA by expanding the
KV heads then F.scaled_dot_product_attention(is_causal=True), SwiGLU MLP, tied embedding, fp32 logits), the same
batch/context, and by default the same precision scheme as matq: the model holds bf16 weights, AdamW updates fp32
master copies, grads are clipped to global norm 1 and the loss (cross-entropy on fp32 logits) is read back every
--log-every steps. `--mode autocast` runs the idiomatic PyTorch way instead (fp32 weights under torch.autocast bf16).

Times --steps training steps after --warmup untimed ones (CUDA-synchronized at both ends) and prints ms/step and
tokens/s. Batches are random token windows (throughput does not depend on the text).

  /opt/torch/.venv/bin/python bench/torch/train_step.py                   # small preset, matq's scheme
  /opt/torch/.venv/bin/python bench/torch/train_step.py --mode autocast   # idiomatic PyTorch mixed precision
"""
import argparse
import math
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class RMSNorm(nn.Module):
    def __init__(self, dim, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x):  # [B, T, C]; normalized in fp32 and cast back, as HF Llama does
        h = x.float()
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * h.to(x.dtype)


def rotate_half(x):
    d = x.shape[-1] // 2
    return torch.cat((-x[..., d:], x[..., :d]), dim=-1)


class Attention(nn.Module):
    def __init__(self, a):
        super().__init__()
        self.h, self.kv, self.d = a.heads, a.kv_heads, a.hidden // a.heads
        self.q_proj = nn.Linear(a.hidden, self.h * self.d, bias=False)
        self.k_proj = nn.Linear(a.hidden, self.kv * self.d, bias=False)
        self.v_proj = nn.Linear(a.hidden, self.kv * self.d, bias=False)
        self.o_proj = nn.Linear(self.h * self.d, a.hidden, bias=False)

    def forward(self, x, cos, sin):  # x [B, T, C]; cos/sin [1, 1, T, D]
        b, t, _ = x.shape
        q = self.q_proj(x).view(b, t, self.h, self.d).transpose(1, 2)
        k = self.k_proj(x).view(b, t, self.kv, self.d).transpose(1, 2)
        v = self.v_proj(x).view(b, t, self.kv, self.d).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        g = self.h // self.kv
        if g > 1:  # [B, Hkv, T, D] -> [B, H, T, D], as matq does
            k = k.unsqueeze(2).expand(b, self.kv, g, t, self.d).reshape(b, self.h, t, self.d)
            v = v.unsqueeze(2).expand(b, self.kv, g, t, self.d).reshape(b, self.h, t, self.d)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.o_proj(y.transpose(1, 2).reshape(b, t, self.h * self.d))


class Mlp(nn.Module):
    def __init__(self, a):
        super().__init__()
        self.gate_proj = nn.Linear(a.hidden, a.intermediate, bias=False)
        self.up_proj = nn.Linear(a.hidden, a.intermediate, bias=False)
        self.down_proj = nn.Linear(a.intermediate, a.hidden, bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class Layer(nn.Module):
    def __init__(self, a):
        super().__init__()
        self.input_layernorm = RMSNorm(a.hidden, a.eps)
        self.self_attn = Attention(a)
        self.post_attention_layernorm = RMSNorm(a.hidden, a.eps)
        self.mlp = Mlp(a)

    def forward(self, x, cos, sin):
        x = x + self.self_attn(self.input_layernorm(x), cos, sin)
        return x + self.mlp(self.post_attention_layernorm(x))


class Llama(nn.Module):
    def __init__(self, a):
        super().__init__()
        self.embed_tokens = nn.Embedding(a.vocab, a.hidden)
        self.layers = nn.ModuleList(Layer(a) for _ in range(a.layers))
        self.norm = RMSNorm(a.hidden, a.eps)
        self.lm_head = None if a.tied else nn.Linear(a.hidden, a.vocab, bias=False)
        d = a.hidden // a.heads
        inv = 1.0 / (a.rope_theta ** (torch.arange(0, d, 2, dtype=torch.int64).float() / d))
        freqs = torch.outer(torch.arange(a.context).float(), inv)
        emb = torch.cat((freqs, freqs), dim=-1)
        self.register_buffer("cos", emb.cos()[None, None], persistent=False)  # fp32 tables, cast per forward
        self.register_buffer("sin", emb.sin()[None, None], persistent=False)
        for p in self.parameters():  # HF init: normal(0, 0.02) for matrices, ones for norms
            if p.dim() >= 2:
                nn.init.normal_(p, 0.0, 0.02)

    def forward(self, ids):  # [B, T] int64 -> logits [B, T, V] fp32
        h = self.embed_tokens(ids)
        t = ids.shape[1]
        cos, sin = self.cos[..., :t, :].to(h.dtype), self.sin[..., :t, :].to(h.dtype)
        for layer in self.layers:
            h = layer(h, cos, sin)
        h = self.norm(h)
        logits = F.linear(h, self.embed_tokens.weight) if self.lm_head is None else self.lm_head(h)
        return logits.float()


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--vocab", type=int, default=50257)
    p.add_argument("--hidden", type=int, default=384)
    p.add_argument("--intermediate", type=int, default=1024)
    p.add_argument("--layers", type=int, default=6)
    p.add_argument("--heads", type=int, default=6)
    p.add_argument("--kv-heads", type=int, default=2)
    p.add_argument("--eps", type=float, default=1e-5)
    p.add_argument("--rope-theta", type=float, default=10000.0)
    p.add_argument("--untied", dest="tied", action="store_false", help="separate lm_head (small ties it)")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--context", type=int, default=512)
    p.add_argument("--lr", type=float, default=1.5e-3)
    p.add_argument("--steps", type=int, default=100, help="timed steps")
    p.add_argument("--warmup", type=int, default=10, help="untimed steps first")
    p.add_argument("--log-every", type=int, default=10, help="read the loss back (a sync) every N steps, as matq does")
    p.add_argument("--mode", choices=["master", "autocast", "fp32"], default="master",
                   help="master = bf16 model + fp32 master weights (matq's scheme); autocast = fp32 weights under autocast bf16; fp32 = no bf16")
    p.add_argument("--adamw", choices=["single", "foreach", "fused"], default="foreach",
                   help="AdamW kernel: single (per-tensor loop, like TorchSharp), foreach (PyTorch's CUDA default), fused")
    p.add_argument("--compile", action="store_true", help="torch.compile the model (not comparable to matq, for reference)")
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--device", default="cuda")
    a = p.parse_args()

    torch.manual_seed(a.seed)
    dev = torch.device(a.device)
    model = Llama(a).to(dev)
    n_params = sum(t.numel() for t in model.parameters())
    if a.mode == "master":
        model = model.to(torch.bfloat16)
        masters = [t.detach().float().clone().requires_grad_(True) for t in model.parameters()]
    else:
        masters = list(model.parameters())
    decay = [m for m in masters if m.dim() >= 2]
    plain = [m for m in masters if m.dim() < 2]
    kw = {"foreach": a.adamw == "foreach", "fused": a.adamw == "fused"}
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": plain, "weight_decay": 0.0}],
                            lr=a.lr, betas=(0.9, 0.95), eps=1e-8, **kw)
    fwd = torch.compile(model) if a.compile else model
    model_params = list(model.parameters())
    g = torch.Generator(device=dev).manual_seed(a.seed)

    def step(i):
        batch = torch.randint(0, a.vocab, (a.batch, a.context + 1), device=dev, generator=g)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=a.mode == "autocast"):
            logits = fwd(batch[:, :-1])
        loss = F.cross_entropy(logits.flatten(0, 1).float(), batch[:, 1:].flatten())
        loss.backward()
        if a.mode == "master":
            for m, w in zip(masters, model_params):
                m.grad = w.grad.float()
                w.grad = None
        torch.nn.utils.clip_grad_norm_(masters, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        if a.mode == "master":
            with torch.no_grad():
                torch._foreach_copy_(model_params, masters)
        return loss.detach()

    acc = torch.zeros((), device=dev)
    for i in range(a.warmup):
        acc += step(i)
    torch.cuda.synchronize(dev)
    t0 = time.perf_counter()
    last = float("nan")
    for i in range(a.steps):
        acc += step(a.warmup + i)
        if (i + 1) % a.log_every == 0:
            last = acc.item() / a.log_every  # the host sync matq also does when it logs
            acc.zero_()
    torch.cuda.synchronize(dev)
    dt = time.perf_counter() - t0
    tokens = a.batch * a.context * a.steps
    print(f"pytorch {torch.__version__} {torch.cuda.get_device_name(dev)}: {n_params:,} params, batch {a.batch} x {a.context}, "
          f"mode {a.mode}, adamw {a.adamw}{', compiled' if a.compile else ''}")
    print(f"loss {last:.4f} after {a.warmup + a.steps} steps (random tokens: ~ln V = {math.log(a.vocab):.3f})")
    print(f"throughput: {dt / a.steps * 1000:.2f} ms/step, {tokens / dt:,.0f} tokens/s ({a.steps} steps after {a.warmup} warm-up)")
    print(f"peak memory {torch.cuda.max_memory_allocated(dev) / 2**30:.2f} GiB")


if __name__ == "__main__":
    main()
