#!/usr/bin/env python3
"""Generate the GGUF reader's test corpus.

    python3 tests/data/gen_malformed.py

writes
  tests/data/malformed/<case>.gguf   tiny files that each break one rule of the format
  tests/data/malformed/expected.tsv  <file name> TAB <text the error message must contain>
  tests/data/valid/*.gguf            tiny well-formed files (v2 and v3) that must parse

tests/gguf_malformed.rs reads expected.tsv, and fails if a .gguf file in malformed/ has no
line there, so fuzz findings added by hand (tests/data/malformed/fuzz_*.gguf) must get their
expected message added to the EXTRA table below and the script re-run (or the line added to
expected.tsv by hand; the script keeps lines for files it does not generate).

Files are built byte by byte with struct (not with the gguf package) so that each can break
exactly one rule.
"""

import os
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
MALFORMED = os.path.join(HERE, "malformed")
VALID = os.path.join(HERE, "valid")

# metadata value type ids
U8, I8, U16, I16, U32, I32, F32, BOOL, STRING, ARRAY, U64, I64, F64 = range(13)
# ggml type ids used here
T_F32, T_Q4_0, T_Q8_0, T_Q4_K = 0, 2, 8, 12


def u32(v):
    return struct.pack("<I", v)


def u64(v):
    return struct.pack("<Q", v)


def s(text):
    b = text.encode() if isinstance(text, str) else text
    return u64(len(b)) + b


def kv(key, typ, payload):
    """One metadata record; payload is the already-encoded value."""
    return s(key) + u32(typ) + payload


def kv_str(key, value):
    return kv(key, STRING, s(value))


def kv_u32(key, value):
    return kv(key, U32, u32(value))


def arr(elem_type, items):
    """Array body: element type, count, encoded elements (a list of bytes)."""
    return u32(elem_type) + u64(len(items)) + b"".join(items)


def tinfo(name, dims, typ, offset, n_dims=None):
    n = len(dims) if n_dims is None else n_dims
    return s(name) + u32(n) + b"".join(u64(d) for d in dims) + u32(typ) + u64(offset)


ARCH = kv_str("general.architecture", "llama")


def gguf(kvs=(ARCH,), infos=None, data=None, version=3, magic=b"GGUF", n_tensors=None,
         n_kv=None, align=32):
    """A whole file. Defaults: one f32 tensor "w" of 8 elements at offset 0."""
    if infos is None:
        infos = [tinfo("w", [8], T_F32, 0)]
    if data is None:
        data = bytes(range(32))
    head = magic + u32(version)
    head += u64(len(infos) if n_tensors is None else n_tensors)
    head += u64(len(kvs) if n_kv is None else n_kv)
    head += b"".join(kvs) + b"".join(infos)
    pad = (-len(head)) % align
    return head + b"\0" * pad + data


VALID_FILE = gguf()


def nested(depth):
    """An array value nested `depth` levels deep (1 = plain array of u8)."""
    body = arr(U8, [b"\x01"])
    for _ in range(depth - 1):
        body = u32(ARRAY) + u64(1) + body
    return body


CASES = []


def case(name, data, expected):
    CASES.append((name + ".gguf", data, expected))


