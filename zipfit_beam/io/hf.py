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
set, we first ask the Hub for the dataset's info through ``huggingface_hub`` (so its
endpoint, proxy and token settings apply; 3 s at most) and fail at once with a clear
error when it has no such dataset or does not answer, rather than letting ``datasets``
retry for half a minute. Needs the ``hf`` extra (``datasets``).
Rows become ``RowRecord(source, position=row index, row)``.
"""

from __future__ import annotations

import contextlib
import importlib
import os
from typing import Iterator, Optional, Tuple

from zipfit_beam.formats.hf import no_download_counts, require_datasets, rows
from zipfit_beam.records import RowRecord

__all__ = ["HubUnreachable", "HubTargetNotFound", "is_saved_dataset", "is_hf_target", "parse_hub_spec",
           "check_hub_reachable", "load_rows"]

HF_PREFIX = "hf:"
HUB_PROBE_TIMEOUT_S = 3.0


class HubUnreachable(ConnectionError):
    """The Hugging Face Hub cannot be reached (or offline mode is on) for a Hub target."""


class HubTargetNotFound(ValueError):
    """The Hub answered: it has no such dataset (or none this token may read)."""


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


def check_hub_reachable(spec: str, name: Optional[str] = None) -> None:
    """Fail at once, clearly, when Hub target ``spec`` (dataset ``name``) cannot be loaded.

    One request for the dataset's info (``HfApi.dataset_info``, ``HUB_PROBE_TIMEOUT_S`` at
    most), made by ``huggingface_hub`` as ``datasets`` would make it: to ``HF_ENDPOINT``,
    through the proxies of ``HTTPS_PROXY`` / ``HTTP_PROXY`` / ``NO_PROXY``, with the token
    of ``HF_TOKEN`` (or ``huggingface-cli login``). In offline mode (``HF_HUB_OFFLINE`` or
    ``HF_DATASETS_OFFLINE``) nothing is sent: ``datasets`` reads its cache and fails at once
    when the dataset is not there.

    The Hub answers 200: return. It answers that there is no such dataset (404, or 401 for
    a private one without a token): ``HubTargetNotFound``; a gated one without access: the
    same, saying so. No answer (refused, unknown host, proxy error, timeout) or a server
    error: ``HubUnreachable``."""
    datasets = require_datasets(spec)
    from huggingface_hub import HfApi, constants
    # huggingface_hub.utils exports these in 0.24 (our floor) and in 2.x; 0.24's
    # huggingface_hub.errors lacks the HTTP ones
    from huggingface_hub.utils import (GatedRepoError, HfHubHTTPError, HFValidationError,
                                       OfflineModeIsEnabled, RepositoryNotFoundError)
    if datasets.config.HF_HUB_OFFLINE or constants.HF_HUB_OFFLINE:
        return  # datasets then uses its cache, and fails at once when the dataset is not there
    name = name or parse_hub_spec(spec)[0]
    endpoint = constants.ENDPOINT
    try:
        HfApi(endpoint=endpoint).dataset_info(name, timeout=HUB_PROBE_TIMEOUT_S)
    except OfflineModeIsEnabled:
        return
    except HFValidationError as e:
        raise ValueError(f"--target {spec}: {name!r} is not a Hub dataset name ({e})") from None
    except GatedRepoError:
        raise HubTargetNotFound(
            f"--target {spec}: the dataset {name} on the Hugging Face Hub ({endpoint}) is gated: "
            "accept its conditions on its Hub page and set HF_TOKEN to a token of that "
            "account") from None
    except HfHubHTTPError as e:
        status = getattr(e.response, "status_code", None)
        if isinstance(e, RepositoryNotFoundError) or status == 404:
            raise HubTargetNotFound(
                f"--target {spec}: the Hugging Face Hub ({endpoint}) has no dataset {name!r} "
                f"(HTTP {status}); check the name, or set HF_TOKEN if it is private") from None
        raise HubUnreachable(
            f"--target {spec}: the Hugging Face Hub ({endpoint}) answered HTTP {status} for "
            f"the dataset {name}; try again later") from None
    except _transport_errors() as e:
        proxy = next((f" through the proxy {v}={os.environ[v]}" for v in PROXY_VARIABLES
                      if os.environ.get(v)), "")
        raise HubUnreachable(
            f"--target {spec}: the Hugging Face Hub ({endpoint}) cannot be reached{proxy} "
            f"({type(e).__name__}: {e}). Load it where the Hub is reachable and pass the "
            "saved directory (Dataset.save_to_disk) or its data files instead, or set "
            "HF_HUB_OFFLINE=1 to use a copy in the local Hugging Face cache.") from None


PROXY_VARIABLES = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy")


def _transport_errors() -> tuple:
    """The exceptions of a request that got no answer: huggingface_hub 1.x and later send
    with httpx (or its fork httpx2), whose TransportError is not an OSError; before, with
    requests, whose errors are."""
    errors = [OSError]
    for module in ("httpx2", "httpx"):
        try:
            errors.append(importlib.import_module(module).TransportError)
        except (ImportError, AttributeError):
            pass
    return tuple(errors)


def load_rows(pattern: str) -> Iterator[RowRecord]:
    """Rows of a ``save_to_disk`` directory or an ``hf:`` target."""
    datasets = require_datasets(pattern)
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
        check_hub_reachable(pattern, name)
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
