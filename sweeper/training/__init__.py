"""One cell's training, knowing nothing of MLflow or Optuna: data, augmentation, devices, numerics, recipe, the loop.

`sources.py` reads CIFAR-10 as it arrives, `data.py` caches and splits it (`splits.py` its types);
`augment*.py` augment batches on the device and `batches.py` makes an epoch of them; `device.py` picks
the device and memory formats, `precision.py` the numerics (precision, TF32, determinism, RNGs) and
`doctor.py` reports on the machine; `optim.py` (with `muon.py`) builds the optimizer and schedule,
`recipe.py` the loss and weight average; `train.py` is the loop, `evaluate.py` its evaluation,
`state.py` its checkpoint's shape, `probes.py` the opt-in per-step hook; `cost.py` estimates a cell's
FLOPs and time, and `report.py` words what `validate` and `list` print.
"""
