"""Worker settings, each declared once (settings.py) and read from ``STREAMER_*`` variables.

``python -m streamer.config doc --write`` regenerates docs/CONFIGURATION.md from the
declarations; ``python -m streamer.config check`` checks this environment's variables.
"""

from streamer.config.declare import ConfigError, Problem
from streamer.config.load import env_names, load_settings, unknown_variables
from streamer.config.settings import KafkaSettings, Settings

__all__ = ["ConfigError", "KafkaSettings", "Problem", "Settings", "env_names", "load_settings",
           "unknown_variables"]
