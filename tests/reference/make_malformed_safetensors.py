#!/usr/bin/env python3
"""Writes the corpus of malformed safetensors files that `xltune inspect` must refuse cleanly.

  make_malformed_safetensors.py DIR

Each file is named for what is wrong with it; DIR/expected.tsv lists, per file, a part of the
error message that must appear. Also writes DIR/good.safetensors (which must load) and seeds for
the fuzzer under DIR/seeds/.
"""
import json
import os
import struct
import sys


def frame(header, data=b"", length=None, pad=True):
    h = header if isinstance(header, bytes) else json.dumps(header, separators=(",", ":")).encode()
    if pad:
        h += b" " * ((8 - len(h) % 8) % 8)
    n = len(h) if length is None else length
    return struct.pack("<Q", n) + h + data


def t(dtype, shape, begin, end):
    return {"dtype": dtype, "shape": shape, "data_offsets": [begin, end]}


GOOD = frame({"__metadata__": {"format": "pt"}, "w": t("F32", [2, 2], 0, 16), "b": t("F32", [2], 16, 24)},
             bytes(24))

CASES = {
    # name: (bytes, expected part of the message)
    "empty_file": (b"", "too short for the 8-byte header length"),
    "short_prefix": (b"\x10\x00\x00", "too short"),
    "truncated_data": (GOOD[:-5], "truncated"),
    "truncated_header": (GOOD[:20], "runs past the end of the file"),
    "header_length_past_end": (frame({"w": t("F32", [1], 0, 4)}, bytes(4), length=10_000), "runs past the end"),
    "giant_header_length": (struct.pack("<Q", 2**40) + b"{}", "exceeds the limit"),
    "header_length_zero": (struct.pack("<Q", 0) + b"{}", "too small"),
    "not_json": (frame(b"this is not json"), "does not start with '{'"),
    "invalid_json": (frame(b'{"w": {"dtype": "F32",'), "not valid JSON"),
    "invalid_utf8": (frame(b'{"\xff\xfe":' + json.dumps(t("F32", [1], 0, 4)).encode() + b"}", bytes(4)),
                     "not valid JSON"),
    "json_array": (frame(b"[1, 2, 3]"), "does not start with '{'"),
    "unknown_dtype": (frame({"w": t("F128", [1], 0, 16)}, bytes(16)), "unknown dtype 'F128'"),
    "sub_byte_dtype": (frame({"w": t("F4", [2], 0, 1)}, bytes(1)), "not supported"),
    "shape_size_mismatch": (frame({"w": t("F32", [3], 0, 8)}, bytes(8)), "needs 12"),
    "overlapping_offsets": (frame({"a": t("F32", [2], 0, 8), "b": t("F32", [2], 4, 12)}, bytes(12)), "overlaps"),
    "hole_between_tensors": (frame({"a": t("F32", [1], 0, 4), "b": t("F32", [1], 8, 12)}, bytes(12)),
                             "hole in the data buffer"),
    "offsets_out_of_bounds": (frame({"a": t("F32", [4], 0, 16)}, bytes(8)), "ends at byte 16"),
    "trailing_garbage": (frame({"a": t("F32", [1], 0, 4)}, bytes(12)), "trailing bytes"),
    "duplicate_names": (frame(b'{"a":' + json.dumps(t("F32", [1], 0, 4)).encode() + b',"a":'
                              + json.dumps(t("F32", [1], 4, 8)).encode() + b"}", bytes(8)), "appears twice"),
    "negative_dimension": (frame({"a": t("F32", [-1], 0, 4)}, bytes(4)), "non-negative integer"),
    "float_offsets": (frame({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0.0, 4.0]}}, bytes(4)),
                      "non-negative integer"),
    "reversed_offsets": (frame({"a": t("F32", [0], 4, 0)}, bytes(4)), "end before they begin"),
    "overflowing_shape": (frame({"a": t("F32", [2**32, 2**32], 0, 0)}), "overflows 64 bits"),
    "missing_offsets": (frame({"a": {"dtype": "F32", "shape": [1]}}, bytes(4)), 'missing "data_offsets"'),
    "tensor_not_object": (frame({"a": [1, 2]}), "expected an object"),
    "metadata_not_strings": (frame({"__metadata__": {"k": 1}}), "expected a string"),
    "deeply_nested_json": (frame(b'{"a":' + b"[" * 100000 + b"]" * 100000 + b"}"), "levels deep"),
    "giant_dimension": (frame({"a": t("U8", [2**63], 0, 0)}), "too large"),
}


def main(outdir):
    os.makedirs(os.path.join(outdir, "seeds"), exist_ok=True)
    with open(os.path.join(outdir, "expected.tsv"), "w") as manifest:
        for name, (data, expected) in CASES.items():
            with open(os.path.join(outdir, name + ".safetensors"), "wb") as f:
                f.write(data)
            manifest.write(f"{name}.safetensors\t{expected}\n")
    with open(os.path.join(outdir, "good.safetensors"), "wb") as f:
        f.write(GOOD)
    # Fuzzer seeds: the JSON headers alone (the fuzz target feeds bytes to the header parser).
    for name, (data, _) in list(CASES.items()) + [("good", (GOOD, ""))]:
        if len(data) > 8:
            with open(os.path.join(outdir, "seeds", name), "wb") as f:
                f.write(data[8:8 + 4096])
    print(f"wrote {len(CASES)} malformed files and good.safetensors to {outdir}")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
