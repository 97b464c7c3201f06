"""Raw data readers: each streams its input in chunks of validated rows (see ``base.Source``)."""

from datamodules.sources.base import RawChunk, Source
from datamodules.sources.criteo import CriteoSource
from datamodules.sources.frappe import frappe_source
from datamodules.sources.libfm import LibFMSource
from datamodules.sources.synthetic import SyntheticSource
from datamodules.sources.table import TableSource

__all__ = ["CriteoSource", "LibFMSource", "RawChunk", "Source", "SyntheticSource", "TableSource", "frappe_source"]
