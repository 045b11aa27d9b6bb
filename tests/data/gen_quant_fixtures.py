#!/usr/bin/env python3
"""Generate the quant reference fixtures in tests/data/quant/ (read by tests/quant_reference.rs).

The oracle is the PyPI `gguf` package (`gguf.quants`), whose numpy code reproduces ggml's
dequantize_row_* and quantize_row_*_ref bit for bit. Two kinds of fixture:

  dequant_<type>_<source>.bin   raw blocks + gguf.quants.dequantize() of them
  quant_<type>_<source>.bin     f32 input + gguf.quants.quantize() of it

Block sources: `smollm2` / `qwen2` are blocks copied from real tensors of the default models (the
first tensor of each type in file order: its first blocks and blocks from the middle of the
tensor); `random` are random bytes with finite, moderate f16 scale fields, covering every bit
pattern of the packed quants and scales. Quantize inputs are random f32 rows from a few
distributions plus edge blocks (all zero, constant, one spike, ties at .5).

File layout (little-endian):
  magic   b"WQFX"
  u32     version (1)
  u32     kind: 0 = dequant, 1 = quant
  u32     ggml type id
  u32     n_elements
  dequant: u8[row_size(n)] blocks, then f32[n] expected values
  quant:   f32[n] input, then u8[row_size(n)] expected blocks
  kind 2 (vec_dot, written only by ggml_oracle.c): x blocks, y blocks in the vec_dot type, f32

Files ending in `_ggml.bin` come from tests/data/ggml_oracle.c (ggml's own C, for what gguf-py
lacks: the Q8_1/Q8_K/K-quant quantizers and vec_dot); this script leaves them alone.

The output is deterministic (fixed seeds, fixed tensor choice): rerunning the script must leave
the files unchanged, which CI can check with `git diff --exit-code tests/data/quant`.

Usage: python3 tests/data/gen_quant_fixtures.py [--models DIR]
  DIR defaults to $WEFT_MODELS, else ~/.cache/weft/models.
"""

import argparse
import os
import struct
import sys
from pathlib import Path

import numpy as np
from gguf import GGMLQuantizationType as T
from gguf import GGML_QUANT_SIZES, GGUFReader
from gguf import quants

OUT = Path(__file__).resolve().parent / "quant"
MODELS = {
    "smollm2": "SmolLM2-135M-Instruct.Q4_1.gguf",
    "qwen2": "Qwen2.5-Coder-0.5B-Instruct-Q4_K_M.gguf",
}
# Offsets of the f16 fields inside each block type (the only fields whose random bytes could
# encode inf/NaN or absurd magnitudes), and the block's f32 field for Q8_K (not in gguf).
F16_FIELDS = {
    T.Q4_0: [0],
    T.Q4_1: [0, 2],
    T.Q5_0: [0],
    T.Q5_1: [0, 2],
    T.Q8_0: [0],
    T.Q2_K: [80, 82],
    T.Q3_K: [108],
    T.Q4_K: [0, 2],
    T.Q5_K: [0, 2],
    T.Q6_K: [208],
}


def blocks_for(t: T) -> int:
    """Blocks per fixture: enough to cover the layout, small enough to keep the files tiny."""
    block_size, _ = GGML_QUANT_SIZES[t]
    if block_size == 1:
        return 256
    return 2 if block_size == 256 else 8


def write(name: str, kind: int, t: T, n: int, first: bytes, second: bytes) -> None:
    header = b"WQFX" + struct.pack("<IIII", 1, kind, int(t), n)
    path = OUT / name
    path.write_bytes(header + first + second)
    print(f"{path.relative_to(OUT.parent.parent.parent)}: {t.name} n={n} ({path.stat().st_size} bytes)")


def dequant_fixture(t: T, source: str, raw: np.ndarray) -> None:
    raw = np.ascontiguousarray(raw, dtype=np.uint8).reshape(-1)
    block_size, type_size = GGML_QUANT_SIZES[t]
    n = raw.size // type_size * block_size
    if t == T.F32:
        values = raw.view(np.float32)
    else:
        values = quants.dequantize(raw.reshape(1, -1), t).reshape(-1).astype(np.float32)
    assert values.size == n
    write(f"dequant_{t.name.lower()}_{source}.bin", 0, t, n, raw.tobytes(), values.astype("<f4").tobytes())


