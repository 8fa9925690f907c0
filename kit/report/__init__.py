"""Reports: papermill runner, HTML export, index page, what notebooks publish."""

from kit.report import parameters
from kit.report.profiles import PROFILES, list_notebooks, profile_parameters
from kit.report.publish import finding, interactive, is_headless, publish

__all__ = [
    "PROFILES", "finding", "interactive", "is_headless", "list_notebooks", "parameters", "profile_parameters",
    "publish",
]
