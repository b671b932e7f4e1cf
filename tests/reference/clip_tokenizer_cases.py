#!/usr/bin/env python3
"""Tokenize >= 2000 varied strings with transformers' CLIPTokenizer, for the C++ tokenizer tests.

  clip_tokenizer_cases.py TOKENIZER_ROOT OUT_JSON [--count 2500] [--seed 1234]

TOKENIZER_ROOT is the OUTDIR of make_clip_tokenizers.py (tokenizer/ and tokenizer_2/). Each is loaded with
transformers.CLIPTokenizer.from_pretrained, then tok.add_tokens(["<s0>", "<s1>"]) (ids 49408, 49409).
OUT_JSON (UTF-8) = {"cases": [{"text", "ids_1", "tokens_1", "ids_2", "tokens_2"}, ...]} with
  ids_k    = tok_k(text, padding="max_length", max_length=77, truncation=True).input_ids   (77 ids)
  tokens_k = tok_k(text, add_special_tokens=False).input_ids                               (untruncated)
Strings: ~250 hand-written edge cases + seeded random combinations of captions, punctuation, numbers,
contractions, NFC/NFD accents, CJK, Cyrillic, Greek, Arabic, Hindi, emoji (ZWJ, flags, skin tones), odd
whitespace, HTML entities, control characters, captions past 77 tokens, literal special tokens, trigger
tokens <s0>/<s1>, Turkish İ. No lone surrogates.

transformers 5 has no ftfy / html.unescape step (normalizer = NFC + (\\s+ -> ' ') + lowercase); open_clip's
SimpleTokenizer does ftfy.fix_text + html.unescape twice + whitespace collapse + lowercase (no NFC when ftfy
is absent). Printed: how many cases change (a) when open_clip-style cleaned text (ftfy if installed,
html.unescape x2, whitespace collapse, strip, lower) is fed to transformers, (b) under a reimplementation
of open_clip's whole SimpleTokenizer (regex + BPE; vs tokens_1, cases without <s0>/<s1>).
Run: .venv/bin/python tests/reference/clip_tokenizer_cases.py /tmp/xlref /tmp/xlref/clip_tokenizer_cases.json
"""
import argparse
import html
import json
import os
import random
import sys
import unicodedata

import regex

try:
    import ftfy
except ImportError:
    ftfy = None

WORDS = ("a photo of the cat dog sitting on red blue green chair table in an old house with large window "
         "light shadow portrait woman man child smiling beautiful landscape mountain river forest sky cloud "
         "sunset night city street car bicycle painting oil canvas watercolor sketch detailed 8k hdr "
         "masterpiece best quality highly intricate cinematic lighting octane render trending artstation "
         "photorealistic bokeh depth field macro lens 35mm wearing hat dress jacket holding umbrella rain "
         "snow autumn leaves golden hour close-up wide-angle shot from above below side view pikachu "
         "supercalifragilisticexpialidocious antidisestablishmentarianism xyzzy qwertyuiop").split()
ACCENTED = ["café", "naïve", "résumé", "Ångström", "jalapeño", "São Paulo", "Zürich", "façade", "crème brûlée",
            "Dvořák", "Łódź", "Øresund", "Þingvellir", "straße", "STRASSE", "ẞ", "Ǆemal", "ﬁne", "Ⅻ", "x²", "½"]
CJK = ["猫", "一只猫坐在椅子上", "東京タワー", "ひらがな", "カタカナ", "한국어 문장", "漢字かな交じり文", "ｆｕｌｌｗｉｄｔｈ", "ﾊﾝｶｸ"]
CYRILLIC = ["кошка", "Москва", "ПРИВЕТ МИР", "Ёлка", "україна", "Ђорђе"]
GREEK = ["γάτα", "ΟΔΟΣ", "Σίσυφος", "ΣΊΣΥΦΟΣ", "λόγος", "ΑΘΗΝΑ", "ς σ Σ", "ΐ ΰ"]
ARABIC = ["قطة", "مرحبا بالعالم", "العربية ١٢٣", "ﻻ"]
HINDI = ["बिल्ली", "नमस्ते दुनिया", "हिन्दी १२३", "क्षत्रिय"]
EMOJI = ["😀", "🐱", "👍🏽", "👨‍👩‍👧‍👦", "🏳️‍🌈", "🇺🇸", "🇯🇵🇫🇷", "❤️", "✨🔥", "🧑🏿‍💻", "😀😃😄", "🫠", "©️", "#️⃣", "👁‍🗨"]
WS = [" ", "  ", "\t", "\n", "\r\n", "\u00a0", "\u3000", "\u2028", "\u2029", "\u200b", "\u2009", "\u202f",
      "\u1680", "\u205f", "\u000b", "\u000c", "\u0085", "\ufeff", "\u200d", "\u2060", "\u180e"]
