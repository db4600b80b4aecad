# Copyright 2026 The hf_rfdetr Authors. All rights reserved.
#
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#
#     http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS,
# WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
# See the License for the specific language governing permissions and
# limitations under the License.
"""The process's environment as it was launched, read when `hf_rfdetr` is imported.

transformers 4.x's `TrainingArguments` writes its precision into `ACCELERATE_MIXED_PRECISION` and reads it back
(transformers #29510, fixed in 5.0), so after `TrainingArguments(bf16=True)` every later float32 `Trainer` of the
process trained in bf16. `RFDetrTrainer` gives its `Accelerator` the precision of its own arguments, falling back on
the value recorded here: the one `accelerate launch --mixed_precision` (or the user) set before the run.
"""

import os

#: `ACCELERATE_MIXED_PRECISION` at import (None when unset).
LAUNCH_MIXED_PRECISION: str | None = os.environ.get("ACCELERATE_MIXED_PRECISION")
