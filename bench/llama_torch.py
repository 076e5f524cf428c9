"""The PyTorch peer of bench/llama-shapes.ts: the same MinorDPO step on the same Llama-family shape
in eager PyTorch on the CPU, written as a user of PyTorch would (transformers is not installable
here, so the model is a plain Llama in torch.nn: RMSNorm, rotate_half rotary embeddings, grouped-
query attention by repeating keys and values, SwiGLU, a tied or untied head; TRL's float32
log-prob form, logits.gather - logsumexp(logits)).

  /usr/bin/python3 bench/llama_torch.py '<config JSON>' <pairs> <tokens> <steps> <threads>

The config JSON is bench/llama-shapes.ts's (hidden, layers, heads, kvHeads, headDim, intermediate,
vocab, ropeTheta, rmsEps, tiedHead, qkvBias). Prints one JSON line per step and one summary line:
times in ms, resident memory in MiB (ru_maxrss, the peak).
"""
import copy
import json
import math
import resource
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class RMSNorm(nn.Module):
    def __init__(self, size, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(size))
        self.eps = eps

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def rotate_half(x):
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


class Layer(nn.Module):
    def __init__(self, c):
        super().__init__()
        C, NH, NKV, D, I = c["hidden"], c["heads"], c["kvHeads"], c["headDim"], c["intermediate"]
        self.c = c
        self.input_layernorm = RMSNorm(C, c["rmsEps"])
        self.q_proj = nn.Linear(C, NH * D, bias=c["qkvBias"])
        self.k_proj = nn.Linear(C, NKV * D, bias=c["qkvBias"])
        self.v_proj = nn.Linear(C, NKV * D, bias=c["qkvBias"])
        self.o_proj = nn.Linear(NH * D, C, bias=False)
        self.post_attention_layernorm = RMSNorm(C, c["rmsEps"])
        self.gate_proj = nn.Linear(C, I, bias=False)
        self.up_proj = nn.Linear(C, I, bias=False)
        self.down_proj = nn.Linear(I, C, bias=False)

    def forward(self, x, cos, sin, mask):
        B, T, _ = x.shape
        NH, NKV, D = self.c["heads"], self.c["kvHeads"], self.c["headDim"]
        h = self.input_layernorm(x)
        q = self.q_proj(h).view(B, T, NH, D).transpose(1, 2)
        k = self.k_proj(h).view(B, T, NKV, D).transpose(1, 2)
        v = self.v_proj(h).view(B, T, NKV, D).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        k = k.repeat_interleave(NH // NKV, dim=1)
        v = v.repeat_interleave(NH // NKV, dim=1)
        scores = (q @ k.transpose(-2, -1)) / math.sqrt(D)
        a = torch.softmax(scores.masked_fill(mask, float("-inf")), dim=-1) @ v
        x = x + self.o_proj(a.transpose(1, 2).reshape(B, T, NH * D))
        h = self.post_attention_layernorm(x)
        return x + self.down_proj(F.silu(self.gate_proj(h)) * self.up_proj(h))


class Llama(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.c = c
        self.embed_tokens = nn.Embedding(c["vocab"], c["hidden"])
        self.layers = nn.ModuleList([Layer(c) for _ in range(c["layers"])])
        self.norm = RMSNorm(c["hidden"], c["rmsEps"])
        self.lm_head = None if c["tiedHead"] else nn.Linear(c["hidden"], c["vocab"], bias=False)
        for p in self.parameters():
            if p.dim() > 1:
                nn.init.normal_(p, std=0.02)

    def forward(self, tokens):
        B, T = tokens.shape
        D = self.c["headDim"]
        inv = 1.0 / (self.c["ropeTheta"] ** (torch.arange(0, D, 2, dtype=torch.int64).float() / D))
        angles = torch.outer(torch.arange(T, dtype=torch.float32), inv)
        emb = torch.cat((angles, angles), dim=-1)
        cos, sin = emb.cos(), emb.sin()
        mask = torch.triu(torch.ones(T, T, dtype=torch.bool), 1)
        x = self.embed_tokens(tokens)
        for layer in self.layers:
            x = layer(x, cos, sin, mask)
        head = self.embed_tokens.weight if self.lm_head is None else self.lm_head.weight
        return self.norm(x) @ head.t()


def sequence_logps(logits, labels):
    """Sum over completion tokens of log p(label): TRL's float32 form."""
    mask = labels != -100
    safe = labels.clamp(min=0)
    per_token = logits.gather(-1, safe.unsqueeze(-1)).squeeze(-1) - torch.logsumexp(logits, dim=-1)
    return (per_token * mask).sum(-1)


def main():
    c = json.loads(sys.argv[1])
    pairs, T, steps, threads = (int(a) for a in sys.argv[2:6])
    torch.set_num_threads(threads)
    torch.manual_seed(1)
    model = Llama(c)
    params = sum(p.numel() for p in model.parameters())
    reference = copy.deepcopy(model).requires_grad_(False)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)
    V, rows = c["vocab"], 2 * pairs
    # the same tokens and labels as the TypeScript side (a quarter of each row is prompt)
    tokens = torch.tensor([(i * 7919) % V for i in range(rows * T)]).view(rows, T)
    labels = torch.tensor([-100 if i % T < T // 4 else (i * 104729) % V for i in range(rows * T)]).view(rows, T)
    beta = 0.1
    mib = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"torch": torch.__version__, "parameters": params, "threads": threads, "residentMiB": round(mib())}), flush=True)
    for step in range(steps):
        start = time.perf_counter()
        with torch.no_grad():
            ref = sequence_logps(reference(tokens), labels)
        t_ref = time.perf_counter()
        logits = model(tokens)
        t_fwd = time.perf_counter()
        logps = sequence_logps(logits, labels)
        chosen, rejected = logps[0::2] - ref[0::2], logps[1::2] - ref[1::2]
        loss = -F.logsigmoid(beta * (chosen - torch.clamp(rejected, min=0))).mean()
        loss.backward()
        t_bwd = time.perf_counter()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        end = time.perf_counter()
        del logits, logps, loss
        print(json.dumps({"step": step, "ms": round((end - start) * 1000), "referenceMs": round((t_ref - start) * 1000),
                          "forwardMs": round((t_fwd - t_ref) * 1000), "lossBackwardMs": round((t_bwd - t_fwd) * 1000),
                          "optimizerMs": round((end - t_bwd) * 1000), "peakResidentMiB": round(mib())}), flush=True)


if __name__ == "__main__":
    main()
