"""Would a Winograd F(2×2, 3×3) convolution, written with torch operations, beat oneDNN's direct
3×3 convolution for the encoder's 64 → 64 layers? (It would cut the multiplications 2.25×; the
answer on the 2-core machines here is no, see docs/implicit.md.) Prints the largest difference
from ``conv2d`` and the ms per call of both, alternated::

    python benchmarks/winograd_conv.py --threads 1
"""

from __future__ import annotations

import argparse
import functools
import time

import torch
from torch import Tensor
from torch.nn import functional as F

# F(2×2, 3×3) transforms (Lavin & Gray 2016): Y = Aᵀ [(G g Gᵀ) ⊙ (Bᵀ d B)] A
_G = [[1.0, 0.0, 0.0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0.0, 0.0, 1.0]]


def winograd_weight(weight: Tensor) -> Tensor:
    """``(C_out, C_in, 3, 3)`` kernel -> ``(16, C_in, C_out)`` transformed kernel."""
    g = torch.tensor(_G, dtype=weight.dtype)
    u = g @ weight @ g.T  # (C_out, C_in, 4, 4)
    return u.permute(2, 3, 1, 0).reshape(16, weight.shape[1], weight.shape[0]).contiguous()


def winograd_conv(x: Tensor, u: Tensor, bias: Tensor) -> Tensor:
    """``conv2d(x, weight, bias, padding=1)`` for channels-last ``x``, ``u = winograd_weight``."""
    n, c, h, w = x.shape
    th, tw = (h + 1) // 2, (w + 1) // 2
    padded = F.pad(x.permute(0, 2, 3, 1), (0, 0, 1, 1 + 2 * tw - w, 1, 1 + 2 * th - h))
    rows = [padded[:, k : k + 2 * th : 2] for k in range(4)]
    t = [rows[0] - rows[2], rows[1] + rows[2], rows[2] - rows[1], rows[1] - rows[3]]
    v = x.new_empty(16, n, th, tw, c)
    for i in range(4):
        cols = [t[i][:, :, k : k + 2 * tw : 2] for k in range(4)]
        torch.sub(cols[0], cols[2], out=v[4 * i])
        torch.add(cols[1], cols[2], out=v[4 * i + 1])
        torch.sub(cols[2], cols[1], out=v[4 * i + 2])
        torch.sub(cols[1], cols[3], out=v[4 * i + 3])
    c_out = u.shape[2]
    m = torch.bmm(v.view(16, -1, c), u).view(4, 4, n, th, tw, c_out)
    out = x.new_empty(n, 2 * th, 2 * tw, c_out)
    for r, s in enumerate((m[0] + m[1] + m[2], m[1] - m[2] - m[3])):
        out[:, r::2, 0::2] = s[0] + s[1] + s[2]
        out[:, r::2, 1::2] = s[1] - s[2] - s[3]
    return (out[:, :h, :w] + bias).permute(0, 3, 1, 2)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=10)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    for n, h, w in [(16, 32, 32), (3, 7, 9), (1, 224, 224)]:
        conv = torch.nn.Conv2d(64, 64, 3, padding=1)
        x = torch.randn(n, 64, h, w).contiguous(memory_format=torch.channels_last)
        with torch.no_grad():
            u = winograd_weight(conv.weight)
            diff = (winograd_conv(x, u, conv.bias) - conv(x.contiguous())).abs().max()
            calls = {
                "direct": functools.partial(conv, x),
                "winograd": functools.partial(winograd_conv, x, u, conv.bias),
            }
            timings: dict[str, list[float]] = {name: [] for name in calls}
            for _ in range(2):
                for name, fn in calls.items():
                    fn()
                    start = time.perf_counter()
                    for _ in range(args.repeats):
                        fn()
                    timings[name].append((time.perf_counter() - start) / args.repeats * 1000)
        print(
            f"batch {n} x 64 x {h} x {w}: max |winograd - conv2d| {float(diff):.1e}; "
            + ", ".join(f"{k} {min(v):.2f} ms" for k, v in timings.items())
        )


if __name__ == "__main__":
    main()
