"""The synthetic dataset generator, now `hf_rfdetr.synthetic`; re-exported here for the tests that import it."""

from hf_rfdetr.synthetic import (  # noqa: F401
    ANNOTATION_FILE,
    COLOURS,
    SHAPES,
    SPLIT_FOLDERS,
    SUPERCLASS,
    class_names,
    render_scene,
    write_synthetic_coco,
)
