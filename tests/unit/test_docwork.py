"""The C guard and token counter (``zipfit_beam.score._docwork``) against their Python
definitions, and ``DocumentWork`` with and without the extension.

Every comparison is exact: the same token strings and token hashes as
``contamination.normalize``/``token_hash``, the same ``Match`` (target id and windows) as
``ContaminationIndex.match``, the same piece boundaries (not only the count) as the token
counter's regex. Texts: the bundled real corpus, adversarial strings (empty, whitespace of
every kind, digit runs, underscores, every contraction in every case, CRLF, tabs, NUL, long
texts, non-ASCII letters and digits, emoji, combining marks, case mappings that change length,
final sigma, lone surrogates), random strings, and code points in context: the 256K code points
of planes 0-3 and the tags/variation selectors block in full, a sample of the rest
(``ZIPFIT_EXHAUSTIVE=1``: all 1,114,112; 0 mismatches when last run, 2026-12-02).
"""

from __future__ import annotations

import os
import platform
import random
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from zipfit_beam.records import Document
from zipfit_beam.score import contamination, docwork, tokens
from zipfit_beam.score import ncd
from zipfit_beam.score.ncd import TargetSet
from zipfit_beam.score.spec import ScoringSpec, prepare_targets
from tests.conftest import read_jsonl
from zipfit_beam.jobs.example import EXAMPLE_SOURCE, EXAMPLE_TARGETS

ext = pytest.importorskip("zipfit_beam.score._docwork", reason="C extension not built")
FUSED_KERNELS = ("c-gzip1", "c-lz4", "c-zstd", "c-isal")  # scores from the extension's pass

CONTRACTIONS = ["'s", "'t", "'re", "'ve", "'m", "'ll", "'d"]
ADVERSARIAL = [
    "", " ", "  ", "\n", "\r\n", "\t", " \t \n\r\n  ", "\x0b\x0c\x1c\x1d\x1e\x1f\x85\xa0\u2028\u3000",
    "0", "12", "123", "1234", "1234567", " 1234567 ", "a1b22c333d4444", "x 12 345 6789",
    "_", "__", "a_b", "_a_", "snake_case__name_", " _ ", "__init__(self)",
    *CONTRACTIONS, *(c.upper() for c in CONTRACTIONS), "'Ll 'lL 'Re 'rE 'Ve 'vE",
    "it's they're we've I'm you'll he'd don't IT'S THEY'RE", "''s '''t ' s 's's", "'", "x'", "'x",
    "'\u017ft \u017f's", "rock'n'roll", "'sa 'lly 'rer",
    "line one\r\nline two\r\n\r\n", "\tindented\n\t\tmore\t", "a\x00b\x00\x00c 1\x00 2",
    "naïve café résumé Ünïcode ÀÉÎÕÜ", "Straße STRASSE ß ẞ", "İstanbul İİ ı I", "ΟΔΟΣ ΟΔΟΣΣ Σ ΑΣ. σς",
    "Kelvin \u212a \u212b Ångström", "ﬁne ﬂow ﬀ", "٣٤٥ ١٢٣٤ ²³ ① Ⅻ １２３ ５",
    "emoji 😀😃 🇫🇷 👩‍👩‍👧 x😀y 1😀2", "cafe\u0301 e\u0301\u0301 \u0301a \u0300\u0301\u0302",
    "中文字符 日本語のテキスト 한국어 텍스트", "עברית العربية हिन्दी ไทย",
    "lone \ud800 surrogate \udfff x\ud83dy", "\U000e0041\U000e0042 tags \ufe0f\ufe0e",
    "mixed ASCII and é: def f(x):\n    return x_1 + 'ok's 123456", "ǅungla ǈ ǋ",
]


def long_texts():
    rng = random.Random(5)
    words = ["def", "return", "self", "x1", "_", "12345", "'s", "Ünï", "😀", "\n", "\t", "  "]
    return ["a" * 100_000, "1" * 10_001, " " * 50_000 + "x", "_" * 30_000,
            " ".join(rng.choice(words) for _ in range(40_000)),
            "Σ" * 5000 + " " + "İ" * 5000]