def quant_fixture(t: T, source: str, x: np.ndarray) -> None:
    x = np.ascontiguousarray(x, dtype=np.float32).reshape(-1)
    q = quants.quantize(x.reshape(1, -1), t).reshape(-1).view(np.uint8)
    write(f"quant_{t.name.lower()}_{source}.bin", 1, t, x.size, x.astype("<f4").tobytes(), q.tobytes())


def real_blocks(models_dir: Path) -> None:
    """First tensor of each type per model; its first half-fixture of blocks and a middle run."""
    for source, file in MODELS.items():
        path = models_dir / file
        if not path.is_file():
            sys.exit(f"missing {path}: run `weft models fetch --all` or pass --models")
        reader = GGUFReader(path)
        seen = set()
        for tensor in reader.tensors:
            t = T(tensor.tensor_type)
            if t in seen:
                continue
            seen.add(t)
            block_size, type_size = GGML_QUANT_SIZES[t]
            raw = np.asarray(tensor.data).view(np.uint8).reshape(-1)
            n_blocks = raw.size // type_size
            k = blocks_for(t)
            half = k // 2
            mid = n_blocks // 2
            pick = np.concatenate([raw[: half * type_size], raw[mid * type_size : (mid + half) * type_size]])
            dequant_fixture(t, source, pick)


def random_f16(rng: np.random.Generator, size: int) -> np.ndarray:
    """Moderate f16 scales, both signs: |d| in [2^-14, 2^1]."""
    mag = np.exp2(rng.uniform(-14.0, 1.0, size)).astype(np.float16)
    sign = np.where(rng.random(size) < 0.5, -1.0, 1.0).astype(np.float16)
    return mag * sign


def random_blocks(rng: np.random.Generator) -> None:
    for t in [T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1, T.Q8_0, T.Q2_K, T.Q3_K, T.Q4_K, T.Q5_K, T.Q6_K]:
        _, type_size = GGML_QUANT_SIZES[t]
        k = blocks_for(t)
        raw = rng.integers(0, 256, size=(k, type_size), dtype=np.uint8)
        for off in F16_FIELDS[t]:
            raw[:, off : off + 2] = random_f16(rng, k).view(np.uint8).reshape(k, 2)
        dequant_fixture(t, "random", raw)
    # Float formats: random finite bit patterns, subnormals included.
    h = rng.integers(0, 1 << 16, size=blocks_for(T.F16), dtype=np.uint16)
    h = np.where((h & 0x7C00) == 0x7C00, h & 0x83FF, h).astype(np.uint16)  # no inf/NaN
    dequant_fixture(T.F16, "random", h.view(np.uint8))
    b = rng.integers(0, 1 << 16, size=blocks_for(T.BF16), dtype=np.uint16)
    b = np.where((b & 0x7F80) == 0x7F80, b & 0x807F, b).astype(np.uint16)
    dequant_fixture(T.BF16, "random", b.view(np.uint8))


def quant_inputs(rng: np.random.Generator, n: int) -> np.ndarray:
    """n floats (n a multiple of 32): mixed distributions, then edge blocks in front."""
    x = np.concatenate(
        [
            rng.standard_normal(n // 2).astype(np.float32) * np.float32(0.05),
            rng.uniform(-3.0, 7.0, n // 4).astype(np.float32),
            (rng.standard_t(2.0, n - n // 2 - n // 4) * 1e-3).astype(np.float32),
        ]
    )
    x[0:32] = 0.0  # all-zero block: d = 0, inverse scale 0
    x[32:64] = 1.25  # constant block: max == min
    x[64:96] = 0.0
    x[64 + 5] = -4.0  # a single negative spike sets the scale's sign
    x[96:128] = (np.arange(32, dtype=np.float32) - 16.0) / 2.0  # exact .5 ties for several scales
    x[128:160] = np.float32(65504.0) * np.linspace(-1, 1, 32, dtype=np.float32)  # f16 range edge
    return x


def quant_fixtures(rng: np.random.Generator) -> None:
    for t in [T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1, T.Q8_0, T.F16, T.BF16]:
        quant_fixture(t, "random", quant_inputs(rng, 512))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    default_models = os.environ.get("WEFT_MODELS") or str(Path.home() / ".cache" / "weft" / "models")
    ap.add_argument("--models", type=Path, default=Path(default_models))
    args = ap.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    for old in OUT.glob("*.bin"):
        if not old.name.endswith("_ggml.bin"):  # those come from ggml_oracle.c
            old.unlink()
    real_blocks(args.models)
    rng = np.random.default_rng(20240601)
    random_blocks(rng)
    quant_fixtures(rng)


if __name__ == "__main__":
    main()
