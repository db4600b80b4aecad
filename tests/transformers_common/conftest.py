"""The stand-ins under `stubs/` are modules for transformers' mixins to import, not tests to collect."""

collect_ignore = ["stubs"]
