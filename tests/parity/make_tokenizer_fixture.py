#!/usr/bin/env python3
"""Writes the tokenizer parity fixtures from Hugging Face's Python BertTokenizer.

  tests/fixtures/tokenizer/dev_ids.txt     ids of the 872 SST-2 dev sentences, in file
                                           order, one line each, space-separated,
                                           max_length 512, truncation, no padding
  tests/fixtures/tokenizer/hard_cases.tsv  '#' comment lines, then per case
                                           NAME <TAB> MAX_LEN <TAB> JSON-string input
                                           <TAB> expected ids

The reference is the pure-Python BertTokenizer of transformers 4.x (BasicTokenizer +
WordpieceTokenizer); transformers 5.x keeps it as BertTokenizerLegacy, and its
BertTokenizer is the Rust "fast" tokenizer (which also silently ignores vocab_file=).
The script takes whichever is installed, checks that the whole vocabulary was
loaded, and reports where the fast tokenizer disagrees (informational).

Unicode data must match the C side: run it with a Python whose unicodedata version
equals utf8proc's (Python 3.12 = Unicode 15.0.0 = Debian 12's utf8proc 2.8.0).

  pip install transformers   # pulls tokenizers; torch is not needed
  python3.12 tests/parity/make_tokenizer_fixture.py [--data ../shared/data] [--out DIR]
"""
import argparse
import json
import os
import sys
import tempfile
import unicodedata

import transformers


def slow_tokenizer(vocab_path):
    """The Python BertTokenizer, whatever transformers version is installed."""
    try:
        from transformers.models.bert.tokenization_bert_legacy import BertTokenizerLegacy as cls
    except ImportError:
        from transformers import BertTokenizer as cls
    tok = cls(vocab_file=vocab_path, do_lower_case=True)
    with open(vocab_path, encoding="utf-8") as f:
        lines = sum(1 for _ in f)
    if len(tok.vocab) != lines or not hasattr(tok, "basic_tokenizer"):
        sys.exit(f"{cls.__name__} did not load {vocab_path} as the Python WordPiece tokenizer")
    return tok, cls.__name__


def fast_tokenizer(vocab_path, size):
    """The Rust tokenizer (BertTokenizerFast), loaded from a folder holding vocab.txt."""
    try:
        from transformers import BertTokenizerFast
        with tempfile.TemporaryDirectory() as d:
            os.symlink(os.path.abspath(vocab_path), os.path.join(d, "vocab.txt"))
            fast = BertTokenizerFast.from_pretrained(d, do_lower_case=True)
        if fast.vocab_size != size:
            raise ValueError(f"loaded {fast.vocab_size} tokens")
        return fast
    except Exception as e:  # informational only
        print(f"note: no fast tokenizer to compare with ({e})", file=sys.stderr)
        return None


def check_unicode_version(force):
    """Stops when Python's Unicode data differ from the C side's utf8proc."""
    try:
        import ctypes
        import ctypes.util
        lib = ctypes.CDLL(ctypes.util.find_library("utf8proc") or "libutf8proc.so.2")
        lib.utf8proc_unicode_version.restype = ctypes.c_char_p
        theirs = lib.utf8proc_unicode_version().decode()
    except (OSError, AttributeError):
        print("note: utf8proc not found; cannot compare Unicode versions", file=sys.stderr)
        return
    if theirs != unicodedata.unidata_version:
        msg = (f"Python has Unicode {unicodedata.unidata_version}, utf8proc {theirs}: "
               "use a Python with the same version (see the docstring)")
        if not force:
            sys.exit(msg + " or pass --force")
        print("warning: " + msg, file=sys.stderr)


def encode(tok, text, max_len):
    return tok(text, max_length=max_len, truncation=True)["input_ids"]


def sst2_sentences(path):
    with open(path, encoding="utf-8", newline="\n") as f:
        rows = f.read().split("\n")
    assert rows[0] == "sentence\tlabel", rows[0]
    return [r.split("\t")[0] for r in rows[1:] if r]


