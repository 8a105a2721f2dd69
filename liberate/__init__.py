"""liberate: data liberation without a JVM."""

__version__ = "0.1.0"