# --- header ---------------------------------------------------------------------------------
case("empty", b"", "truncated file: magic")
case("short_magic", b"GG", "truncated file: magic")
case("bad_magic", b"GGML" + VALID_FILE[4:], "bad magic")
case("ggjt_magic", b"tjgg" + VALID_FILE[4:], "bad magic")
case("version_1", gguf(version=1), "unsupported GGUF version 1")
case("version_0", gguf(version=0), "unsupported GGUF version 0")
case("version_4", gguf(version=4), "unsupported GGUF version 4")
case("big_endian_v3", b"GGUF" + struct.pack(">I", 3) + VALID_FILE[8:], "big-endian")
case("big_endian_v2", b"GGUF" + struct.pack(">I", 2) + VALID_FILE[8:], "big-endian")
case("truncated_version", b"GGUF\x03\x00", "truncated file: version")
case("truncated_counts", VALID_FILE[:12], "truncated file: tensor_count")
case("truncated_kv_count", VALID_FILE[:20], "truncated file: metadata kv_count")
case("kv_count_absurd", gguf(n_kv=2**64 - 1), "absurd count: metadata kv_count")
case("kv_count_too_many", gguf(infos=[], data=b"", n_kv=2), "metadata[1]")
case("tensor_count_absurd", gguf(n_tensors=2**63), "absurd count: tensor_count")
case("tensor_count_too_many", gguf(n_tensors=2), "tensor[1]")

# --- metadata -------------------------------------------------------------------------------
case("key_past_end", b"GGUF" + u32(3) + u64(0) + u64(1) + u64(20) + b"gen" + bytes(5),
     "string length past the end: metadata[0] key")
case("key_len_huge", gguf(kvs=[u64(2**64 - 1) + b"general.architecture"]),
     "string length past the end: metadata[0] key")
case("empty_key", gguf(kvs=[ARCH, kv_u32("", 1)]), "empty metadata key: metadata[1]")
case("key_invalid_utf8", gguf(kvs=[ARCH, kv_u32(b"bad\xff\xfekey", 1)]),
     "invalid UTF-8 in string: metadata[1] key")
case("value_invalid_utf8", gguf(kvs=[ARCH, kv("general.name", STRING, s(b"\xc3\x28"))]),
     'invalid UTF-8 in string: metadata "general.name" value')
case("unknown_value_type", gguf(kvs=[ARCH, kv("x", 13, u32(0))]), "unknown value type 13")
case("unknown_value_type_huge", gguf(kvs=[ARCH, kv("x", 0xFFFFFFFF, u32(0))]),
     "unknown value type 4294967295")
case("unknown_array_elem_type", gguf(kvs=[ARCH, kv("x", ARRAY, u32(99) + u64(0))]),
     'unknown value type 99: metadata "x" value array element type')
case("array_len_absurd", gguf(kvs=[ARCH, kv("x", ARRAY, u32(U32) + u64(2**61))]),
     'absurd count: metadata "x" value array length')
case("string_array_len_absurd",
     gguf(kvs=[ARCH, kv("tokenizer.ggml.tokens", ARRAY, u32(STRING) + u64(2**40))]),
     "absurd count: metadata \"tokenizer.ggml.tokens\" value array length")
case("string_array_elem_past_end",
     gguf(kvs=[ARCH, kv("tokenizer.ggml.tokens", ARRAY,
                        u32(STRING) + u64(2) + s("a") + u64(10**6) + b"bc")]),
     'string length past the end: metadata "tokenizer.ggml.tokens" value[1]')
case("truncated_value", b"GGUF" + u32(3) + u64(0) + u64(1) + s("x") + u32(U64) + b"\x01\x02",
     'truncated file: metadata "x" value')
case("truncated_value_type", b"GGUF" + u32(3) + u64(0) + u64(1) + s("xxxx") + b"\x04",
     'truncated file: metadata "xxxx" value type')
case("nested_too_deep", gguf(kvs=[ARCH, kv("deep", ARRAY, nested(9))]),
     "arrays nested too deep")
case("nested_inner_len_absurd",
     gguf(kvs=[ARCH, kv("x", ARRAY, u32(ARRAY) + u64(1) + u32(F64) + u64(2**62))]),
     'absurd count: metadata "x" value[0] array length')
case("invalid_bool", gguf(kvs=[ARCH, kv("b", BOOL, b"\x02")]), "invalid bool")
case("invalid_bool_in_array", gguf(kvs=[ARCH, kv("b", ARRAY, arr(BOOL, [b"\x00", b"\x07"]))]),
     'invalid bool: metadata "b" value[1]')
