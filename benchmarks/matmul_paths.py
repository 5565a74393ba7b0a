#!/usr/bin/env python
"""Per-matmul rates of the two CPU paths for a quantized layer, for each weight dtype.

    python benchmarks/matmul_paths.py            # the BLAS bundled with mlx-cpu
    LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libopenblas.so.0 python benchmarks/matmul_paths.py

Columns (GFLOP/s): `qmm x@W.T` = mx.quantized_matmul(transpose=True), a quantized Linear's forward;
`qmm g@W` = the untransposed kernel its backward uses; `mlx-dpo` = mlx_dpo.model.cpu_matmul's forward
(dequantize, fp32 matmul, round to the layer's dtype) and its backward (the input gradient); `error` =
the largest difference of a forward from the fp32 product of the dequantized weight, relative to
the largest output (half-precision rounding shows up here).
"""

from __future__ import annotations

import time

import mlx.core as mx

from mlx_dpo.model.cpu_matmul import dequantized_matmul

SHAPES = [(1200, 128, 512), (1200, 512, 1024)]  # (rows, in, out)


def rate(fn, flops, reps=2):
    mx.eval(fn())
    t = time.perf_counter()
    for _ in range(reps):
        mx.eval(fn())
    return flops * reps / (time.perf_counter() - t) / 1e9


def main():
    print("| dtype | rows × in → out | qmm x@W.T | qmm g@W | mlx-dpo forward | mlx-dpo backward | qmm error | mlx-dpo error |")
    print("|---|---|---|---|---|---|---|---|")
    for dtype in (mx.float32, mx.bfloat16, mx.float16):
        for rows, k, n in SHAPES:
            w = mx.random.normal((n, k)).astype(dtype)
            x, g = mx.random.normal((rows, k)).astype(dtype), mx.random.normal((rows, n)).astype(dtype)
            wq, s, b = mx.quantize(w, 64, 4)
            mx.eval(wq, s, b, x, g)
            f = dequantized_matmul(64, 4)
            flops = 2 * rows * k * n
            fwd_q = rate(lambda: mx.quantized_matmul(x, wq, s, b, True, 64, 4), flops)
            bwd_q = rate(lambda: mx.quantized_matmul(g, wq, s, b, False, 64, 4), flops)
            fwd = rate(lambda: f(x, wq, s, b), flops)
            bwd = rate(lambda: mx.vjp(f, [x, wq, s, b], [g])[1][0], flops)  # only the VJP output is evaluated
            exact = x.astype(mx.float32) @ mx.dequantize(wq, s, b, 64, 4).astype(mx.float32).T

            def error(y):
                return (mx.abs(y.astype(mx.float32) - exact).max() / mx.abs(exact).max()).item()

            err_q, err = error(mx.quantized_matmul(x, wq, s, b, True, 64, 4)), error(f(x, wq, s, b))
            name = str(dtype).split(".")[-1]
            print(f"| {name} | {rows} × {k} → {n} | {fwd_q:.2f} | {bwd_q:.2f} | {fwd:.1f} | {bwd:.1f} | {err_q:.1e} "
                  f"| {err:.1e} |", flush=True)


if __name__ == "__main__":
    main()