def random_texts(n=1500, seed=3):
    rng = random.Random(seed)
    alphabet = "abZS09_.,;:'\"\n\t\r  é中😀\u0301²-+*/\\\x00\u017fΣİK\u212a٣"
    return ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 80))) for _ in range(n)]


@pytest.fixture(scope="module")
def corpus():
    return [r["text"] for r in read_jsonl(EXAMPLE_SOURCE)]


def all_texts(corpus):
    return corpus + ADVERSARIAL + long_texts() + random_texts()


def pieces(text):
    return [m.end() for m in tokens._PRETOKEN.finditer(text)]


@pytest.fixture(params=["bitmaps", "loops"])
def walk(request):
    """The ASCII pre-tokenizer's two walks: class bitmaps (here for texts of any length) or
    a loop per character (what builds without SSE2 run)."""
    limit = (1 << 40) if request.param == "bitmaps" else 0
    before = ext._class_bitmaps(limit)
    if before is None and request.param == "bitmaps":
        # x86-64 always has SSE2: None there means the load-time check of the bitmaps failed
        assert platform.machine().lower() not in ("x86_64", "amd64"), "class bitmaps disabled"
        pytest.skip("this build has no class bitmaps (no SSE2)")
    yield request.param
    if before is not None:
        ext._class_bitmaps(before)


# --- the guard's tokens and the counter's pieces ------------------------------------------

@pytest.mark.parametrize("fused", [True, False])
def test_guard_tokens_and_hashes_equal_python(corpus, fused, walk):
    mismatches = 0
    for text in all_texts(corpus):
        toks, hashes = ext._guard_tokens(text, fused)
        expected = contamination.normalize(text)
        mismatches += toks != [t.encode("utf-8") for t in expected]
        mismatches += hashes != [contamination.token_hash(t) for t in expected]
    assert mismatches == 0


def test_counter_pieces_equal_the_regex(corpus, walk):
    texts = all_texts(corpus)
    assert sum(ext._pieces(t) != pieces(t) for t in texts) == 0
    assert docwork.count_tokens(texts) == [tokens.count_regex(t) for t in texts]
    assert docwork.count_tokens(["", " "]) == [1, 1]  # at least one token, as count_regex


def test_the_comparisons_above_can_fail():
    # a text where the regex and a naive "letters/digits/rest" split disagree, to be sure the
    # piece lists are compared position by position
    assert pieces("a  b") == [1, 2, 4] and pieces("'sx") == [2, 3] and pieces("1234") == [3, 4]
    assert ext._pieces("a  b") == [1, 2, 4]
    assert contamination.normalize("İ") == ["i"] and "İ".lower() == "i\u0307"  # not per character


def code_point_chunks():
    """Every code point of planes 0-3 and U+E0000-U+E0FFF; a 1-in-97 sample of the rest
    (unassigned or private use: uniform properties), all of them with ZIPFIT_EXHAUSTIVE=1."""
    if os.environ.get("ZIPFIT_EXHAUSTIVE"):
        points = range(0x110000)
    else:
        points = [*range(0x40000), *range(0x40000, 0xE0000, 97), *range(0xE0000, 0xE1000),
                  *range(0xE1000, 0x110000, 97)]
    points = list(points)
    for i in range(0, len(points), 0x8000):
        yield points[i:i + 0x8000]


def test_every_code_point_in_context(walk):
    # each code point X after an apostrophe (contractions, folded case), before and after "l"
    # and "e", doubled after a space, next to digits and underscores, and at a line's end
    context = "'{0}l'l{0}'{0}e {0}{0}1_{0} {0}"
    bad = []
    for chunk in [range(128), *code_point_chunks()]:  # ASCII alone first: an ASCII str's walk
        text = "\n".join(context.format(chr(c)) for c in chunk)
        if ext._pieces(text) != pieces(text):
            bad.append(("pieces", hex(chunk[0])))
        if ext._guard_tokens(text)[0] != [t.encode("utf-8") for t in contamination.normalize(text)]:
            bad.append(("guard", hex(chunk[0])))
    assert bad == []


