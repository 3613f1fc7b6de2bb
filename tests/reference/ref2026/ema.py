"""EMA of the weights (Polyak averaging with a decay warmup), timm's ModelEmaV3:
huggingface/pytorch-image-models timm/utils/model_ema.py at 0a044bf43ddc280594c6f9237c17b41b7067a26e,
`get_decay` and `apply_update_no_buffers_` (non-foreach path), line for line:

    shadow = deepcopy(model)                                 (the initial parameters)
    update(model, step):
        step = max(0, step - update_after_step - 1)
        decay = 0.0 if step <= 0 else
                (use_warmup ? max(min(1 - (1 + step / warmup_gamma) ** -warmup_power, decay),
                                  min_decay)
                            : decay)
        ema_p.lerp_(model_p, weight=1 - decay)

  called after the t-th optimizer step with step = t (timm's train loop passes num_updates,
  counted after the step), so the first update copies the parameters (decay 0).
  Defaults: decay 0.9999, min_decay 0.0, update_after_step 0, use_warmup False,
  warmup_gamma 1.0, warmup_power 2/3.
  torch.optim.swa_utils.get_ema_multi_avg_fn(decay) with AveragedModel (copy on the first
  update, then lerp with weight 1 - decay) is the case use_warmup False, update_after_step 0.

The parameters come from torch.optim.AdamW (torch 1.13, foreach=False) in the case's dtype,
which xoptim's adamw matches bit for bit (docs/design.md); so only the shadow's arithmetic is
under test. shadow_dtype "bfloat16": the shadow is stored in bf16; each update computes
the lerp in float32 from the bf16 shadow and the float32 parameter and rounds to bf16 (to
nearest even), as a bf16 shadow updated with a float32 kernel would.
"""

import numpy as np

from .common import bf16_round, lerp


def hyper(**kw):
    h = dict(decay=0.9999, min_decay=0.0, update_after_step=0, use_warmup=False, warmup_gamma=1.0,
             warmup_power=2 / 3, shadow_dtype="same")
    h.update(kw)
    return h


def get_decay(h, step):
    step = max(0, step - h["update_after_step"] - 1)
    if step <= 0:
        return 0.0
    if h["use_warmup"]:
        decay = 1 - (1 + step / h["warmup_gamma"]) ** -h["warmup_power"]
        return max(min(decay, h["decay"]), h["min_decay"])
    return h["decay"]


class Ema:
    def __init__(self, h, params, dt):
        self.h, self.dt = h, dt
        self.bf16 = h["shadow_dtype"] == "bfloat16"
        self.shadow = [bf16_round(p) if self.bf16 else p.copy() for p in params]

    def update(self, params, step):
        decay = get_decay(self.h, step)
        for k, p in enumerate(params):
            if self.bf16:
                self.shadow[k] = bf16_round(lerp(self.shadow[k], p.astype(np.float32), 1.0 - decay, np.float32))
            else:
                self.shadow[k] = lerp(self.shadow[k], p, 1.0 - decay, self.dt)
