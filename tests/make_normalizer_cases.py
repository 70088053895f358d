#!/usr/bin/env python3
"""Writes tests/data/normalizer_cases.json: inputs and what Hugging Face tokenizers'
normalizer steps make of them, computed with Python's unicodedata and the `regex`
module (an independent Unicode implementation from utf8proc, which lmpress uses).

Lowercase is per code point, as HF's (Rust's char::to_lowercase, so no final-sigma
rule); StripAccents drops General_Category M*; Strip trims White_Space.
Characters newer than Python's Unicode version are avoided.
Usage: python3 tests/make_normalizer_cases.py > tests/data/normalizer_cases.json"""
import json
import unicodedata

import regex

INPUTS = [
    "Hello, World!",
    "Cafe\u0301 na\u0308ive re\u0301sume\u0301",          # decomposed accents
    "Caf\u00e9 na\u00efve r\u00e9sum\u00e9",               # composed
    "\ufb01nance \ufb02ow \u2163 \u00bd x\u00b2 \u2460",   # ligatures, roman numeral, fractions, super, circled
    "\uff28\uff45\uff4c\uff4c\uff4f \uff37\uff2f\uff32\uff2c\uff24\uff01",  # fullwidth
    "\ud55c\uad6d\uc5b4 \u1112\u1161\u11ab",               # Hangul syllables and jamo
    "a\u0323\u0302 a\u0302\u0323 \u1ea0\u0302",            # canonical reordering
    "\u0130stanbul \u0049\u0131 \u03a3\u039f\u03a6\u039f\u03a3 \u1e9e",  # dotted I, dotless i, final sigma, capital sharp s
    "\u00a0lead and trail\u3000\u2003",                    # NBSP, ideographic and em spaces
    "  \t\n spaced   out \r\n ",
    "\u2126 \u212b \u00c5 \u0041\u030a",                    # Ohm, Angstrom singletons
    "\u0627\u0644\u0639\u0631\u0628\u064a\u0629 \ufef7 \ufdfa",  # Arabic, presentation forms
    "Vi\u1ec7t Nam ti\u1ebfng Vi\u1ec7t",
    "\u0915\u094d\u0937 \u0958 \u0939\u093f\u0928\u094d\u0926\u0940",  # Devanagari, nukta composition exclusion
    "\U0001F469\u200D\U0001F4BB emoji \U0001F44D\U0001F3FD",
    "\u3071\u309a \u30ac \u30ab\u3099 \uff76\uff9e \u3300",  # kana voicing, halfwidth, squared katakana
    "\u2460\u2461 \u33a1 \u2122 \u00aa \u2026",
    "",
    "   ",
    "MiXeD CaSe \u00c0\u00c9\u00ce\u00d5\u00dc \u0100\u0112",
]

def lower(s):
    return "".join(c.lower() for c in s)

def strip_accents(s):
    return "".join(c for c in s if not unicodedata.category(c).startswith("M"))

def strip(s, left, right):
    if left:
        s = regex.sub(r"^\p{White_Space}+", "", s)
    if right:
        s = regex.sub(r"\p{White_Space}+$", "", s)
    return s

STEPS = {
    "NFC": [{"type": "NFC"}],
    "NFD": [{"type": "NFD"}],
    "NFKC": [{"type": "NFKC"}],
    "NFKD": [{"type": "NFKD"}],
    "Lowercase": [{"type": "Lowercase"}],
    "StripAccents": [{"type": "NFD"}, {"type": "StripAccents"}],
    "Strip": [{"type": "Strip", "strip_left": True, "strip_right": True}],
    "StripLeft": [{"type": "Strip", "strip_left": True, "strip_right": False}],
    "Chain": [{"type": "NFKC"}, {"type": "Lowercase"},
              {"type": "Replace", "pattern": {"Regex": r"\s+"}, "content": " "},
              {"type": "Strip", "strip_left": True, "strip_right": True},
              {"type": "Replace", "pattern": {"String": "."}, "content": " ."},
              {"type": "Prepend", "prepend": "\u2581"}],
}

def run(name, s):
    if name in ("NFC", "NFD", "NFKC", "NFKD"):
        return unicodedata.normalize(name, s)
    if name == "Lowercase":
        return lower(s)
    if name == "StripAccents":
        return strip_accents(unicodedata.normalize("NFD", s))
    if name == "Strip":
        return strip(s, True, True)
    if name == "StripLeft":
        return strip(s, True, False)
    s = lower(unicodedata.normalize("NFKC", s))
    s = strip(regex.sub(r"\s+", " ", s), True, True).replace(".", " .")
    return "\u2581" + s if s else s

cases = [{"name": n, "steps": STEPS[n], "input": s, "output": run(n, s)} for n in STEPS for s in INPUTS]
print(json.dumps({"unicode_version": unicodedata.unidata_version, "cases": cases}, ensure_ascii=True, indent=0))