CTRL = ["\x00", "\x01", "\x07", "\x08", "\x1b", "\x1c", "\x1f", "\x7f", "\x80", "\x9f", "\u200e", "\u202e", "\ufffd"]
HTMLENT = ["&amp;", "&quot;", "&#39;", "&lt;", "&gt;", "&nbsp;", "&amp;amp;", "&#x27;", "&hellip;", "&eacute;",
           "&copy", "&#128512;"]
SPECIAL = ["<|startoftext|>", "<|endoftext|>", "<|ENDOFTEXT|>", "<|StartOfText|>", "<|endoftext", "endoftext|>",
           "<|endof text|>", "<s0>", "<s1>", "<s0><s1>", "<S0>", "<s2>", "x<s0>y", "<s0>s", "<s0>'s", "!", "!!"]
PUNCT = ["!", "?", ".", ",", "...", "…", "!!!", "?!", "--", "—", "–", "(", ")", "[", "]", "{", "}", "\"", "'", "''",
         "`", "~", "@", "#", "$", "%", "^", "&", "*", "_", "+", "=", "|", "\\", "/", "<", ">", ";", ":", "«", "»",
         "“", "”", "‘", "’", "„", "¿", "¡", "·", "•", "→", "™", "®", "°", "€", "£", "¥", "§", "¶", "※"]
CONTRACT = ["'s", "'t", "'re", "'ve", "'m", "'ll", "'d", "'S", "'T", "'RE", "'VE", "'M", "'LL", "'D", "’s", "’t",
            "n't", "N'T", "'x", "''s", "'"]
NUMBERS = ["0", "7", "42", "1234567890", "3.14159", "1,000,000", "1 000 000", "1_000", "-273.15", "+1e-10", "0x1F",
           "12:30", "2024-01-31", "50%", "$9.99", "v1.2.3", "4k", "1080p", "²³", "٣", "४२", "〇一二", "Ⅻ", "①②", "𝟙𝟚"]

