"""Data sets into a tensor-resident pipeline: load once, split once, batch on the device.

`load_dataset` reads any accepted source into an `ImageSet`; `make_splits` holds out a
seeded, stratified validation set shared by every trial; `DeviceData` serves a split as
normalised, augmented batches without leaving the device.
"""

from trainer.data.base import DataError, ImageSet, Splits
from trainer.data.device import DeviceData
from trainer.data.load import load_dataset, resolve_data_dir
from trainer.data.split import make_splits

__all__ = [
    "DataError",
    "DeviceData",
    "ImageSet",
    "Splits",
    "load_dataset",
    "make_splits",
    "resolve_data_dir",
]
