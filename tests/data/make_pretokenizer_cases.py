#!/usr/bin/python3
"""Writes tests/data/pretokenizer_cases.json: llama.cpp's token ids for every byte-level BPE pre-tokenizer name it
knows (each `tokenizer_pre == "..."` in its src/llama-vocab.cpp), the independent reference that
tests/pretokenizer_cases_test.cc holds lmpress to.

Each name is set as tokenizer.ggml.pre on a copy of one of llama.cpp's own vocabulary files (models/ in its
checkout): ggml-vocab-llama-bpe.gguf (GPT-2 byte mapping) for most, ggml-vocab-gemma-4.gguf (raw UTF-8 with <0xNN>
byte tokens, tokenizer.ggml.model set to gpt2 so that the name alone decides) for the names llama.cpp tokenizes
without the byte mapping. The texts are llama.cpp's tokenizer-suite texts plus the ones below, which reach the
parts of the regexes the suite does not (case splits, digit grouping, CJK, marks, Unicode spaces, sentinels).
For each name it records the ids and the pieces llama.cpp's pre-tokenizer cuts each text into (many names give
the same ids on these texts while their regexes differ: the pieces tell them apart). Results identical across
names are stored once.

Needs the llama.cpp peer (../shared/tools/build-llama-cpp.sh) and /usr/bin/python3.
Usage: /usr/bin/python3 tests/data/make_pretokenizer_cases.py > tests/data/pretokenizer_cases.json"""
import json
import os
import re
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
SHARED_TOOLS = os.path.join(ROOT, "..", "shared", "tools", "build-llama-cpp.sh")

# Names llama.cpp tokenizes on raw UTF-8 (byte_encode = false in llama-vocab.cpp).
RAW = {"gemma4", "granite-embed-multi-311m", "sarvam-moe"}
# Belongs to llama.cpp's "whitespace" tokenizer model (its own session), not to BPE: llama.cpp asserts on it here.
SKIP = {"whitespace"}

EXTRA = [
    "HelloWorld JSONParser iPhone McDonald's DON'T you're I'LL we've",
    "1234567890 12 1,234,567.89 \u0661\u0662\u0663\u0664 \uff14\uff15\uff16 2024-12-07",
    "\u6211\u60f3\u5728apple\u5de5\u4f5c\uff0c\u4f60\u5462\uff1f\u65e5\u672c\u8a9e\u306e\u30c6\u30ad\u30b9\u30c8\u3001"
    "\u30ab\u30bf\u30ab\u30ca\u3002\ud55c\uad6d\uc5b4 \ud14d\uc2a4\ud2b8\u3131\u3134 \u3105\u3106",
    "\u0939\u093f\u0928\u094d\u0926\u0940 \u092d\u093e\u0937\u093e e\u0301cole na\u00efve "
    "\u0e44\u0e17\u0e22 \u0e9e\u0eb2\u0eaa\u0eb2\u0ea5\u0eb2\u0ea7",
    "path/to/file.txt\n// comment\r\n\tint x = a->b;  \n\n}",
    "Hello... world!!! ?? (yes) \u2014 \u201cquoted\u201d \u2018single\u2019 \u00abguillemets\u00bb \u2026 \u3002\uff0c\u3001",
    "T\u00fcrkiye'nin ba\u015fkenti Ankara'd\u0131r. O'Neil's",
    "<sentinel:12> IMGIMGABCZ text    four spaces  two\ttab",
    "\u0395\u03bb\u03bb\u03b7\u03bd\u03b9\u03ba\u03ac \u039a\u0395\u03a6\u0391\u039b\u0391\u0399\u0391, "
    "\u043a\u0438\u0440\u0438\u043b\u043b\u0438\u0446\u0430 \u0417\u0410\u0413\u041b\u0410\u0412\u041d\u042b\u0415",
    "a\u00a0b\u3000c\u2003d \u0085e\u2028f",
    "x\u00b2\u00b3 \u00bd \u2154 \u2460 \u216b",
    "emoji \U0001F44D\U0001F3FD\U0001F469\u200d\U0001F4BB and symbols $+<=>^`|~ \u20ac\u00a3\u00a5",
    "abc123def 4567ghi 89.1x",
    " " * 520 + "x" + "\t" * 20 + "y   ",
    "don't' 'S 'Re 'LL 've's",
    "Hello\n\n\nWorld\n",
    "\u4e00\u9fa5 \u3400\u4dbf \U00020000 \uf900 \u3005\u3006 \u2e80",
    "ARABIC: \u0627\u0644\u0633\u0644\u0627\u0645 \u0639\u0644\u064a\u0643\u0645\u060c \u06d4 \u0964 URDU",
    "camelCaseWord snake_case_word kebab-case-word SCREAMING_SNAKE",
    "x = {a};\n}\n\nreturn 0.\r\nend;\r\n\r\n  ok",
]


