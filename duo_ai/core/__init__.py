"""Framework pieces every other module builds on: errors, registries, configs, policies."""
