"""Which zlib the scores follow, and the zlib releases the C kernel is verified against.

Always, offline and without building anything: the gate (``ncd.CANONICAL_ZLIB``, the pinned
self-check lengths, ``_load_kernel`` refusing a kernel that misses them), ``scoring_identity``
and the check every scoring worker makes at setup against the launcher's identity.

With the zlib builds of ``python benchmarks/zlib_versions.py`` in its cache
(``$ZIPFIT_ZLIB_CACHE`` or ``~/.cache/zipfit-beam/zlib-versions``): every canonical release gives
the kernel's lengths on real and adversarial pairs and the pinned probe lengths, and the
builds left out (zlib-ng in compat mode) really differ. Without that cache those tests are skipped
(nothing is downloaded or built here).
"""

from __future__ import annotations

import gzip
import importlib.util
import json
import pathlib
import random
import sys
import types
import zlib

import pytest

import zipfit_beam.score
from zipfit_beam.score import ncd

ROOT = pathlib.Path(__file__).resolve().parents[2]


def _kernel():
    return pytest.importorskip("zipfit_beam.score._gzip1", reason="C kernel not built")


def _kernel_concat(g1):
    return lambda x, ys: g1.Gzip1Targets(ys).concat_lengths(x)


# ----------------------------------------------------------------------------------------------
# the gate


def test_canonical_releases():
    assert ncd.CANONICAL_ZLIB == ("1.2.11", "1.2.12", "1.2.13", "1.3", "1.3.1", "1.3.2")
    assert not any("ng" in v for v in ncd.CANONICAL_ZLIB)
    # the kernel states the same releases (one list, two places: kept equal here)
    assert _kernel().ZLIB_COMPAT == ncd.CANONICAL_ZLIB


def test_pinned_probe_lengths_are_canonical_zlibs():
    if zlib.ZLIB_RUNTIME_VERSION not in ncd.CANONICAL_ZLIB:
        pytest.skip(f"runtime zlib {zlib.ZLIB_RUNTIME_VERSION} is not canonical; the cache test checks the pins")
    got = tuple(len(gzip.compress(x + y, 1, mtime=0)) for x, ys in ncd._probe_cases() for y in ys)
    assert got == ncd._CANONICAL_PROBE_LENGTHS
    assert ncd.zlib_is_canonical()


def test_kernel_reproduces_the_pins_and_a_wrong_one_does_not():
    g1 = _kernel()
    assert ncd._reproduces_canonical(_kernel_concat(g1))
    off_by_one = lambda x, ys: [n + (len(x) + len(y) > 70_000) for n, y in zip(g1.Gzip1Targets(ys).concat_lengths(x), ys)]
    assert not ncd._reproduces_canonical(off_by_one)


@pytest.mark.parametrize("version, canonical", [
    ("1.2.8", False), ("1.2.11", True), ("1.2.12", True), ("1.2.13", True), ("1.3", True),
    ("1.3.1", True), ("1.3.2", True), ("1.3.3", False), ("1.3.0.zlib-ng", False),
    ("1.3.1.zlib-ng", False), ("1.2.13.1-motley", False)])
def test_zlib_is_canonical_by_version_and_self_check(version, canonical):
    exact = _kernel_concat(_kernel())  # lengths that pass the self-check, whatever zlib is here
    assert ncd.zlib_is_canonical(version, exact) is canonical
    assert ncd.zlib_is_canonical(version, lambda x, ys: [n + 1 for n in exact(x, ys)]) is False


def _fake_kernel(shift: int):
    g1 = _kernel()

    class Targets:
        def __init__(self, ys):
            self._t = g1.Gzip1Targets(ys)

        def concat_lengths(self, x):
            return [n + shift for n in self._t.concat_lengths(x)]

    return types.SimpleNamespace(Gzip1Targets=Targets, gzip1_length=g1.gzip1_length)