case("arch_placeholder_in_key", gguf(kvs=[ARCH, kv_u32("{arch}.block_count", 2)]),
     "{arch} is a lookup placeholder")
case("duplicate_key", gguf(kvs=[ARCH, kv_u32("llama.block_count", 1), ARCH]),
     'duplicate metadata key "general.architecture"')
case("alignment_zero", gguf(kvs=[ARCH, kv_u32("general.alignment", 0)]),
     "bad general.alignment")
case("alignment_not_pow2", gguf(kvs=[ARCH, kv_u32("general.alignment", 48)], align=48),
     "48 is not a nonzero power of two")
case("alignment_wrong_type", gguf(kvs=[ARCH, kv("general.alignment", U64, u64(32))]),
     "bad general.alignment at byte 69: expected u32, found u64")

# --- tensor infos ---------------------------------------------------------------------------
case("tensor_name_past_end", gguf(infos=[u64(1000) + b"w"], data=bytes(32)),
     "string length past the end: tensor[0] name")
case("tensor_name_empty", gguf(infos=[tinfo("", [8], T_F32, 0)]), "empty tensor name")
case("tensor_name_invalid_utf8", gguf(infos=[tinfo(b"w\x80", [8], T_F32, 0)]),
     "invalid UTF-8 in string: tensor[0] name")
case("duplicate_tensor", gguf(infos=[tinfo("w", [4], T_F32, 0), tinfo("w", [4], T_F32, 32)],
                              data=bytes(64)),
     'duplicate tensor name "w"')
case("n_dims_5", gguf(infos=[tinfo("w", [1, 1, 1, 8, 1], T_F32, 0)]), "5 dimensions")
case("n_dims_0", gguf(infos=[tinfo("w", [], T_F32, 0)]), "0 dimensions")
case("n_dims_huge", gguf(infos=[tinfo("w", [8], T_F32, 0, n_dims=0xFFFFFFFF)]),
     "4294967295 dimensions")
case("zero_dim", gguf(infos=[tinfo("w", [8, 0], T_F32, 0)]), 'zero dimension: tensor "w" ne[1]')
case("dims_overflow_u64", gguf(infos=[tinfo("w", [2**32, 2**32, 2], T_F32, 0)]),
     "dimension overflow")
case("dims_overflow_i64", gguf(infos=[tinfo("w", [2**32, 2**31], T_F32, 0)]),
     "dimension overflow")
case("bytes_overflow", gguf(infos=[tinfo("w", [2**62], T_F32, 0)]), "dimension overflow")
case("unknown_tensor_type_4", gguf(infos=[tinfo("w", [32], 4, 0)]), "unknown tensor type id 4")
case("unknown_tensor_type_1000", gguf(infos=[tinfo("w", [32], 1000, 0)]),
     "unknown tensor type id 1000")
case("row_not_block_multiple_q4_0", gguf(infos=[tinfo("w", [33, 2], T_Q4_0, 0)], data=bytes(64)),
     "row size not a multiple of the block size")
case("row_not_block_multiple_q4_k", gguf(infos=[tinfo("w", [896, 2], T_Q4_K, 0)], data=bytes(512)),
     "not a multiple of q4_K's block of 256")
# (the tensor count check needs >= 32 bytes per tensor left, so these keep at least that many)
INFO_AT = 24 + len(ARCH)
case("truncated_tensor_dims",
     gguf(infos=[tinfo("w", [8, 1, 1, 1], T_F32, 0)], data=b"")[:INFO_AT + 9 + 4 + 16 + 3],
     'truncated file: tensor "w" ne[2]')
case("truncated_tensor_offset",
     gguf(infos=[tinfo("wwww", [8], T_F32, 0)], data=b"")[:INFO_AT + 12 + 4 + 8 + 4 + 5],
     'truncated file: tensor "wwww" offset')

