#!/usr/bin/env python3
"""Write SDXL-style CLIP tokenizer folders (tokenizer/ and tokenizer_2/) from open_clip's BPE file.

  make_clip_tokenizers.py OUTDIR [--vocab-gz PATH]

  PATH defaults to <repo>/data/vocab/bpe_simple_vocab_16e6.txt.gz (found from this file's location).

Writes, laid out as the stabilityai/stable-diffusion-xl-base-1.0 hub folder has them:
  OUTDIR/tokenizer/{vocab.json, merges.txt, tokenizer_config.json, special_tokens_map.json}
  OUTDIR/tokenizer_2/{vocab.json, merges.txt, tokenizer_config.json, special_tokens_map.json}

Vocabulary as open_clip builds it (49408 ids): the 256 byte characters of GPT-2's bytes_to_unicode
(insertion order), the same 256 with "</w>" appended, one token per merge (48894 merges = gz lines
[1 : 49152-256-2+1]), then "<|startoftext|>" = 49406 and "<|endoftext|>" = 49407.
vocab.json is UTF-8 (not \\u-escaped), one line, keys in id order. merges.txt has "#version: 0.2"
first, then one "a b" merge a line, newline-terminated.

tokenizer/ : pad "<|endoftext|>" (49407); its configs use the older dict-valued token form (as the
             openai/clip-vit-large-patch14 files that SDXL's tokenizer/ copies).
tokenizer_2/: pad "!" (id 0); its configs use the newer "added_tokens_decoder" form, with "!" a
             special token (which makes transformers split a literal "!" out of text as id 0).
Both: unk "<|endoftext|>", model_max_length 77, no tokenizer.json (transformers builds the fast
tokenizer from vocab.json + merges.txt).

Finally checks that transformers.CLIPTokenizer loads both folders, their pad ids (49407 / 0), and
that "a photo of a cat" encodes to [49406, 320, 1125, 539, 320, 2368, 49407].
Run with the repo venv: .venv/bin/python tests/reference/make_clip_tokenizers.py /tmp/xlref
"""
import argparse
import gzip
import json
import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BOS, EOS = "<|startoftext|>", "<|endoftext|>"


def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs]))


def build_vocab(vocab_gz):
    with gzip.open(vocab_gz, "rt", encoding="utf-8") as f:
        lines = f.read().split("\n")
    merges = [tuple(m.split()) for m in lines[1:49152 - 256 - 2 + 1]]
    assert len(merges) == 48894 and all(len(m) == 2 for m in merges)
    vocab = list(bytes_to_unicode().values())
    vocab = vocab + [v + "</w>" for v in vocab]
    vocab += ["".join(m) for m in merges]
    vocab += [BOS, EOS]
    assert len(vocab) == 49408 and len(set(vocab)) == 49408
    return {t: i for i, t in enumerate(vocab)}, merges


def tok_dict(content, normalized=True):
    return {"content": content, "lstrip": False, "normalized": normalized, "rstrip": False, "single_word": False}


def added(content, normalized, special):
    d = tok_dict(content, normalized)
    d["special"] = special
    return d


def configs(second):
    """(tokenizer_config, special_tokens_map) for tokenizer/ (second=False) or tokenizer_2/."""
    common = {"add_prefix_space": False, "clean_up_tokenization_spaces": True, "do_lower_case": True,
              "errors": "replace", "model_max_length": 77, "tokenizer_class": "CLIPTokenizer"}
    if not second:
        cfg = dict(common)
        cfg.update({"bos_token": dict(tok_dict(BOS), __type="AddedToken"),
                    "eos_token": dict(tok_dict(EOS), __type="AddedToken"),
                    "pad_token": EOS,
                    "unk_token": dict(tok_dict(EOS), __type="AddedToken")})
        stm = {"bos_token": tok_dict(BOS), "eos_token": tok_dict(EOS), "pad_token": EOS, "unk_token": tok_dict(EOS)}
    else:
        cfg = {"add_prefix_space": False,
               "added_tokens_decoder": {"0": added("!", False, True),
                                        "49406": added(BOS, True, False),
                                        "49407": added(EOS, False, False)},
               "additional_special_tokens": []}
        cfg.update(common)
        cfg.update({"bos_token": BOS, "eos_token": EOS, "pad_token": "!", "unk_token": EOS})
        cfg = dict(sorted(cfg.items()))
        stm = {"bos_token": BOS, "eos_token": EOS, "pad_token": "!", "unk_token": EOS}
    return dict(sorted(cfg.items())), stm


def write_folder(folder, vocab, merges, second):
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "vocab.json"), "w", encoding="utf-8") as f:
        json.dump(vocab, f, ensure_ascii=False, separators=(",", ":"))
    with open(os.path.join(folder, "merges.txt"), "w", encoding="utf-8", newline="\n") as f:
        f.write("#version: 0.2\n")
        for a, b in merges:
            f.write(f"{a} {b}\n")
    cfg, stm = configs(second)
    for name, obj in (("tokenizer_config.json", cfg), ("special_tokens_map.json", stm)):
        with open(os.path.join(folder, name), "w", encoding="utf-8") as f:
            json.dump(obj, f, indent=2, ensure_ascii=False)
            f.write("\n")


def check(outdir):
    from transformers import CLIPTokenizer
    ok = True
    for sub, pad_id in (("tokenizer", 49407), ("tokenizer_2", 0)):
        tok = CLIPTokenizer.from_pretrained(os.path.join(outdir, sub))
        ids = tok("a photo of a cat").input_ids
        good = (ids == [49406, 320, 1125, 539, 320, 2368, 49407] and tok.pad_token_id == pad_id
                and tok.bos_token_id == 49406 and tok.eos_token_id == 49407 and len(tok) == 49408
                and tok.model_max_length == 77)
        print(f"{sub}: len={len(tok)} pad={tok.pad_token!r}/{tok.pad_token_id} bos={tok.bos_token_id} "
              f"eos={tok.eos_token_id} unk={tok.unk_token_id} max_len={tok.model_max_length} "
              f"'a photo of a cat' -> {ids} {'OK' if good else 'MISMATCH'}")
        print(f"  'hello!' -> {tok('hello!').input_ids}")
        ok &= good
    return ok


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("outdir")
    ap.add_argument("--vocab-gz", default=os.path.join(REPO, "data", "vocab", "bpe_simple_vocab_16e6.txt.gz"))
    a = ap.parse_args()
    vocab, merges = build_vocab(a.vocab_gz)
    write_folder(os.path.join(a.outdir, "tokenizer"), vocab, merges, second=False)
    write_folder(os.path.join(a.outdir, "tokenizer_2"), vocab, merges, second=True)
    print(f"wrote {a.outdir}/tokenizer and tokenizer_2: {len(vocab)} ids, {len(merges)} merges")
    if not check(a.outdir):
        sys.exit("check failed")


if __name__ == "__main__":
    main()
