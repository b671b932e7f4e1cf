"""The full-size key and shape list of a transformers model, for the C++ side to match: the
model is built on the meta device from the hub config's values (no weights, no memory), and its
config.json and {key: shape} go into OUT_DIR/full/ (config.json, keys.json)."""
import json
import os

import numpy as np
import torch


def write_full_size(model_class, config, out):
    with torch.device("meta"):
        full = model_class(config)
    d = os.path.join(out, "full")
    os.makedirs(d, exist_ok=True)
    full.config.to_json_file(os.path.join(d, "config.json"))
    keys = {k: list(v.shape) for k, v in full.state_dict().items()}
    with open(os.path.join(d, "keys.json"), "w") as f:
        json.dump(keys, f, indent=0)
    print(f"full: {len(keys)} tensors, {sum(int(np.prod(s)) for s in keys.values()):,} values")
