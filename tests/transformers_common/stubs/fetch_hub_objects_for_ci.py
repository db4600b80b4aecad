"""Stand-in for transformers' `utils/fetch_hub_objects_for_ci.py` (not in its sdist), imported by
`test_image_processing_common.py`: without a CI cache of Hub files every URL stays a URL."""


def url_to_local_path(url: str, return_url_if_not_found: bool = True) -> str:
    """The upstream helper maps a URL to its copy in the CI cache; there is no cache here."""
    return url