def test_long_non_ascii_texts_are_lowercased_piece_by_piece_exactly():
    # str.lower() of non-ASCII text is done LOWER_CHARS characters at a time, cut after an
    # ASCII space, tab, CR or newline (as contamination.lowered_pieces); cut small here, next
    # to the context-dependent mappings (final sigma, dotted I) and spaces that do not cut.
    assert ext.LOWER_CHARS == contamination.LOWER_CHARS
    rng = random.Random(8)
    parts = ["ΟΔΟΣ", "Σ", "ΑΣ.", "İİ", "I", "ß", "naïve", "x1", "_", "\u00a0", "\u3000", "😀", "e\u0301"]
    seps = [" ", "\t", "\n", "\r", "", "\u00a0", "-"]
    texts = ["".join(rng.choice(parts) + rng.choice(seps) for _ in range(rng.randint(1, 400))) for _ in range(60)]
    texts += ["ΣΣΣΣ" * 50, "Σ " * 100 + "ΟΔΟΣ", "ΟΔΟΣ\u00a0" * 80]  # no cut for long stretches
    bad = 0
    for text in texts:
        expected = [t.encode("utf-8") for t in contamination.normalize(text)]
        for size in (1, 2, 3, 7, 64, 10 ** 6):
            bad += ext._guard_tokens(text, True, size)[0] != expected
    assert bad == 0
    prepared, index = guard_case()
    guard, _ = docwork._compiled(index)
    copies = [t.upper().replace(" ", "\u00a0 ") + " ΟΔΟΣ" for t in prepared.texts]
    got = ext.analyze(copies, guard, True, lower_chars=5)
    assert got == ext.analyze(copies, guard, True)
    assert [(ids_of(r, index)) for r in got] == [index.match(t) for t in copies]


def ids_of(row, index):
    _, ids = docwork._compiled(index)
    _, rank, windows = row
    return contamination.Match(ids[rank], windows) if windows else None


