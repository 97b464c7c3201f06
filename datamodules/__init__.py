"""Data: sources -> encoding -> on-disk cache -> batches (see ``CTRDataModule``)."""
from datamodules.ctr import CTRDataModule
from datamodules.encode import EncodingConfig
from datamodules.errors import BadInputError
from datamodules.schema import Batch, Field, Schema
from datamodules.sources import CriteoSource, LibFMSource, Source, SyntheticSource, TableSource, frappe_source
from datamodules.splits import SplitConfig

__all__ = ["BadInputError", "Batch", "CTRDataModule", "CriteoSource", "EncodingConfig", "Field", "LibFMSource",
           "Schema", "Source", "SplitConfig", "SyntheticSource", "TableSource", "frappe_source"]