@pytest.mark.parametrize("shift, loads", [(0, True), (1, False)])
def test_load_kernel_runs_the_self_check(monkeypatch, shift, loads):
    fake = _fake_kernel(shift)
    monkeypatch.setitem(sys.modules, "zipfit_beam.score._gzip1", fake)
    monkeypatch.setattr(zipfit_beam.score, "_gzip1", fake, raising=False)
    assert (ncd._load_kernel() is fake) is loads


def test_load_kernel_without_the_kernel(monkeypatch):
    monkeypatch.setitem(sys.modules, "zipfit_beam.score._gzip1", None)  # import raises ImportError
    monkeypatch.delattr(zipfit_beam.score, "_gzip1", raising=False)
    assert ncd._load_kernel() is None


# ----------------------------------------------------------------------------------------------
# what the scores follow, and the workers' check

CANONICAL_DEBIAN = {"kernel": "zlib", "zlib_runtime": "1.2.13", "canonical": True}
KERNEL_FEDORA = {"kernel": "c-gzip1", "zlib_runtime": "1.3.1.zlib-ng", "canonical": True}
ZLIB_FEDORA = {"kernel": "zlib", "zlib_runtime": "1.3.1.zlib-ng", "canonical": False}


def test_scoring_identity_here():
    gz1 = ncd.scoring_identity("gzip", 1)
    assert set(gz1) == {"kernel", "zlib_runtime", "canonical"}
    assert gz1["zlib_runtime"] == zlib.ZLIB_RUNTIME_VERSION
    assert gz1["kernel"] == ncd.kernel_name("gzip", 1)
    assert gz1["canonical"] is (gz1["kernel"] == "c-gzip1" or ncd.zlib_is_canonical())
    assert ncd.scoring_identity("gzip", 6)["kernel"] == "zlib"
    assert ncd.scoring_identity("gzip", 6)["canonical"] is ncd.zlib_is_canonical()
    assert ncd.scoring_identity("lz4", 0)["canonical"] is None
    json.dumps(gz1)  # goes into manifest.json as it is


def test_same_scoring():
    assert ncd.same_scoring(CANONICAL_DEBIAN, KERNEL_FEDORA)  # the kernel makes Fedora canonical
    assert ncd.same_scoring(CANONICAL_DEBIAN, dict(CANONICAL_DEBIAN, zlib_runtime="1.3"))
    assert not ncd.same_scoring(CANONICAL_DEBIAN, ZLIB_FEDORA)
    assert not ncd.same_scoring(ZLIB_FEDORA, dict(ZLIB_FEDORA, zlib_runtime="1.3.0.zlib-ng"))
    assert ncd.same_scoring(ZLIB_FEDORA, dict(ZLIB_FEDORA))
    lz4 = {"kernel": "lz4.frame", "zlib_runtime": "1.2.13", "canonical": None}
    assert ncd.same_scoring(lz4, dict(lz4, zlib_runtime="1.3.1.zlib-ng"))
    assert not ncd.same_scoring(lz4, CANONICAL_DEBIAN)


def test_check_same_scoring_fails_loudly():
    here = ncd.scoring_identity("gzip", 1)
    ncd.check_same_scoring(dict(here), "gzip", 1)
    other = ZLIB_FEDORA if here["canonical"] else CANONICAL_DEBIAN
    with pytest.raises(RuntimeError, match="scores would differ between machines"):
        ncd.check_same_scoring(other, "gzip", 1)


def test_scoring_dofn_checks_at_setup():
    from zipfit_beam.score.spec import ScoringSpec
    from zipfit_beam.score.transforms import ScoreBatchDoFn
    dofn = ScoreBatchDoFn(ScoringSpec(compressor="gzip", level=1))
    assert dofn._scorer._scoring == ncd.scoring_identity("gzip", 1)  # taken where the job is built
    dofn.setup()
    dofn.teardown()
    here = ncd.scoring_identity("gzip", 1)
    dofn._scorer._scoring = ZLIB_FEDORA if here["canonical"] else CANONICAL_DEBIAN  # a launcher elsewhere
    with pytest.raises(RuntimeError, match="the job was built for"):
        dofn.setup()


