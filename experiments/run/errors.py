"""Errors a user causes (bad data, a missing file, a wrong setting) are told in a line or two,
without a traceback; anything else is a bug and keeps its traceback.

A user error is a ``BadInputError`` (data and sources), a ``ConfigError`` (a model, datamodule
or trainer rejected its settings while the config built it: ``configured``), or an error resolving
the config (OmegaConf's: a missing or mistyped key), wherever it sits in the exception's chain of
causes. ``HYDRA_FULL_ERROR=1`` shows the full traceback anyway.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator
from typing import Optional

from hydra.errors import InstantiationException
from lightning_fabric.utilities.exceptions import MisconfigurationException
from omegaconf.errors import OmegaConfBaseException

from datamodules.download import DownloadError
from datamodules.errors import BadInputError

FAILURE_FILE = "failure.txt"


class ConfigError(ValueError):
    """A setting the object it configures rejected."""


USER_ERRORS = (BadInputError, DownloadError, ConfigError, InstantiationException, OmegaConfBaseException)


@contextlib.contextmanager
def configured(what: str) -> Iterator[None]:
    """Building ``what`` from the config: the ``ValueError``, ``TypeError`` or Lightning
    ``MisconfigurationException`` a constructor raises about its arguments is the config's
    mistake, so it becomes a ``ConfigError``."""
    try:
        yield
    except (BadInputError, DownloadError):
        raise
    except (ValueError, TypeError, MisconfigurationException) as error:
        text = str(error)
        raise ConfigError(text if text.startswith(what) else f"{what}: {text}") from error


def _chain(error: BaseException):
    while error is not None:
        yield error
        error = error.__cause__ or error.__context__


def user_error_message(error: BaseException) -> Optional[str]:
    """The message to show for a user error, or None for a bug. Hydra's ``full_key: x`` note
    becomes a ``x: `` prefix, and the innermost data error wins over the wrappers around it."""
    chain = list(_chain(error))
    data = next((e for e in chain if isinstance(e, (BadInputError, DownloadError, ConfigError))), None)
    if data is None and not any(isinstance(e, USER_ERRORS) for e in chain):
        return None
    text = str(data if data is not None else chain[0]).strip()
    key = re.search(r"\n\s*full_key:\s*(\S+)", text)
    text = re.sub(r"\n\s*(full_key|object_type|reference_type):.*", "", text).strip()
    text = re.sub(r"^Error in call to target '[^']+':\n", "", text)
    return f"{key.group(1)}: {text}" if key and not text.startswith(key.group(1)) else text


def show_tracebacks() -> bool:
    return os.environ.get("HYDRA_FULL_ERROR") == "1"
