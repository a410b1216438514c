"""hdit_edu: the Hourglass Diffusion Transformer (HDiT), built step by step in notebooks and usable as a library.

Build a model from a config (`HDiTConfig`, `small_hdit_config`), load the shipped one (`load_pretrained`), sample from
it (`sample`), train on your images (`Trainer`, `TrainConfig`, `openmoji_dataset`, `ImageDataset`) and edit pictures
in pixel space (`inpaint`, `img2img`). Each name's module is a page of the course: https://hdit-edu.github.io/hdit_edu/
"""
__version__ = "0.1.0"

from .model import HDiT, HDiTConfig, LevelConfig, small_hdit_config
from .model_files import load_pretrained
from .sampling import sample
from .training import Trainer, TrainConfig
from .data import openmoji_dataset, ImageDataset
from .editing import inpaint, img2img

__all__ = ['HDiT', 'HDiTConfig', 'LevelConfig', 'load_pretrained', 'small_hdit_config', 'sample', 'Trainer',
           'TrainConfig', 'openmoji_dataset', 'ImageDataset', 'inpaint', 'img2img']
