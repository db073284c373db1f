"""Targets from Hugging Face ``datasets``: loaded in the launcher, never on workers.

Three kinds of ``--target``:

    DIR                              a directory written by ``Dataset.save_to_disk`` or
                                     ``DatasetDict.save_to_disk`` (``DIR:SPLIT`` picks a
                                     split of a DatasetDict with several)
    data files (.csv, .tsv, .arrow, .txt, or any file with --target-format hf)
                                     read by the ``hf`` format (``formats.hf``)
    hf:NAME[:SPLIT] / hf:NAME:CONFIG:SPLIT
                                     a dataset on the Hub (or a local dataset directory),
                                     e.g. ``hf:openai_humaneval:test``

Loading from the Hub needs the network. Offline (``HF_HUB_OFFLINE=1``) ``datasets`` uses
its local cache and fails at once when the dataset is not there; with no such variable
set, we first check that the Hub answers (3 s at most) and fail at once with a clear
error when it does not, rather than letting ``datasets`` retry for half a minute.
Rows become ``RowRecord(source, position=row index, row)``.
"""

from __future__ import annotations

import contextlib
import os
import socket
from typing import Iterator, Optional, Tuple
from urllib.parse import urlparse

from zipfit_beam.formats.hf import no_download_counts, rows
from zipfit_beam.records import RowRecord

__all__ = ["HubUnreachable", "is_saved_dataset", "is_hf_target", "parse_hub_spec",
           "check_hub_reachable", "load_rows"]

HF_PREFIX = "hf:"
HUB_PROBE_TIMEOUT_S = 3.0


class HubUnreachable(ConnectionError):
    """The Hugging Face Hub cannot be reached (or offline mode is on) for a Hub target."""


def is_saved_dataset(path: str) -> bool:
    """A local directory written by ``save_to_disk`` (a Dataset or a DatasetDict)."""
    return os.path.isdir(path) and any(
        os.path.exists(os.path.join(path, name)) for name in ("state.json", "dataset_dict.json"))


def _split_saved(pattern: str) -> Tuple[str, Optional[str]]:
    """``DIR`` or ``DIR:SPLIT`` -> (DIR, SPLIT or None)."""
    if is_saved_dataset(pattern):
        return pattern, None
    head, sep, split = pattern.rpartition(":")
    if sep and head and is_saved_dataset(head):
        return head, split
    return pattern, None


def is_hf_target(pattern: str) -> bool:
    """True for ``hf:...`` and for a ``save_to_disk`` directory (optionally ``:SPLIT``)."""
    return pattern.startswith(HF_PREFIX) or is_saved_dataset(_split_saved(pattern)[0])


def parse_hub_spec(spec: str) -> Tuple[str, Optional[str], Optional[str]]:
    """``hf:NAME``, ``hf:NAME:SPLIT``, ``hf:NAME:CONFIG:SPLIT`` -> (name, config, split)."""
    parts = spec[len(HF_PREFIX):].split(":")
    if not parts[0] or len(parts) > 3 or any(not p for p in parts):
        raise ValueError(f"--target {spec!r}: expected hf:NAME, hf:NAME:SPLIT or hf:NAME:CONFIG:SPLIT")
    if len(parts) == 1:
        return parts[0], None, None
    if len(parts) == 2:
        return parts[0], None, parts[1]
    return parts[0], parts[1], parts[2]


def _one_split(what: str, loaded, split: Optional[str]):
    """A Dataset from what ``datasets`` returned: a Dataset, or a DatasetDict and a split."""
    import datasets
    if isinstance(loaded, datasets.DatasetDict):
        if split is None:
            if len(loaded) != 1:
                raise ValueError(f"--target {what}: has splits {', '.join(loaded)}; "
                                 f"name one, e.g. {what}:{next(iter(loaded))}")
            return next(iter(loaded.values()))
        if split not in loaded:
            raise ValueError(f"--target {what}: no split {split!r} (has {', '.join(loaded)})")
        return loaded[split]
    if split is not None and isinstance(loaded, datasets.Dataset):
        raise ValueError(f"--target {what}: holds a single Dataset; drop the :{split} suffix")
    return loaded


def check_hub_reachable(spec: str) -> None:
    """Fail at once, clearly, when a Hub target cannot be loaded for lack of network."""
    import datasets
    from huggingface_hub import constants
    if datasets.config.HF_HUB_OFFLINE:
        return  # datasets then uses its cache, and fails at once when the dataset is not there
    url = urlparse(constants.ENDPOINT)
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        socket.create_connection((url.hostname, port), timeout=HUB_PROBE_TIMEOUT_S).close()
    except OSError as e:
        raise HubUnreachable(
            f"--target {spec}: the Hugging Face Hub ({constants.ENDPOINT}) cannot be reached "
            f"({e}). Load it where the Hub is reachable and pass the saved directory "
            "(Dataset.save_to_disk) or its data files instead, or set HF_HUB_OFFLINE=1 to use "
            "a copy in the local Hugging Face cache.") from None


def load_rows(pattern: str) -> Iterator[RowRecord]:
    """Rows of a ``save_to_disk`` directory or an ``hf:`` target."""
    import datasets
    if not pattern.startswith(HF_PREFIX):
        path, split = _split_saved(pattern)
        yield from rows(pattern, _one_split(pattern, datasets.load_from_disk(path), split))
        return
    name, config, split = parse_hub_spec(pattern)
    if is_saved_dataset(name):
        yield from rows(pattern, _one_split(pattern, datasets.load_from_disk(name), split))
        return
    local = os.path.isdir(name)
    if not local:
        check_hub_reachable(pattern)
    try:
        with no_download_counts() if local else contextlib.nullcontext():
            loaded = datasets.load_dataset(name, config, split=split)
    except ConnectionError as e:  # datasets' OfflineModeIsEnabled / unreachable Hub
        raise HubUnreachable(
            f"--target {pattern}: cannot be loaded from the Hugging Face Hub: {e}"
            + (" (offline mode is on: HF_HUB_OFFLINE / HF_DATASETS_OFFLINE; the dataset is "
               "not in the local cache)" if datasets.config.HF_HUB_OFFLINE else "")) from None
    # load_dataset has applied the split when one was named; else it returns a DatasetDict
    yield from rows(pattern, _one_split(pattern, loaded, None))
