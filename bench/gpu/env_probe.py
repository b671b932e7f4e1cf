#!/usr/bin/env python3
"""What bench/gpu/run records about the Python side (into env.txt): torch, CUDA, cuDNN and NCCL
versions, the device, and which scaled-dot-product-attention backend torch picks for SDXL's bf16
attention shapes ([1,10,4096,64] and [1,20,1024,64] at 1024², [4,10,1024,64] at 512² batch 4;
q, k and v alike). xltune calls the same at::scaled_dot_product_attention, so it gets the same
choice. Prints text, then one JSON line ({"impl": "env", ...}) for the summary. Every probe is
guarded: what fails is printed as the error and the rest goes on.

  env_probe.py [cuda|cpu]      (default: cuda when available)
"""
import json
import platform
import sys

info = {"impl": "env", "python": platform.python_version()}


def guarded(key, fn):
    try:
        info[key] = fn()
    except Exception as e:  # noqa: BLE001 (a probe that fails is reported, not fatal)
        info[key] = f"error: {type(e).__name__}: {e}"
    print(f"{key}: {info[key]}")


import torch  # noqa: E402

device = sys.argv[1] if len(sys.argv) > 1 else ("cuda" if torch.cuda.is_available() else "cpu")
guarded("torch", lambda: torch.__version__)
guarded("torch_cuda", lambda: torch.version.cuda)
guarded("cudnn", lambda: torch.backends.cudnn.version())
guarded("nccl", lambda: ".".join(map(str, torch.cuda.nccl.version())) if torch.cuda.is_available() else None)
guarded("cuda_available", lambda: torch.cuda.is_available())
if device == "cuda":
    guarded("device", lambda: torch.cuda.get_device_name(0))
    guarded("capability", lambda: ".".join(map(str, torch.cuda.get_device_capability(0))))
    guarded("memory_gib", lambda: round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1))
    guarded("arch_list", lambda: torch.cuda.get_arch_list())
    for flag in ("flash_sdp_enabled", "mem_efficient_sdp_enabled", "cudnn_sdp_enabled", "math_sdp_enabled"):
        guarded(flag, lambda flag=flag: getattr(torch.backends.cuda, flag)())
else:
    def cpu_model():
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
        return platform.machine()
    guarded("device", cpu_model)
guarded("threads", lambda: torch.get_num_threads())


def sdpa_choice(shape):
    q = torch.randn(*shape, device=device, dtype=torch.bfloat16)
    choice = torch._fused_sdp_choice(q, q, q)
    try:
        from torch.nn.attention import SDPBackend
        return SDPBackend(choice).name
    except Exception:  # noqa: BLE001 (an older enum: the number)
        return choice


sdpa = {}
for shape in ([1, 10, 4096, 64], [1, 20, 1024, 64], [4, 10, 1024, 64]):
    key = "x".join(map(str, shape))
    try:
        sdpa[key] = sdpa_choice(shape)
    except Exception as e:  # noqa: BLE001
        sdpa[key] = f"error: {type(e).__name__}: {e}"
    print(f"sdpa {device} bf16 {key}: {sdpa[key]}")
info["sdpa"] = sdpa
info["sdpa_device"] = device
print(json.dumps(info, default=str), flush=True)
