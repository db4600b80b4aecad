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
"""Subcommands of the `hf-rfdetr` command, one module each.

A module here defines `register(subparsers)`, which adds its parser and sets `run_command` (a function taking the
parsed arguments and returning the exit code), and `ORDER`, its place in `hf-rfdetr --help`. `hf_rfdetr.cli` finds
the modules itself, so adding a command is adding a module.
"""