# --- data section ---------------------------------------------------------------------------
case("tensor_data_past_end", gguf(infos=[tinfo("w", [16], T_F32, 0)]),
     'tensor data out of range: tensor "w"')
case("tensor_data_truncated", VALID_FILE[:-1], "tensor data out of range")
case("tensor_offset_huge", gguf(infos=[tinfo("w", [8], T_F32, 2**64 - 32)]),
     "tensor data out of range")
case("tensor_misaligned", gguf(infos=[tinfo("w", [4], T_F32, 16)]),
     'misaligned tensor offset: tensor "w"')
case("tensor_misaligned_custom_alignment",
     gguf(kvs=[ARCH, kv_u32("general.alignment", 64)], infos=[tinfo("w", [4], T_F32, 32)],
          data=bytes(64), align=64),
     "not a multiple of the alignment 64")
case("tensors_overlap",
     gguf(infos=[tinfo("a", [16], T_F32, 0), tinfo("b", [8], T_F32, 32)], data=bytes(64)),
     "overlapping tensor data")
case("tensors_same_offset",
     gguf(infos=[tinfo("a", [8], T_F32, 0), tinfo("b", [8], T_F32, 0)]),
     "overlapping tensor data")

# Regression files found by fuzzing: name -> expected message. Their bytes are checked in;
# the script only (re)writes their manifest lines.
EXTRA = {
    # a key containing "{arch}" would be unreachable through get(), which resolves it
    "fuzz_arch_placeholder_in_key.gguf": 'bad metadata key "general.archit{arch}"',
}


VALID_CASES = {
    "tiny_v3.gguf": gguf(),
    "tiny_v2.gguf": gguf(version=2),
    "no_tensors.gguf": gguf(kvs=[ARCH, kv_u32("llama.block_count", 2)], infos=[], data=b""),
    "all_types_align_64.gguf": gguf(
        kvs=[ARCH, kv_u32("general.alignment", 64),
             kv("a.u8", U8, b"\x01"), kv("a.i8", I8, b"\xff"), kv("a.u16", U16, b"\x01\x02"),
             kv("a.i16", I16, b"\xff\xff"), kv("a.i32", I32, u32(7)), kv("a.f32", F32, struct.pack("<f", 0.5)),
             kv("a.bool", BOOL, b"\x01"), kv("a.u64", U64, u64(9)), kv("a.i64", I64, u64(2**64 - 1)),
             kv("a.f64", F64, struct.pack("<d", 1e-6)), kv("a.nested", ARRAY, nested(8)),
             kv("a.strs", ARRAY, arr(STRING, [s("x"), s("")]))],
        infos=[tinfo("q", [32, 2], T_Q8_0, 0), tinfo("n", [4], T_F32, 128)],
        data=bytes(68) + bytes(60) + bytes(16), align=64),
}


def main():
    os.makedirs(MALFORMED, exist_ok=True)
    os.makedirs(VALID, exist_ok=True)
    names = set()
    lines = []
    for name, data, expected in CASES:
        assert name not in names, name
        names.add(name)
        with open(os.path.join(MALFORMED, name), "wb") as f:
            f.write(data)
        lines.append(f"{name}\t{expected}")
    for name, expected in sorted(EXTRA.items()):
        assert name not in names, name
        assert os.path.exists(os.path.join(MALFORMED, name)), f"missing regression file {name}"
        lines.append(f"{name}\t{expected}")
    with open(os.path.join(MALFORMED, "expected.tsv"), "w") as f:
        f.write("# file\tthe error message must contain this text (tests/gguf_malformed.rs)\n")
        f.write("\n".join(lines) + "\n")
    for name, data in VALID_CASES.items():
        with open(os.path.join(VALID, name), "wb") as f:
            f.write(data)
    print(f"{len(CASES) + len(EXTRA)} malformed, {len(VALID_CASES)} valid files", file=sys.stderr)


if __name__ == "__main__":
    main()