# (name, text, max_len): at least 50 cases the SST-2 dev set does not cover.
HARD_CASES = [
    ("empty", "", 512),
    ("spaces_only", "     ", 512),
    ("whitespace_mix", "\t\n\r \u00a0\u3000\u2003", 512),
    ("simple", "Hello, World!", 512),
    ("accents_lower", "Café naïve résumé façade", 512),
    ("accents_upper", "ÉCOLE ÀÉÎÕÜ ÇA", 512),
    ("decomposed_accent", "Cafe\u0301 E\u0301TE\u0301", 512),
    ("lone_combining", " \u0301\u0302 x \u0301abc", 512),
    ("german_sharp_s", "Straße GRÜSSE ẞ", 512),
    ("turkish_dotted_i", "İstanbul İİ ıi DİYARBAKIR", 512),
    ("greek_final_sigma", "ΟΔΟΣ ΟΔΥΣΣΕΥΣ Σ ΑΣΑ", 512),
    ("greek_sigma_context", "ΑΣ.Β ΑΣ'Β ΑΣ-Β ΑΣ\u0301 ΑΣ\u00adΒ ΑΣ:Β", 512),
    ("greek_polytonic", "Ἀθῆναι καλημέρα ὙΜΝΟΣ", 512),
    ("cyrillic", "Привет, мир! ЁЛКА йод", 512),
    ("cjk_run", "我爱北京天安门", 512),
    ("cjk_mixed", "hello世界world 中文abc", 512),
    ("cjk_ext_b", "𠀀𠀁 x𪚥y", 512),
    ("cjk_compat", "\uf900\uf901 \U0002f800", 512),
    ("japanese_kana", "ひらがな カタカナ 日本語テキスト", 512),
    ("korean_hangul", "안녕하세요 세계", 512),
    ("hangul_compat_jamo", "ㄱㄴㄷ ㅏㅑ", 512),
    ("arabic_harakat", "مَرْحَبًا بالعالم", 512),
    ("hebrew_niqqud", "שָׁלוֹם עולם", 512),
    ("devanagari", "नमस्ते दुनिया", 512),
    ("thai", "สวัสดีครับ", 512),
    ("punct_runs", "wow!!!??? ... ,,,;; --- ***", 512),
    ("ascii_punct_all", "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~", 512),
    ("unicode_punct", "«quoted» „German“ — dash – en… ¿qué? ¡sí!", 512),
    ("symbols_not_punct", "© ® ™ € £ ¥ ° ± × ÷ § ¶", 512),
    ("emoji", "I love it 😀👍🏽❤️ 🎉", 512),
    ("emoji_zwj", "👨\u200d👩\u200d👧 family", 512),
    ("keycap_enclosing", "1\ufe0f\u20e3 a\u20dd", 512),
    ("control_chars", "a\x00b\x01c\x7fd\x1be\x9ff", 512),
    ("nul_only", "\x00", 512),
    ("replacement_char", "a\ufffdb \ufffd", 512),
    ("soft_hyphen", "co\u00adoperate", 512),
    ("zero_width", "foo\u200bbar\u200cbaz\u2060qux", 512),
    ("bom", "\ufeffhello", 512),
    ("bidi_marks", "\u200fabc\u200e \u202adef\u202c", 512),
    ("newlines_tabs", "line1\nline2\tcol\r\nend", 512),
    ("vt_ff_fs", "a\x0bb\x0cc\x1cd\x1fe", 512),
    ("nel", "a\x85b", 512),
    ("line_para_sep", "a\u2028b\u2029c", 512),
    ("unicode_spaces", "a\u00a0b\u2003c\u3000d\u202fe\u1680f\u205fg", 512),
    ("private_use_unassigned", "a\ue000b c\u0378d \U000f0000e", 512),
    ("tag_chars", "flag\U000e0067\U000e0062 x", 512),
    ("word_100", "a" * 100, 512),
    ("word_101", "a" * 101, 512),
    ("word_101_after_strip", "e\u0301" * 101, 512),
    ("word_100_accented", "é" * 100, 512),
    ("dotted_i_60", "İ" * 60, 512),
    ("long_with_hyphen", "a" * 60 + "-" + "b" * 60, 512),
    ("long_cjk_run", "中" * 120, 512),
    ("long_word_pieces", "supercalifragilisticexpialidocious antidisestablishmentarianism", 512),
    ("unknown_char", "☃ ab☃cd", 512),
    ("special_tokens", "[CLS] hello [SEP] world [MASK] [PAD] [UNK]", 512),
    ("special_lowercase", "[cls] [sep] [mask]", 512),
    ("special_glued", "hello[MASK]world[SEP]", 512),
    ("special_adjacent", "[UNK][PAD][CLS]", 512),
    ("special_partial", "[CLS [[SEP]] [MAS K] [Sep]", 512),
    ("special_via_cleaning", "[C\x00LS] x [SE\u200bP]", 512),
    ("fullwidth", "ＨＥＬＬＯ　ＷＯＲＬＤ！ １２３", 512),
    ("ligatures", "ﬁnance ﬂow Ĳssel", 512),
    ("letterlike", "\u212a \u212b \u2126 Ⅻ ⅻ", 512),
    ("circled_letters", "Ⓐⓑ 🄰🅐", 512),
    ("titlecase_digraph", "ǅemal ǈ Ǆ", 512),
    ("math_alnum", "𝕳𝖊𝖑𝖑𝖔 𝐀𝐁", 512),
    ("math_symbols", "∑∫√∞ ≤ ≥ x²+y³", 512),
    ("numbers", "123,456.78 1e-5 3½ 0.5%", 512),
    ("apostrophes", "don't it's rock 'n' roll don’t", 512),
    ("url_email", "https://example.com/a?b=c&d=e user@mail.org", 512),
    ("hashes", "##hashtag #tag a##b", 512),
    ("vietnamese", "Tiếng Việt có dấu", 512),
    ("polish", "Zażółć gęślą jaźń", 512),
    ("nordic", "Ærø Øresund Åland", 512),
    ("cjk_punct", "你好，世界。「引用」", 512),
    ("sst_style", "it 's a charming and often affecting journey . ", 512),
    ("truncate_8", "the quick brown fox jumps over the lazy dog", 8),
    ("truncate_mid_word", "unaffable unaffable unaffable", 5),
    ("truncate_2", "anything at all", 2),
    ("truncate_3_special", "[MASK] a b", 3),
    ("truncate_512", " ".join(["word"] * 600), 512),
    ("truncate_pieces_512", " ".join(["unaffable"] * 300), 512),
]


