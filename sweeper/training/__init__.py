"""One cell's training, knowing nothing of MLflow or Optuna: data, augmentation, device, recipe, the loop.

`sources.py` reads CIFAR-10 as it arrives, `data.py` caches and splits it, `augment.py` and
`device.py` keep batches fast on the device, `recipe.py` builds optimizer, schedule and loss,
`train.py` is the loop, `state.py` its checkpoint's shape, `probes.py` the opt-in per-step hook,
`cost.py` estimates a cell's FLOPs and time.
"""