def test_the_guard_holds_no_per_token_memory():
    # Window hashes are computed as the tokens stream in (the last n token hashes kept) and
    # non-ASCII text is lowercased 1 MiB at a time: a text of 24 M tokens (ASCII) or 16 M
    # characters (non-ASCII) adds no more than a few MB to the process's peak.
    code = (
        "import resource, sys\n"
        "from zipfit_beam.score import contamination, docwork, _docwork\n"
        "idx = contamination.ContaminationIndex(contamination.target_ngrams('T', ' '.join(f'w{i}' for i in range(40))))\n"
        "guard, _ = docwork._compiled(idx)\n"
        "text = sys.argv[1] * int(sys.argv[2])\n"
        "base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "_docwork.analyze([text], guard, True)\n"
        "print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) // 1024)\n")
    for unit, times in [("ab ", 8_000_000), ("é ", 8_000_000)]:
        proc = subprocess.run([sys.executable, "-c", code, unit, str(times)], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
        grown_mb = int(proc.stdout.strip())
        assert grown_mb < 40, (unit, grown_mb)  # a token list would be >= 64 MB, whole lower() 190 MB


# --- the guard's matches -------------------------------------------------------------------

def guard_case():
    """An index over real targets, short targets (whole-target n-grams of 8-12 tokens),
    duplicate targets under two ids (shared entries, ties), and non-ASCII targets; and
    documents that contain them disguised, or not."""
    real = read_jsonl(EXAMPLE_TARGETS)
    extra = [("short-9", "alpha beta gamma delta epsilon zeta eta theta iota"),
             ("B-dup", real[0]["text"]), ("A-dup", real[0]["text"]),
             ("unicode", "Ünïcode café naïve ΟΔΟΣ İstanbul straße ﬁne ٣٤٥ résumé garçon déjà vu encore"),
             ("tiny", "return x + 1")]
    docs = [Document(r["id"], r["text"], "t.jsonl", i, b"") for i, r in enumerate(real)]
    docs += [Document(i, t, "x.jsonl", k, b"") for k, (i, t) in enumerate(extra)]
    prepared = prepare_targets(docs)
    return prepared, prepared.ngram_index(13)


def real_first_id():
    return read_jsonl(EXAMPLE_TARGETS)[0]["id"]  # "HumanEval/0": sorts after "A-dup", "B-dup"


def disguised(corpus, prepared):
    rng = random.Random(11)
    out = []
    for i, text in enumerate(corpus[:120]):
        target = prepared.texts[i % len(prepared.texts)]
        variant = [target, target.upper(), target.lower().replace(" ", "\t"), target.replace("\n", "\r\n")][i % 4]
        cut = rng.randint(0, len(text))
        out.append(text[:cut] + " " + variant + " " + text[cut:])
    out += [" ".join([t, t]) for t in prepared.texts]  # every window twice
    out += [prepared.texts[0] + " " + prepared.texts[1]]  # two targets in one document
    words = contamination.normalize(prepared.texts[2])
    out += [" ".join(words[:12]), " ".join(words[:13]), " ".join(words[1:14]).upper()]  # 12 vs 13 tokens
    out += ["ÜNÏCODE CAFÉ NAÏVE ΟΔΟΣ İSTANBUL STRASSE ﬁne ٣٤٥ RÉSUMÉ GARÇON DÉJÀ VU ENCORE",
            "prefix ALPHA, beta; gamma delta epsilon zeta eta theta iota suffix"]
    return out


def test_guard_matches_equal_python(corpus):
    prepared, index = guard_case()
    assert 9 in index.sizes and 13 in index.sizes
    texts = corpus + disguised(corpus, prepared) + ADVERSARIAL + long_texts() + random_texts(300)
    got = docwork.guard_matches(index, texts)
    expected = [index.match(t) for t in texts]
    assert sum(g != e for g, e in zip(got, expected)) == 0
    found = [e for e in expected if e is not None]
    assert len(found) > 120  # the disguised copies are found (the comparison is not vacuous)
    assert {"A-dup", "short-9", "unicode"} <= {m.target_id for m in found}
    assert not {"B-dup", real_first_id()} & {m.target_id for m in found}  # ties: the smallest id


def test_empty_index_and_bad_tables():
    empty = contamination.ContaminationIndex([])
    assert docwork.guard_matches(empty, ["anything at all here"]) == [None]
    with pytest.raises(ValueError):
        ext.GuardIndex([(13, b"\x02" + b"\0" * 7 + b"\x01" + b"\0" * 7, b"\0" * 12, b"\0" * 8)], 1)  # unsorted
    with pytest.raises(ValueError):
        ext.GuardIndex([(13, b"\0" * 8, b"\0" * 4 + b"\x01\0\0\0", b"\x05\0\0\0")], 1)  # rank >= n_ids
    with pytest.raises(TypeError):
        ext.analyze([b"bytes, not str"])


# --- DocumentWork ---------------------------------------------------------------------------

class RenamedCounter(tokens.TokenCounter):
    """Any counter other than the default (like --tokenizer) is counted over the batch."""
    name = "tokenizer.json:test"

    def count(self, texts):
        return [len(t) + 1 for t in texts]


def work_results(corpus, spec):
    """Results of every way to run DocumentWork on the same texts: extension or not, 1 or 2
    threads, default or other counter; and the reference: zlib lengths, all Python."""
    prepared, index = guard_case()
    target_set = prepared.target_set(spec)
    texts = disguised(corpus, prepared) + corpus[:60] + ADVERSARIAL[:40] + [corpus[0] * 30]  # one > 64 KiB
    texts = [t for t in texts if t.strip()]
    out = {}
    for name, counter in [("default", tokens.TokenCounter()), ("renamed", RenamedCounter())]:
        for use in (True, False):
            work = docwork.DocumentWork(target_set, index, counter, spec.long_documents, use_extension=use)
            assert work.engine == ("c" if use else "python")
            assert work.fused_scores == (use and ncd.kernel_name(spec.compressor, spec.level) in FUSED_KERNELS)
            with ThreadPoolExecutor(2) as pool:
                out[name, use, 2] = work.score_batch(texts, pool, 2)
            out[name, use, 1] = work.score_batch(texts)
    slow = TargetSet([t.encode("utf-8") for t in prepared.texts], spec.compressor, spec.level, use_kernel=False)
    out["reference"] = docwork.DocumentWork(slow, index, tokens.TokenCounter(), spec.long_documents,
                                            use_extension=False).score_batch(texts)
    return texts, out


@pytest.mark.parametrize("spec", [
    ScoringSpec(chunk_bytes=4096),  # some documents scored in chunks, reduced by max
    ScoringSpec(chunk_bytes=4096, chunk_reduce="mean"),  # the mean is left to Python
    ScoringSpec(max_doc_bytes=3000, chunk_bytes=1000),
    ScoringSpec(chunk_bytes=0),  # whole documents, one over 64 KiB (the window engine)
    ScoringSpec(compressor="lz4", level=0),  # the lz4 kernel: scores in the C pass too
    ScoringSpec(compressor="lz4", level=0, chunk_bytes=4096, chunk_reduce="mean"),
    ScoringSpec(compressor="zstd", level=1),  # the library looped in C (_liblen) when loaded
    ScoringSpec(compressor="gzip", level=6),  # no C kernel: scores per document, guard in C
], ids=["chunks-max", "chunks-mean", "truncate", "whole", "lz4", "lz4-chunks-mean", "zstd", "gzip-6"])
def test_document_work_is_the_same_with_and_without_the_extension(corpus, spec):
    texts, out = work_results(corpus, spec)
    reference = out["reference"]
    assert [r.tokens for r in reference] == [tokens.count_regex(t) for t in texts]
    assert [r.size for r in reference] == [len(t.encode("utf-8")) for t in texts]
    assert sum(1 for r in reference if r.copied) > 100
    for key in [("default", True, 1), ("default", True, 2), ("default", False, 1), ("default", False, 2)]:
        assert out[key] == reference, key  # scores equal as floats, not approximately
    renamed = [r._replace(tokens=len(t) + 1) for r, t in zip(reference, texts)]
    for key in [("renamed", True, 1), ("renamed", True, 2), ("renamed", False, 1)]:
        assert out[key] == renamed, key


def test_no_guard_and_forced_fallback(corpus, monkeypatch):
    prepared, _ = guard_case()
    target_set = prepared.target_set(ScoringSpec())
    texts = corpus[:30]
    with_ext = docwork.DocumentWork(target_set, None).score_batch(texts)
    monkeypatch.setattr(docwork, "_EXT", None)  # as when the extension is not built
    without = docwork.DocumentWork(target_set, None)
    assert without.engine == "python" and not docwork.extension_loaded()
    assert without.score_batch(texts) == with_ext
    assert all(r.copied == "" for r in with_ext)
    assert docwork.count_tokens(texts) == [tokens.count_regex(t) for t in texts]


def test_the_package_works_when_the_extension_cannot_be_imported():
    code = (
        "import sys; sys.modules['zipfit_beam.score._docwork'] = None\n"  # import fails
        "from zipfit_beam.score import docwork, contamination\n"
        "from zipfit_beam.score.ncd import TargetSet\n"
        "assert not docwork.extension_loaded()\n"
        "t = 'def add(a, b):\\n    return a + b  # adds two numbers and returns the sum of them'\n"
        "idx = contamination.ContaminationIndex(contamination.target_ngrams('T', t))\n"
        "w = docwork.DocumentWork(TargetSet([t.encode()]), idx)\n"
        "r = w.score_batch(['x ' + t, 'unrelated text'])\n"
        "assert w.engine == 'python' and [x.copied for x in r] == ['T', ''], r\n"
        "assert docwork.guard_matches(idx, [t])[0].target_id == 'T'\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_the_extension_is_used_when_built():
    assert docwork.extension_loaded()  # the import-time self-check passed


def test_concurrent_calls_give_the_serial_answers(corpus):
    _, index = guard_case()
    guard, _ = docwork._compiled(index)
    parts = [corpus[i::4] + ADVERSARIAL for i in range(4)]
    serial = [ext.analyze(p, guard, True) for p in parts]
    results = [None] * 4
    barrier = threading.Barrier(4)

    def run(i):
        barrier.wait()
        for _ in range(5):
            results[i] = ext.analyze(parts[i], guard, True)
            assert results[i] == serial[i]

    threads = [threading.Thread(target=run, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == serial


# --- the lz4 kernel's scores in the C pass ----------------------------------------------------

lz4_kernel = pytest.importorskip("zipfit_beam.score._lz4len", reason="lz4 kernel not built")

LZ4_SPECS = [
    ScoringSpec(compressor="lz4", level=0, chunk_bytes=0),  # whole documents, up to 200 KB
    ScoringSpec(compressor="lz4", level=0),  # the default: 32 KiB chunks, reduced by max
    ScoringSpec(compressor="lz4", level=1, chunk_bytes=4096),
    ScoringSpec(compressor="lz4", level=2, chunk_bytes=4096, chunk_reduce="mean"),  # mean: Python
    ScoringSpec(compressor="lz4", level=0, max_doc_bytes=3000, chunk_bytes=1000),
    ScoringSpec(compressor="lz4", level=0, max_doc_bytes=70_000, chunk_bytes=0),  # past 64 KiB, cut
    ScoringSpec(compressor="lz4", level=0, max_doc_bytes=150_000, chunk_bytes=65_537, chunk_reduce="mean"),
]
LZ4_IDS = ["whole", "chunks-32k-max", "chunks-4k-max", "chunks-4k-mean", "truncate-chunks",
           "truncate-70k", "chunks-64k-mean"]


def lz4_texts(corpus):
    """Real documents and adversarial ones: empty, 1 byte, non-ASCII, incompressible (random
    code points and random bytes as Latin-1), at and past the 64 KiB block boundary, long
    repeats, and long enough for every truncation and chunking above."""
    rng = random.Random(31)
    noise = rng.randbytes(40_000).decode("latin-1")  # 1-2 UTF-8 bytes per character
    points = "".join(chr(rng.choice([rng.randrange(32, 0xD800), rng.randrange(0xE000, 0x110000)]))
                     for _ in range(20_000))
    big = "".join(corpus)
    valid = [t for t in ADVERSARIAL if "lone" not in t]  # lone surrogates have no UTF-8
    return ["", "a", "é", "😀", "x" * 12, "x" * 13, *corpus[:60], *valid, noise[:100], noise, points,
            big[:65_536], big[:65_537], big[:140_000], big[:200_000], "ab" * 70_000, "\0" * 200_000,
            corpus[0] * 30, *long_texts(), *random_texts(100)]


def lz4_case(corpus):
    prepared, index = guard_case()
    return prepared, index, lz4_texts(corpus)


def python_reference(prepared, index, spec, texts):
    """The all-Python path: lz4.frame lengths, ncd.alignment_from_lengths, no extension."""
    slow = TargetSet([t.encode("utf-8") for t in prepared.texts], "lz4", spec.level, use_kernel=False)
    assert slow.kernel is None and slow._kernel_alignment is None
    return docwork.DocumentWork(slow, index, None, spec.long_documents, use_extension=False).score_batch(texts)


@pytest.fixture(scope="module")
def lz4_references(corpus):
    prepared, index, texts = lz4_case(corpus)
    return {i: python_reference(prepared, index, spec, texts) for i, spec in zip(LZ4_IDS, LZ4_SPECS)}


@pytest.mark.parametrize("spec", LZ4_SPECS, ids=LZ4_IDS)
def test_lz4_scores_in_the_c_pass_equal_python_bit_for_bit(corpus, lz4_references, spec):
    prepared, index, texts = lz4_case(corpus)
    target_set = prepared.target_set(spec)
    assert isinstance(target_set.kernel, lz4_kernel.Lz4Targets)
    work = docwork.DocumentWork(target_set, index, None, spec.long_documents)
    assert work.engine == "c" and work.fused_scores
    reference = lz4_references[LZ4_IDS[LZ4_SPECS.index(spec)]]
    got = work.score_batch(texts)
    # floats compared with ==, per document (the sizes and the guard too)
    assert [r for r, e in zip(got, reference) if r != e] == []
    assert len({r.score for r in reference}) > len(texts) // 2  # not vacuous: distinct scores
    with ThreadPoolExecutor(2) as pool:
        assert work.score_batch(texts, pool, 2) == reference


def test_lz4_several_threads_on_one_document_work(corpus, lz4_references):
    prepared, index, texts = lz4_case(corpus)
    spec = LZ4_SPECS[1]
    work = docwork.DocumentWork(prepared.target_set(spec), index, None, spec.long_documents)
    reference = lz4_references[LZ4_IDS[1]]
    parts = [list(range(i, len(texts), 4)) for i in range(4)]
    results = [None] * 4
    barrier = threading.Barrier(4)

    def run(i):
        barrier.wait()
        for _ in range(3):
            results[i] = work.score_batch([texts[j] for j in parts[i]])
            assert results[i] == [reference[j] for j in parts[i]]

    threads = [threading.Thread(target=run, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [[reference[j] for j in p] for p in parts]
    with ThreadPoolExecutor(4) as pool:
        assert work.score_batch(texts, pool, 4) == reference


def test_lz4_scores_come_from_the_c_pass_not_python(corpus, lz4_references, monkeypatch):
    # With Python's scorer made to fail, the whole-document and max-chunked scores still come
    # out (from the kernel, in the pass); with the mean only the chunked documents reach Python.
    prepared, index, texts = lz4_case(corpus)
    works = {i: docwork.DocumentWork(prepared.target_set(spec), index, None, spec.long_documents)
             for i, spec in zip(LZ4_IDS, LZ4_SPECS)}
    called = []

    def python_scorer(targets, data, **long_docs):
        called.append(len(data))
        raise AssertionError("scored in Python")

    monkeypatch.setattr(docwork, "document_score", python_scorer)
    monkeypatch.setattr(TargetSet, "alignment", lambda self, x: python_scorer(self, x))
    for name in ["whole", "chunks-32k-max", "chunks-4k-max", "truncate-chunks", "truncate-70k"]:
        assert works[name].score_batch(texts) == lz4_references[name], name
    assert called == []
    with pytest.raises(AssertionError, match="scored in Python"):
        works["chunks-4k-mean"].score_batch(texts)
    spec = LZ4_SPECS[LZ4_IDS.index("chunks-4k-mean")]
    chunked = [t for t in texts if spec.is_chunked(len(t.encode("utf-8")))]
    assert called[0] == len(chunked[0].encode("utf-8"))  # the first chunked one, not before


def test_lz4_without_the_kernel_or_the_extension(corpus, lz4_references, monkeypatch):
    prepared, index, texts = lz4_case(corpus)
    spec = LZ4_SPECS[1]
    reference = lz4_references[LZ4_IDS[1]]
    no_ext = docwork.DocumentWork(prepared.target_set(spec), index, None, spec.long_documents,
                                  use_extension=False)
    assert not no_ext.fused_scores and no_ext.score_batch(texts) == reference
    monkeypatch.setattr(ncd, "_LZ4_KERNEL", None)  # as when _lz4len is not built
    target_set = prepared.target_set(spec)
    assert target_set.kernel is None and ncd.kernel_name("lz4", 0) == "lz4.frame"
    no_kernel = docwork.DocumentWork(target_set, index, None, spec.long_documents)
    assert no_kernel.engine == "c" and not no_kernel.fused_scores
    assert no_kernel.score_batch(texts[:80]) == reference[:80]


def test_analyze_refuses_other_kernels():
    class Lz4Targets:  # the name of a kernel type, not the type
        n = 1

    for bad in (Lz4Targets(), object(), "Gzip1Targets"):
        with pytest.raises(TypeError, match="kernel must be"):
            ext.analyze(["text"], None, True, bad)
    with pytest.raises(ValueError, match="no targets"):
        ext.analyze(["text"], None, True, lz4_kernel.Lz4Targets([]))
    [row] = ext.analyze(["text"], None, True, lz4_kernel.Lz4Targets([b"text"]))
    assert row[3] == TargetSet([b"text"], "lz4", 0).alignment_of_lengths(b"text") and row[4] == 4