HAND = [
    "", " ", "a", "A", "a photo of a cat", "A PHOTO OF A CAT", "a  photo\tof\na cat", "  leading and trailing  ",
    "a photo of <s0><s1> in a bag", "<s0>", "<s1>", "<s0><s1>", "x<s0>y", "<s0> <s1>", "a<s0>", "<s1>b",
    "photo of <s0>, <s1>.", "<s0><s0><s0>", "<s1><s0>", "<S0><S1>", "< s0 >", "<s0 >", "<s0>'s hat",
    "<|startoftext|>", "<|endoftext|>", "a <|endoftext|> b", "a<|endoftext|>b", "<|startoftext|>a cat<|endoftext|>",
    "<|ENDOFTEXT|>", "a <|ENDOFTEXT|> b", "<|STARTOFTEXT|>", "<|startoftext|><|startoftext|>", "<|endoftext|>" * 3,
    "<|endoftext", "endoftext|>", "<||>", "<|>", "<<|endoftext|>>",
    "İstanbul", "İ", "i̇", "ISTANBUL istanbul İSTANBUL", "ı", "ıi İI", "DİYARBAKIR",
    "it's", "IT'S", "don't", "DON'T", "we're", "they've", "I'm", "you'll", "he'd", "it’s", "don’t", "O'Neil",
    "rock 'n' roll", "'s", "''", "'''", "the '90s", "'tis", "it's's", "ma'am", "y'all'd've",
    "&amp;", "&quot;quoted&quot;", "it&#39;s", "&lt;b&gt;bold&lt;/b&gt;", "&amp;amp;", "Tom &amp; Jerry", "&nbsp;",
    "&#128512;", "&eacute;t&eacute;", "AT&T", "a & b", "&&&", "&;",
    "café", "cafe\u0301", "naïve", "nai\u0308ve", "Å", "A\u030a", "\u212b", "ñ", "n\u0303", "é\u0301", "ǅ", "Ǆ",
    "e\u0301\u0301\u0301", "\u0301", "a\u0300\u0301\u0302\u0303\u0304", "Z\u0351\u036b\u0343\u036a\u0302\u036b\u033d",
    "ﬁ ﬂ ﬀ", "Ⅻ", "x²", "½", "™", "ｆｕｌｌ ｗｉｄｔｈ ＡＢＣ", "ＡＢＣ１２３",
    "猫", "一只猫坐在红色的椅子上", "東京タワーの写真", "한국어", "中文，标点。", "「引用」",
    "кошка на стуле", "КОШКА", "Ёж", "γάτα", "ΟΔΟΣ", "Σίσυφος", "ΣΊΣΥΦΟΣ ΚΑΙ ΟΔΟΣ", "ΑΣ", "σς",
    "قطة على كرسي", "مرحبا", "बिल्ली कुर्सी पर", "नमस्ते", "ไทย", "עברית", "ქართული", "Հայերեն", "ᚠᚢᚦᚨᚱᚲ",
    "😀", "🐱 cat", "cat🐱", "👍🏽", "👨‍👩‍👧‍👦", "🏳️‍🌈", "🇺🇸", "🇯🇵🇫🇷🇩🇪", "❤️", "♥", "🧑🏿‍💻 coding",
    "😀😃😄😁😆😅", "🫠🫡", "#️⃣", "*️⃣", "1️⃣", "©️®️", "👁‍🗨", "🏴󠁧󠁢󠁳󠁣󠁴󠁿", "a\u200db", "\U0001F600" * 40,
    "tab\there", "new\nline", "cr\rlf\r\n", "nbsp\u00a0here", "ideo\u3000space", "line\u2028sep", "para\u2029sep",
    "zero\u200bwidth", "\u200b", "\u200b\u200b\u200b", "bom\ufeffhere", "\ufeffstart", "nel\u0085x",
    "vt\u000bff\u000c",
    "ogham\u1680space", "thin\u2009space", "\u202f", "\t\n\r ", "a\u00a0\u00a0\u00a0b", "\u3000\u3000",
    "nul\x00char", "\x00", "bell\x07", "esc\x1b[31mred\x1b[0m", "\x1c\x1d\x1e\x1f", "del\x7f", "c1\x80\x9f",
    "rtl\u202eoverride", "lrm\u200emark", "\ufffd", "\ufffdreplacement", "\U0010fffd", "\U000e0041", "\uffff",
    "!", "!!", "hello!", "hello!!", "!hello", "wow!?", "a!b!c", "...", "…", "?!?!", "----", "—", "((()))", "[[x]]",
    "{a:b}", "\"quoted\"", "“curly”", "«guillemets»", "a/b\\c", "~!@#$%^&*()_+", "`code`", "__init__", "a_b_c",
    "x--y", "e-mail", "co-op", ":)", ":-(", ";)", "<3", "</w>", "a</w>", "<w>", "##", "@user", "#hashtag",
    "0", "1", "42", "123456789", "3.14159", "1,000,000", "-273.15", "1e10", "2024-01-31", "12:30pm", "$9.99",
    "v1.2.3", "4k 8k 1080p", "٣٤", "४२", "①②③", "𝟙𝟚𝟛", "ⅩⅠⅤ", "½¼¾", "0.5x", "x0.5", "1st 2nd 3rd 4th",
    "https://example.com/path?q=1&x=2#frag", "user@example.com", "C:\\Users\\name", "snake_case CamelCase kebab-case",
    "supercalifragilisticexpialidocious", "pneumonoultramicroscopicsilicovolcanoconiosis",
    "aaaaaaaaaaaaaaaaaaaaaaaaa",
    "xyzzyxyzzy", "qqqq", "thethethethe", "lol" * 30, "a " * 76, "a " * 75, "a " * 77, "a, " * 80,
    "masterpiece, best quality, 1girl, solo, long hair, looking at viewer, smile, (detailed:1.2), [bokeh]",
    "(((masterpiece))), {{best quality}}, [[worst quality:0.5]]",
]


