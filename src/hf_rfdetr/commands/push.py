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
"""`hf-rfdetr push`: upload a saved model folder to the Hub with a generated model card."""

from __future__ import annotations

import argparse

ORDER = 60


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "push",
        help="upload a model folder to the Hub (weights, config, processor, model card, code)",
        description="Upload a saved model folder (the output of train or convert, or any save_pretrained folder) "
        "to a Hub repository, created if needed: model.safetensors, config.json, preprocessor_config.json, a model "
        "card generated from the config and the training results in the folder, and the model code for "
        "trust_remote_code (unless --no-code). Log in first with `hf auth login` or pass --token.",
    )
    parser.add_argument("folder", help="saved model folder")
    parser.add_argument("repo_id", help="Hub repository, ORG_OR_USER/NAME")
    parser.add_argument("--private", action="store_true", help="create the repository private (if it is new)")
    parser.add_argument(
        "--no-code", action="store_true", help="leave out the model code: loading then needs `pip install hf-rfdetr`"
    )
    parser.add_argument("--token", help="Hub token with write access (default: from `hf auth login` / HF_TOKEN)")
    parser.add_argument("--commit-message", default="Upload RF-DETR model", help="commit message on the Hub")
    parser.add_argument("--dataset", help="training dataset for the card: a Hub dataset id or a short description")
    parser.add_argument(
        "--metrics", metavar="JSON", help="metrics for the card: a file of `hf-rfdetr eval --output-json`"
    )
    parser.set_defaults(run_command=run)


def run(args: argparse.Namespace) -> int:
    from ..hub import push_to_hub

    result = push_to_hub(
        args.folder,
        args.repo_id,
        token=args.token,
        private=True if args.private else None,
        commit_message=args.commit_message,
        include_code=not args.no_code,
        metrics=args.metrics,
        dataset=args.dataset,
    )
    url = getattr(result, "commit_url", None) or f"https://huggingface.co/{args.repo_id}"
    print(f"pushed {args.folder} to {args.repo_id}: {url}")
    return 0