# ----------------------------------------------------------------------------------------------
# the built zlib releases (only where benchmarks/zlib_versions.py left them)


def _bench():
    spec = importlib.util.spec_from_file_location("zlib_versions", ROOT / "benchmarks" / "zlib_versions.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def builds():
    bench = _bench()
    cache = bench.default_cache()
    found = bench.load_builds(cache)
    if not found:
        pytest.skip(f"no zlib builds in {cache}: run `python benchmarks/zlib_versions.py` (downloads "
                    f"the sources from crates.io and PyPI) to check the releases")
    return bench, found


@pytest.fixture(scope="module")
def cases(builds):
    """A few thousand real pairs and the script's adversarial inputs (targets cut to five)."""
    bench, _ = builds
    docs = bench.real_documents(0)
    rng = random.Random(1)
    sources = rng.sample(docs, 120)
    targets = bench.real_targets()[:40]
    text = b"\n".join(docs)
    adv_srcs, adv_tgts = bench.adversarial(text)
    adv_tgts = [t for t in adv_tgts if len(t) <= 17_000][:6]
    return [(x, bench.PackedTargets(targets)) for x in sources] + \
        [(x, bench.PackedTargets(adv_tgts)) for x in adv_srcs if len(x) <= 140_000]


def _mismatches(build, g1, cases) -> int:
    bad = 0
    for x, packed in cases:
        want = g1.Gzip1Targets(packed.texts).concat_lengths(x)
        bad += sum(a != b for a, b in zip(build.concat_lengths(x, packed), want))
        bad += build.gzip_length(x) != g1.gzip1_length(x)
    return bad


def test_canonical_releases_match_the_kernel(builds, cases):
    _, found = builds
    g1 = _kernel()
    checked = [v for v in ncd.CANONICAL_ZLIB if v in found]
    assert checked, f"none of {ncd.CANONICAL_ZLIB} among the builds {sorted(found)}"
    for v in checked:
        assert found[v].version == v
        assert _mismatches(found[v], g1, cases) == 0, v
        concat = lambda x, ys, b=found[v]: b.concat_lengths(x, builds[0].PackedTargets(ys))
        assert ncd.zlib_is_canonical(v, concat), v  # the pinned self-check lengths


def test_left_out_releases_differ(builds, cases):
    """zlib-ng is left out because its lengths differ (not by accident)."""
    _, found = builds
    g1 = _kernel()
    left_out = [label for label in found if found[label].version not in ncd.CANONICAL_ZLIB]
    if not left_out:
        pytest.skip("no left-out release among the builds")
    for label in left_out:
        assert _mismatches(found[label], g1, cases) > 0, label
        concat = lambda x, ys, b=found[label]: b.concat_lengths(x, builds[0].PackedTargets(ys))
        assert not ncd._reproduces_canonical(concat), label


def test_cached_key_tables_are_not_shared_across_kinds_of_lengths(monkeypatch):
    """--cache reuses a source file's key table by the scoring fingerprint: tables scored with
    another deflate (zlib-ng without the kernel) must not be reused where scores are canonical."""
    from zipfit_beam.records import Document
    from zipfit_beam.score import spec as spec_mod
    spec = spec_mod.ScoringSpec()
    targets = spec_mod.prepare_targets([Document("t", "def f(): return 1", "t.jsonl", 0, b"")])
    canonical = spec_mod.scoring_fingerprint(spec, targets, "text", "id", None)
    monkeypatch.setattr(ncd, "scoring_identity", lambda c, l: dict(ZLIB_FEDORA))
    assert spec_mod.scoring_fingerprint(spec, targets, "text", "id", None) != canonical
    monkeypatch.setattr(ncd, "scoring_identity", lambda c, l: dict(KERNEL_FEDORA))
    assert spec_mod.scoring_fingerprint(spec, targets, "text", "id", None) == canonical
