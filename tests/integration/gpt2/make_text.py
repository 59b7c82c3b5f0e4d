#!/usr/bin/env python3
"""Assembles the mixed text the GPT-2 tokenizer is checked on (at least
MIN_BYTES): prose from the licenses and docs under /usr/share, C sources
of this repository, and generated pieces that stress the pre-tokeniser
and the BPE (contractions, digit runs, whitespace runs, CRLF, accented
letters, combining marks, CJK, emoji, unusual spaces, invalid UTF-8).
Deterministic given the same files.

    make_text.py REPO_ROOT OUT_FILE
"""
import glob
import os
import random
import sys

MIN_BYTES = 1_100_000
repo, out_path = sys.argv[1], sys.argv[2]
rng = random.Random(12)


def read_some(paths, budget):
    parts, total = [], 0
    for p in sorted(paths):
        if total >= budget:
            break
        try:
            with open(p, "rb") as f:
                data = f.read(200_000)
        except OSError:
            continue
        if not data or b"\0" in data:
            continue
        parts.append(data)
        total += len(data)
    return parts


prose = read_some(glob.glob("/usr/share/common-licenses/*"), 250_000)
prose += read_some(glob.glob("/usr/share/doc/*/copyright"), 250_000)
code = read_some(
    [p for d in ("common", "worker", "coordinator", "tests") for p in glob.glob(os.path.join(repo, d, "*.[ch]"))],
    300_000)

words = ["the", "The", "cat", "naïve", "café", "Ærø", "straße", "Ünïcödé", "résumé", "e\u0301", "ñ", "Ωμέγα",
         "Привет", "мир", "שלום", "مرحبا", "नमस्ते", "日本語", "中文字符", "한국어", "ｆｕｌｌｗｉｄｔｈ", "x²", "Ⅻ", "½",
         "٣٤٥", "١٢", "🙂", "👍🏽", "👨‍👩‍👧", "🇫🇷", "❤️", "🎉🎉", "<|endoftext|>", "http://example.com/a?b=c&d=1",
         "foo_bar", "fooBar", "--flag", "==", "!!!", "...", "$$", "©®™", "\u00a0nbsp", "\u3000ideo", "\ufeffbom",
         "zero\u200bwidth", "line\u2028sep", "para\u2029sep", "\u0085nel", "tab\there", "\x00nul", "\x1bescape",
         "\x7fdel"]
contractions = ["'s", "'t", "'re", "'ve", "'m", "'ll", "'d", "'S", "'T", "'RE", "'x", "''", "'"]
spaces = [" ", "  ", "   ", "\t", " \t ", "\n", "\n\n", "\r\n", "\r\n\r\n", "  \n", " \n ", "\n   ", "\u00a0",
          "\u2003", "\u3000 ", "\ufeff", "\u2028", " \u00a0 "]
invalid = [b"\x80", b"\xff", b"\xfe", b"\xc0\xaf", b"\xe0\x80\xaf", b"\xed\xa0\x80", b"\xed\xbf\xbf", b"\xe2\x82",
           b"\xf0\x9f\x98", b"\xf0\x9f", b"\xf4\x90\x80\x80", b"\xf8\x88\x80\x80\x80", b"\xc3", b"\xc3\x28",
           b"\xa0\xa1", b"\xe2\x28\xa1", b"\xf0\x28\x8c\xbc", b"\xc2\xc2\xa9"]


def generated(n_bytes):
    out, total = [], 0
    while total < n_bytes:
        kind = rng.random()
        if kind < 0.35:
            piece = rng.choice(words) + rng.choice(contractions if rng.random() < 0.3 else [""])
        elif kind < 0.5:
            piece = "".join(rng.choice("0123456789") for _ in range(rng.choice([1, 2, 3, 4, 7, 12, 30, 80])))
        elif kind < 0.8:
            piece = rng.choice(spaces) * rng.choice([1, 1, 1, 2, 5, 17])
        elif kind < 0.9:
            piece = rng.choice(["I", "you", "they", "we", "it", "He", "she"]) + rng.choice(contractions)
        else:
            piece = "".join(chr(rng.choice([rng.randint(0x20, 0x7e), rng.randint(0xa0, 0x24f),
                                             rng.randint(0x370, 0x52f), rng.randint(0x4e00, 0x9fff),
                                             rng.randint(0x1f300, 0x1faff), rng.randint(0x3040, 0x30ff)]))
                            for _ in range(rng.randint(1, 12)))
        b = piece.encode("utf-8", "surrogatepass")
        if rng.random() < 0.04:
            b = rng.choice(invalid) + b if rng.random() < 0.5 else b + rng.choice(invalid)
        out.append(b)
        total += len(b)
    return b"".join(out)


# CRLF and long whitespace and digit runs, and long words, as files have them
crlf = b"".join(p.replace(b"\n", b"\r\n") for p in prose[:2])
# (the JS encoders' BPE is quadratic in a word's length: long words cost them seconds)
runs = b"x" + b" " * 1000 + b"y\n" + b"\t" * 300 + b"\n" + b"9" * 1000 + b"\n" + b"=" * 1000 + b"\n" + \
    ("ab" * 500).encode() + b"\n" + b"\n" * 200 + b"end"
text = b"".join(prose) + crlf + b"".join(code) + runs
text += generated(max(MIN_BYTES - len(text), 300_000))
with open(out_path, "wb") as f:
    f.write(text)
print(f"{out_path}: {len(text)} bytes: prose {sum(map(len, prose)) + len(crlf)}, code {sum(map(len, code))}, "
      f"generated {len(text) - sum(map(len, prose)) - len(crlf) - sum(map(len, code)) - len(runs)}, runs {len(runs)}")