def peer():
    out = subprocess.run(["bash", SHARED_TOOLS], check=True, capture_output=True, text=True).stdout.split()
    src = subprocess.run(["bash", SHARED_TOOLS, "--src"], check=True, capture_output=True, text=True).stdout.split()
    return out[-1], src[-1]


def main():
    bindir, src = peer()
    names = []
    for n in re.findall(r'tokenizer_pre == "([^"]+)"', open(os.path.join(src, "src", "llama-vocab.cpp")).read()):
        if n not in names and n not in SKIP:
            names.append(n)
    sep = "\n__ggml_vocab_test__\n"
    suite = open(os.path.join(src, "models", "ggml-vocab-llama-bpe.gguf.inp"), encoding="utf-8").read()
    texts = suite.split(sep)[:-1]
    texts += [t for t in open(os.path.join(src, "models", "ggml-vocab-gemma-4.gguf.inp"), encoding="utf-8")
              .read().split(sep)[:-1] if t not in texts]
    texts += EXTRA
    commit = subprocess.run(["git", "-C", src, "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    with tempfile.TemporaryDirectory() as d:
        tool = os.path.join(d, "llama_tokenize_texts")
        subprocess.run(["g++", "-O1", "-std=c++17", os.path.join(HERE, "llama_tokenize_texts.cpp"),
                        "-I" + os.path.join(src, "include"), "-I" + os.path.join(src, "ggml", "include"),
                        "-L" + bindir, "-lllama", "-lggml-base", "-Wl,-rpath," + bindir, "-o", tool], check=True)
        with open(os.path.join(d, "texts"), "w", encoding="utf-8", newline="") as f:
            f.write("".join(t + sep for t in texts))
        ids_sets, pieces_sets, pre = [], [], {}

        def stored(sets, x):
            if x not in sets:
                sets.append(x)
            return sets.index(x)

        for name in names:
            base = "raw" if name in RAW else "byte"
            vocab = os.path.join(d, "v.gguf")
            edits = ["tokenizer.ggml.pre=" + name]
            if base == "raw":
                edits.append("tokenizer.ggml.model=gpt2")
            given = os.path.join(src, "models", "ggml-vocab-%s.gguf" % ("gemma-4" if base == "raw" else "llama-bpe"))
            subprocess.run(["/usr/bin/python3", os.path.join(ROOT, "bench", "tools", "gguf_edit_keys.py"), given, vocab]
                           + edits, check=True)
            r = subprocess.run([tool, vocab, os.path.join(d, "texts")], capture_output=True, text=True)
            if r.returncode != 0:
                sys.exit("%s: llama.cpp failed: %s" % (name, r.stderr.strip()))
            lines = r.stdout.split("\n")[:-1]
            if len(lines) != 2 * len(texts):
                sys.exit("%s: %d result lines for %d texts" % (name, len(lines), len(texts)))
            ids = [[int(x) for x in line.split()] for line in lines[0::2]]
            # The pieces of the text as given; llama.cpp writes the raw names' spaces as U+2581 first, so theirs
            # are not comparable and left out. Empty pieces (an empty regex match) make no tokens.
            pieces = [[bytes.fromhex(h).decode("utf-8") for h in line.split(" ") if h] for line in lines[1::2]]
            pre[name] = {"base": base, "ids": stored(ids_sets, ids)}
            if base == "byte":
                pre[name]["pieces"] = stored(pieces_sets, pieces)
    json.dump({"about": __doc__.split("\n\n")[0], "llama_cpp_commit": commit,
               "bases": {"byte": "ggml-vocab-llama-bpe.gguf", "raw": "ggml-vocab-gemma-4.gguf"},
               "texts": texts, "pre": pre, "ids": ids_sets, "pieces": pieces_sets}, sys.stdout, ensure_ascii=True, separators=(",", ":"))
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
