"""Building blocks every other package uses; imports nothing else of smartloader.

- :mod:`.batch`: find, read, replace and subset the fields of a batch of any structure.
- :mod:`.readers`: typed YAML readers that name the key path of a bad value.
- :mod:`.state`: the strict checks (keys, types, ranges, tensors, generator states) every
  ``load_state_dict`` uses, and their one exception type.
- :mod:`.epochs`: seeds from (seed, epoch, rank) and ``set_epoch`` forwarding.
- :mod:`.progress`: the frozen (step, epoch, total_steps) value schedules read.
- :mod:`.shared_value`: a number DataLoader workers read without restarting.
"""