def write_dev(tok, data, out):
    sents = sst2_sentences(os.path.join(data, "sst2", "dev.tsv"))
    with open(os.path.join(out, "dev_ids.txt"), "w", encoding="ascii", newline="\n") as f:
        for s in sents:
            f.write(" ".join(map(str, encode(tok, s, 512))) + "\n")
    return sents


def write_hard(tok, name, out):
    path = os.path.join(out, "hard_cases.tsv")
    with open(path, "w", encoding="ascii", newline="\n") as f:
        f.write(f"# generated by tests/parity/make_tokenizer_fixture.py: transformers "
                f"{transformers.__version__} {name}, python {sys.version.split()[0]}\n")
        f.write(f"# unicode {unicodedata.unidata_version}\n")
        f.write("# name\tmax_len\tjson input\texpected ids\n")
        for case, text, max_len in HARD_CASES:
            ids = " ".join(map(str, encode(tok, text, max_len)))
            f.write(f"{case}\t{max_len}\t{json.dumps(text, ensure_ascii=True)}\t{ids}\n")


def compare_fast(slow, fast, dev):
    cases = [(c, t, m) for c, t, m in HARD_CASES] + [(f"dev{i}", s, 512) for i, s in enumerate(dev)]
    diff = [c for c, t, m in cases if encode(slow, t, m) != encode(fast, t, m)]
    print(f"the fast (Rust) tokenizer differs on {len(diff)} of {len(cases)} inputs"
          + (": " + " ".join(diff[:40]) if diff else ""))


def main():
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=os.path.join(root, "..", "shared", "data"))
    ap.add_argument("--out", default=os.path.join(root, "tests", "fixtures", "tokenizer"))
    ap.add_argument("--force", action="store_true", help="write even if Unicode versions differ")
    args = ap.parse_args()
    check_unicode_version(args.force)
    if len(HARD_CASES) < 50:
        sys.exit("need at least 50 hard cases")
    vocab = os.path.join(args.data, "bert-base-uncased", "vocab.txt")
    tok, name = slow_tokenizer(vocab)
    os.makedirs(args.out, exist_ok=True)
    dev = write_dev(tok, args.data, args.out)
    write_hard(tok, name, args.out)
    print(f"wrote {len(dev)} dev sentences and {len(HARD_CASES)} hard cases to {args.out} "
          f"({name}, transformers {transformers.__version__}, unicode {unicodedata.unidata_version})")
    fast = fast_tokenizer(vocab, len(tok.vocab))
    if fast is not None:
        compare_fast(tok, fast, dev)


if __name__ == "__main__":
    main()