def long_caption(rng, n):
    return " ".join(rng.choice(WORDS) + (rng.choice([",", ".", "", "", ""])) for _ in range(n))


def fragment(rng):
    pool = rng.choice([ACCENTED, CJK, CYRILLIC, GREEK, ARABIC, HINDI, EMOJI, HTMLENT, SPECIAL, PUNCT, CONTRACT,
                       NUMBERS, CTRL, WORDS, WORDS, WORDS])
    s = rng.choice(pool)
    r = rng.random()
    return unicodedata.normalize("NFD", s) if r < 0.15 else s.upper() if r < 0.25 else s.title() if r < 0.3 else s


def random_codepoints(rng, n):
    ranges = [(0x20, 0x7e), (0xa0, 0x24f), (0x300, 0x36f), (0x370, 0x3ff), (0x400, 0x4ff), (0x590, 0x6ff),
              (0x900, 0x97f), (0xe00, 0xe7f), (0x1100, 0x11ff), (0x1e00, 0x1fff), (0x2000, 0x206f), (0x2100, 0x22ff),
              (0x3000, 0x30ff), (0x4e00, 0x9fff), (0xac00, 0xd7a3), (0xe000, 0xe0ff), (0xfb00, 0xfdff),
              (0xfe00, 0xffef), (0x1d400, 0x1d7ff), (0x1f300, 0x1faff), (0x20000, 0x2a6df), (0xe0000, 0xe007f)]
    return "".join(chr(rng.randint(*rng.choice(ranges))) for _ in range(n))


def generate(count, seed):
    rng = random.Random(seed)
    cases = list(dict.fromkeys(HAND))  # ordered, unique
    seen = set(cases)
    while len(cases) < count:
        kind = rng.random()
        if kind < 0.30:  # caption with sprinkled fragments
            words = [rng.choice(WORDS) for _ in range(rng.randint(1, 25))]
            for _ in range(rng.randint(0, 4)):
                words.insert(rng.randint(0, len(words)), fragment(rng))
            s = "".join(w + rng.choice([" ", " ", " ", ", ", ",", "", rng.choice(WS), rng.choice(PUNCT)])
                        for w in words)
        elif kind < 0.50:  # fragments joined by random separators
            s = "".join(fragment(rng) + rng.choice(["", " ", rng.choice(WS), rng.choice(PUNCT)])
                        for _ in range(rng.randint(1, 8)))
        elif kind < 0.58:  # punctuation / number / contraction runs
            s = "".join(rng.choice(PUNCT + NUMBERS + CONTRACT) for _ in range(rng.randint(1, 12)))
        elif kind < 0.66:
            s = random_codepoints(rng, rng.randint(1, 20))
        elif kind < 0.74:  # pseudo-words: exercise many BPE merges
            s = " ".join("".join(rng.choice("abcdefghijklmnopqrstuvwxyzeeaaiioo") for _ in range(rng.randint(2, 12)))
                         for _ in range(rng.randint(1, 10)))
        elif kind < 0.79:  # over-long captions (truncation)
            s = long_caption(rng, rng.randint(60, 260))
        elif kind < 0.89:  # trigger tokens and specials inside captions
            words = [rng.choice(WORDS) for _ in range(rng.randint(2, 12))]
            for _ in range(rng.randint(1, 3)):
                words.insert(rng.randint(0, len(words)), rng.choice(SPECIAL))
            s = rng.choice([" ", "", ", "]).join(words)
        else:  # word + contraction / whitespace / control soup
            s = "".join(rng.choice([rng.choice(WORDS), rng.choice(CONTRACT), rng.choice(WS), rng.choice(CTRL)])
                        for _ in range(rng.randint(1, 15)))
        if rng.random() < 0.1:
            s = rng.choice(WS) + s + rng.choice(WS)
        if s not in seen:
            seen.add(s)
            cases.append(s)
    return cases


def openclip_clean(text):
    if ftfy is not None:
        text = ftfy.fix_text(text)
    text = html.unescape(html.unescape(text)).strip()
    return regex.sub(r"\s+", " ", text).strip().lower()


