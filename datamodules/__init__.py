"""Data: sources -> encoding -> on-disk cache -> batches (see ``CTRDataModule``)."""
from datamodules.schema import Batch, Field, Schema

__all__ = ["Batch", "Field", "Schema"]
