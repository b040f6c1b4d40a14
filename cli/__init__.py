"""The duo-ai command line."""