class OpenClipLike:
    """open_clip SimpleTokenizer (no ftfy unless installed) over the same vocab.json / merges.txt."""
    PAT = regex.compile(r"<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|"
                        r"[^\s\p{L}\p{N}]+", regex.IGNORECASE)

    def __init__(self, folder):
        from make_clip_tokenizers import bytes_to_unicode
        self.b2u = bytes_to_unicode()
        self.enc = json.load(open(os.path.join(folder, "vocab.json"), encoding="utf-8"))
        lines = open(os.path.join(folder, "merges.txt"), encoding="utf-8").read().split("\n")[1:]
        self.ranks = {tuple(l.split()): i for i, l in enumerate(lines) if l}
        self.cache = {"<|startoftext|>": ["<|startoftext|>"], "<|endoftext|>": ["<|endoftext|>"]}

    def bpe(self, token):
        if token not in self.cache:
            word = list(token[:-1]) + [token[-1] + "</w>"]
            while len(word) > 1:
                rank, i = min((self.ranks.get(p, 1 << 30), i) for i, p in enumerate(zip(word, word[1:])))
                if rank == 1 << 30:
                    break
                a, b, new, i = word[i], word[i + 1], [], 0
                while i < len(word):  # merge every (a, b), left to right
                    pair = i + 1 < len(word) and word[i] == a and word[i + 1] == b
                    new.append(a + b if pair else word[i])
                    i += 2 if pair else 1
                word = new
            self.cache[token] = word
        return self.cache[token]

    def encode(self, text):
        ids = []
        for t in self.PAT.findall(openclip_clean(text)):
            t = "".join(self.b2u[b] for b in t.encode("utf-8"))
            ids.extend(self.enc[p] for p in self.bpe(t))
        return ids


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("tokenizer_root")
    ap.add_argument("out_json")
    ap.add_argument("--count", type=int, default=2500)
    ap.add_argument("--seed", type=int, default=1234)
    a = ap.parse_args()
    from transformers import CLIPTokenizer
    texts = generate(a.count, a.seed)
    toks = []
    for sub in ("tokenizer", "tokenizer_2"):
        tok = CLIPTokenizer.from_pretrained(os.path.join(a.tokenizer_root, sub))
        tok.add_tokens(["<s0>", "<s1>"])
        assert tok.convert_tokens_to_ids(["<s0>", "<s1>"]) == [49408, 49409]
        toks.append(tok)
    cases = [{"text": t} for t in texts]
    covered = set()
    for k, tok in enumerate(toks, 1):
        ids = tok(texts, padding="max_length", max_length=77, truncation=True).input_ids
        full = tok(texts, add_special_tokens=False).input_ids
        for c, i, f in zip(cases, ids, full):
            assert len(i) == 77
            c[f"ids_{k}"], c[f"tokens_{k}"] = i, f
            covered.update(f)
    with open(a.out_json, "w", encoding="utf-8") as f:
        json.dump({"cases": cases}, f, ensure_ascii=False)
    n_long = sum(len(c["tokens_1"]) > 75 for c in cases)
    n_12 = sum(c["tokens_1"] != c["tokens_2"] for c in cases)
    print(f"wrote {a.out_json}: {len(cases)} cases ({len(HAND)} hand-written), {len(covered)} distinct token ids, "
          f"{n_long} longer than 75 tokens, {n_12} where tokenizer/ and tokenizer_2/ differ")
    cleaned = toks[0]([openclip_clean(t) for t in texts], add_special_tokens=False).input_ids
    diff_a = [c["text"] for c, x in zip(cases, cleaned) if x != c["tokens_1"]]
    oc = OpenClipLike(os.path.join(a.tokenizer_root, "tokenizer"))
    plain = [c for c in cases if not regex.search(r"<s[01]>", c["text"], regex.IGNORECASE)]  # no added tokens
    diff_b = [c["text"] for c in plain if oc.encode(c["text"]) != c["tokens_1"]]
    print(f"open_clip-style cleaning (ftfy {'used' if ftfy else 'not installed'}): {len(diff_a)} cases change "
          f"when cleaned text is fed to transformers; {len(diff_b)} of the {len(plain)} without <s0>/<s1> differ "
          f"with an open_clip SimpleTokenizer reimplementation (vs tokens_1)")
    for name, d in (("cleaning", diff_a), ("open_clip", diff_b)):
        print(f"  e.g. ({name}):", " | ".join(repr(s)[:40] for s in d[:8]))


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    main()
